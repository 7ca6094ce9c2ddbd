"""The CPU kernels give the same bits whatever the tensor's size and thread count: below the threading
threshold (kParallelThreshold = 2^15 elements, csrc/cpu/loops.h) the calling thread runs the loop that the
threads share above it. Every format family, rounding mode and a few seeds; sizes on both sides of the
threshold; tensors rounded whole and in pieces.

Each size n is checked against a larger tensor that takes the threaded path: row 0 of x stacked twice
(2n elements, same maximum, so the same per-tensor scale; row 0's elements keep their row-major indices,
so the same random words) must equal x rounded alone."""
import pytest
import torch

import qsim

THRESHOLD = 1 << 15  # kParallelThreshold
SIZES = [1, 17, 1000, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1]
FORMATS = ["fp8_e4m3", "fp8_e5m2", "bf16", "fixed<8,4>", "fixed<8,4,wrap>", "int8", "mxfp4", "mxint8", "nvfp4",
           "bfp8", "bfp8_dim0", "bfp8_32", "posit8", "posit16", "lns8", "lns16"]
SEEDS = [0, 12345]


@pytest.fixture(autouse=True)
def all_threads():
    """Two threads where the machine has them, so the threaded path splits the work."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    yield
    torch.set_num_threads(before)


def sample(n: int, dtype=torch.float32) -> torch.Tensor:
    """n values over many binades, with zeros of both signs, infinities, a NaN and subnormals of float32."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g, dtype=torch.float64) * torch.exp2(torch.randint(-12, 12, (n,), generator=g))
    specials = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-40, -3e-42, 65504.0],
                            dtype=torch.float64)
    k = min(n, len(specials))
    x[torch.randperm(n, generator=g)[:k]] = specials[:k]
    return x.to(dtype)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({torch.float32: torch.int32, torch.float64: torch.int64}.get(t.dtype, torch.int16))


def assert_same_bits(got: torch.Tensor, want: torch.Tensor):
    mismatch = (bits(got) != bits(want)).nonzero()
    assert mismatch.numel() == 0, f"{mismatch.numel()} elements differ, first at {mismatch[0].tolist()}: " \
                                  f"{got.flatten()[mismatch[0, 0]].item()} vs {want.flatten()[mismatch[0, 0]].item()}"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("rounding", qsim.ROUNDING_MODES)
def test_small_tensor_rounds_as_the_threaded_path_does(fmt, rounding):
    for seed in SEEDS if rounding == "stochastic" else [None]:
        for n in SIZES:
            x = sample(n)
            alone = qsim.quantize(x, fmt, rounding, seed=seed)
            stacked = qsim.quantize(torch.stack([x, x]), fmt, rounding, seed=seed)
            assert_same_bits(alone, stacked[0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fixed<8,4>", "mxfp4", "nvfp4", "posit8"])
@pytest.mark.parametrize("rounding", ["nearest", "down", "stochastic"])
def test_small_tensor_rounds_as_the_threaded_path_does_in_other_dtypes(dtype, fmt, rounding):
    for n in [THRESHOLD - 1, THRESHOLD + 1]:
        x = sample(n, dtype)
        alone = qsim.quantize(x, fmt, rounding, seed=7)
        stacked = qsim.quantize(torch.stack([x, x]), fmt, rounding, seed=7)
        assert_same_bits(alone, stacked[0])


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fixed<8,4>", "fixed<8,4,wrap>", "mxfp4", "mxint8", "posit8", "lns8"])
@pytest.mark.parametrize("rounding", [m for m in qsim.ROUNDING_MODES if m != "stochastic"])
def test_tensor_rounded_in_pieces_equals_tensor_rounded_whole(fmt, rounding):
    """Elementwise formats and MX blocks (pieces of whole blocks) do not depend on their neighbours:
    pieces below the threshold, rounded on the calling thread, give the threaded whole's bits."""
    sizes = [32, 992, THRESHOLD - 32, THRESHOLD, THRESHOLD + 64, 32]
    x = sample(sum(sizes))
    whole = qsim.quantize(x, fmt, rounding)
    pieces = torch.cat([qsim.quantize(p, fmt, rounding) for p in x.split(sizes)])
    assert_same_bits(pieces, whole)


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "int8", "posit8", "lns8"])
def test_stochastic_prefix_of_a_large_tensor_equals_the_prefix_rounded_alone(fmt):
    """Random words are keyed by element index: any prefix of a threaded tensor rounds as that prefix alone."""
    x = sample(2 * THRESHOLD + 5)
    whole = qsim.quantize(x, fmt, "stochastic", seed=99)
    for n in [5, 767, 768, 769, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1]:
        assert_same_bits(qsim.quantize(x[:n], fmt, "stochastic", seed=99), whole[:n])
