"""Block formats: OCP MX against an implementation of the spec written here and against torchao's
to_mx; block floating point against exact arithmetic and QPyTorch; blocks that straddle the end of a
dim, all-zero blocks, NaN/inf blocks, subnormal maxima; stochastic rounding unbiased."""
import dataclasses
import math

import numpy as np
import pytest
import torch

import qsim
from qsim.formats import MX, BlockFloatingPoint
from reference import GridReference

RNG = np.random.default_rng(7)
MX_NAMES = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4", "mxint8"]


def spec_mx(x: np.ndarray, fmt: MX) -> np.ndarray:
    """OCP MX v1.0 §6.3, written from the text: per block of the last dim, X = 2^E with
    E = floor(log2(max|V|)) - emax(element) (or the ceil / rceil / even rules), clamped to E8M0's range;
    P_i = the element format's round-to-nearest-even of V_i / X, saturating. NaN/inf → NaN block."""
    ref = GridReference(fmt.element)
    emax = math.floor(math.log2(fmt.element.max))
    top_binade = ref.values[ref.values >= 2.0**emax]  # "even" rounds amax to its precision first
    even_bits = emax - round(math.log2(np.diff(top_binade).min()))
    out = np.empty_like(x)
    rows = x.reshape(-1, x.shape[-1])
    result = out.reshape(-1, x.shape[-1])
    for r, row in enumerate(rows):
        for start in range(0, row.size, fmt.block_size):
            block = row[start:start + fmt.block_size].astype(np.float64)
            if not np.isfinite(block).all():
                result[r, start:start + fmt.block_size] = np.nan
                continue
            amax = np.abs(block).max()
            if amax == 0:
                E = -127
            else:
                mantissa, exponent = math.frexp(amax)  # amax = mantissa · 2^exponent, mantissa in [0.5, 1)
                E = exponent - 1 - emax
                if fmt.scale_rule == "ceil" and mantissa != 0.5:
                    E += 1
                if fmt.scale_rule == "rceil" and amax > fmt.element.max * 2.0**E:
                    E += 1
                if fmt.scale_rule == "even" and mantissa >= 1 - 2.0 ** -(even_bits + 2):
                    E += 1
                E = min(max(E, -127), 127)
            scaled = np.clip(block / 2.0**E, ref.bottom, ref.top)  # exact: a power-of-two division
            result[r, start:start + fmt.block_size] = ref.round(scaled, "nearest") * 2.0**E
    return out


def mx_inputs(columns=96) -> np.ndarray:
    """Rows of different magnitudes, heavy tails, exact ties of the element grid, a partial block."""
    rows = [RNG.standard_normal(columns) * 10.0 ** RNG.integers(-30, 30) for _ in range(40)]
    rows += [RNG.standard_t(2, columns) for _ in range(20)]
    rows.append(np.zeros(columns))
    rows.append(np.full(columns, 1e-40))  # subnormal maxima
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize("name", MX_NAMES)
@pytest.mark.parametrize("rule", ["floor", "ceil", "rceil", "even"])
def test_mx_matches_the_spec_bit_for_bit(name, rule):
    fmt = qsim.formats.get(name)
    fmt = MX(fmt.element, fmt.block_size, scale_rule=rule)
    x = mx_inputs()
    got = qsim.quantize(torch.from_numpy(x), fmt).numpy()
    expected = spec_mx(x, fmt).astype(np.float32)
    assert np.array_equal(got, expected, equal_nan=True)


def test_a_block_that_straddles_the_end_of_the_dim_is_a_short_block():
    fmt = qsim.formats.get("mxfp4")
    x = np.array(RNG.standard_normal((5, 45)) * 3, dtype=np.float32)  # blocks of 32 and 13
    x[:, 40] = 1000.0  # only the short block sees this maximum
    got = qsim.quantize(torch.from_numpy(x), fmt).numpy()
    assert np.array_equal(got, spec_mx(x, fmt).astype(np.float32))
    assert np.array_equal(got[:, :32], qsim.quantize(torch.from_numpy(x[:, :32].copy()), fmt).numpy())


def test_mx_spot_values_from_the_spec_rules():
    """MXFP4 with amax 6: E = floor(log2 6) - 2 = 0, so elements are fp4 values themselves; 2.5 - 1 ulp
    rounds to 2 (a floor(x + 0.5) implementation would double-round it to 3); 2.5 ties to even 2,
    2.75 → 3, 5.1 → 6 (saturating beyond 6 is never needed here)."""
    below_tie = np.nextafter(np.float32(2.5), np.float32(0))
    block = np.array([6.0, below_tie, 2.5, 2.75, 5.1, -0.24, 0.26, 0.0] + [0.0] * 24, dtype=np.float32)
    got = qsim.quantize(torch.from_numpy(block), "mxfp4").numpy()
    assert got[:8].tolist() == [6.0, 2.0, 2.0, 3.0, 6.0, -0.0, 0.5, 0.0]
    # MXFP8 e4m3: amax 1000 → E = 9 - 8 = 1, X = 2: 1000/2 = 500 > 448 saturates to 448·2 = 896.
    got = qsim.quantize(torch.tensor([1000.0] + [1.0] * 31), "mxfp8_e4m3")
    assert got[0].item() == 896.0 and got[1].item() == 1.0


@pytest.mark.parametrize("element", ["float<e4m3>", "fp8_e5m2", "float<e4m3,fn,nan>", "fixed<8,6,wrap>"])
def test_mx_elements_saturate_whatever_their_formats_overflow_rule(element):
    """OCP MX v1.0 §6.3: the floor rule may put the block maximum beyond the element's range; it clips
    to ±max(element)·X, never to inf, NaN or a wrapped code."""
    fmt = MX(element, 32)
    assert fmt == MX(dataclasses.replace(qsim.formats.get(element), overflow="saturate"), 32)
    x = torch.ones(32)
    x[0] = -1.99 * 2.0 ** (fmt.element_emax + 3)  # E = 3: x[0] / 2^E is just under -2·2^emax
    assert qsim.quantize(x, fmt)[0].item() == -fmt.element.max * 2.0**3


def test_rceil_never_clips_and_uses_the_smallest_such_scale():
    fmt = MX("fp4_e2m1", 32, scale_rule="rceil")
    x = torch.from_numpy(RNG.standard_normal((200, 32)).astype(np.float32)) * 7
    q = qsim.quantize(x, fmt)
    amax = x.abs().amax(1)
    scale = 2.0 ** torch.ceil(torch.log2(amax / 6))  # exact here: amax / 6 is never a power of two
    assert torch.all(amax <= 6 * scale) and torch.all(amax > 3 * scale), "the smallest scale that holds amax"
    assert torch.all(q.abs().amax(1) >= amax * 0.75), "the block maximum is not clipped"


def test_blocks_with_nan_or_inf_become_nan_and_others_are_untouched():
    x = torch.randn(3, 64)
    x[0, 5] = float("nan")
    x[2, 40] = float("inf")
    q = qsim.quantize(x, "mxfp8_e4m3")
    assert q[0, :32].isnan().all() and not q[0, 32:].isnan().any()
    assert q[2, 32:].isnan().all() and not q[2, :32].isnan().any()
    assert torch.equal(q[1], qsim.quantize(x[1], "mxfp8_e4m3"))


@pytest.mark.parametrize("name,elem_dtype", [("mxfp8_e4m3", torch.float8_e4m3fn), ("mxfp8_e5m2", torch.float8_e5m2),
                                             ("mxfp6_e2m3", "fp6_e2m3"), ("mxfp6_e3m2", "fp6_e3m2"),
                                             ("mxfp4", "fp4_e2m1")])
@pytest.mark.parametrize("rule", ["floor", "ceil", "rceil", "even"])
def test_mx_matches_torchao_to_mx(name, elem_dtype, rule):
    """Each of torchao's scale calculation modes against the rule of that name. torchao clamps scales at
    2^-126 (documented), so inputs keep block maxima above that."""
    mx_tensor = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
    from torchao.prototype.mx_formats.config import ScaleCalculationMode

    x = torch.from_numpy(mx_inputs()[:60])
    elem = getattr(mx_tensor, f"DTYPE_{elem_dtype.upper()}", None) if isinstance(elem_dtype, str) else elem_dtype
    if elem is None:
        elem = torch.float4_e2m1fn_x2
    scale, data = mx_tensor.to_mx(x, elem, 32, ScaleCalculationMode(rule))
    expected = mx_tensor.to_dtype(data, scale, elem, 32, torch.float32)
    got = qsim.quantize(x, dataclasses.replace(qsim.formats.get(name), scale_rule=rule))
    assert torch.equal(got, expected)
    if rule != "floor":
        assert not torch.equal(got, qsim.quantize(x, name)), "the rule changes some block's scale"


def exact_bfp(x: np.ndarray, wl: int) -> np.ndarray:
    """SWALP/QPyTorch BFP over one block, exactly: E = floor(log2 max|x|), quantum 2^(E - wl + 2),
    nearest-even, clipped to ±(2^(wl-1) - 1) quanta."""
    amax = np.abs(x).max()
    if amax == 0:
        return x.copy()
    E = math.frexp(amax)[1] - 1
    quantum = 2.0 ** (E - wl + 2)
    k = np.round(x / quantum)  # numpy rounds half to even; x / quantum is exact
    limit = 2 ** (wl - 1) - 1
    return np.clip(k, -limit, limit) * quantum


@pytest.mark.parametrize("wl", [4, 8, 12])
def test_bfp_per_tensor_per_slice_and_per_block_match_exact_arithmetic(wl):
    x = (RNG.standard_normal((6, 40)) * 10.0 ** RNG.integers(-5, 5, size=(6, 1))).astype(np.float64)
    tensor = qsim.quantize(torch.from_numpy(x), BlockFloatingPoint(wl)).numpy()
    assert np.array_equal(tensor, exact_bfp(x, wl))
    rows = qsim.quantize(torch.from_numpy(x), BlockFloatingPoint(wl, dim=0)).numpy()
    assert np.array_equal(rows, np.stack([exact_bfp(r, wl) for r in x]))
    columns = qsim.quantize(torch.from_numpy(x), BlockFloatingPoint(wl, dim=1)).numpy()
    assert np.array_equal(columns, np.stack([exact_bfp(c, wl) for c in x.T]).T)
    blocks = qsim.quantize(torch.from_numpy(x), BlockFloatingPoint(wl, block_size=16)).numpy()
    expected = np.concatenate([np.stack([exact_bfp(r[s:s + 16], wl) for r in x]) for s in range(0, 40, 16)], axis=1)
    assert np.array_equal(blocks, expected)


def test_bfp_slices_of_a_one_dim_tensor_share_one_exponent():
    """SWALP: a tensor with at most one dim shares one exponent, whatever `dim` says."""
    x = np.array([100.0, 0.3, -0.02, 7.0])
    got = qsim.quantize(torch.from_numpy(x), BlockFloatingPoint(8, dim=0)).numpy()
    assert np.array_equal(got, exact_bfp(x, 8))
    assert qsim.quantize(torch.tensor(0.3, dtype=torch.float64), BlockFloatingPoint(8, dim=0)).item() == 0.30078125


def test_bfp_matches_qpytorch_block_quantize_away_from_ties():
    """QPyTorch rounds after adding 6·2^E in float32 and sends ties up; on inputs that are multiples of
    2^(E-20) with no ties the two agree exactly."""
    qtorch_quant = pytest.importorskip("qtorch.quant")
    x = torch.from_numpy(RNG.integers(-2**20, 2**20, size=(8, 64)).astype(np.float32) * 2.0**-20)
    quantum_fraction = (x * 2.0**6 / 2.0 ** torch.floor(torch.log2(x.abs().max()))) % 1
    x[quantum_fraction == 0.5] += 2.0**-20
    for dim, fmt in ((-1, BlockFloatingPoint(8)), (0, BlockFloatingPoint(8, dim=0))):
        expected = qtorch_quant.block_quantize(x, 8, dim=dim, rounding="nearest")
        assert torch.equal(qsim.quantize(x, fmt), expected)


@pytest.mark.parametrize("name", ["mxfp4", "bfp<6,16>", "nvfp4"])
def test_stochastic_rounding_of_block_formats_is_unbiased(name):
    x = torch.linspace(-1, 1, 32, dtype=torch.float64).repeat(20000, 1)
    x[:, 0] = 1.0  # fixes every block's scale
    q = qsim.quantize(x, name, rounding="stochastic", seed=3)
    nearest = qsim.quantize(x[:1], name)
    step = (nearest - x[:1]).abs().max().item() * 2 + 1e-12
    assert torch.all((q.mean(0) - x[0]).abs() < 5 * step / math.sqrt(20000))


def nvfp4_reference(x: np.ndarray, tensor_scale: bool = True) -> np.ndarray:
    """NVFP4 by its definition (torchao's, after NVIDIA's kernels), in numpy float32 with ml_dtypes'
    casts: 16-element blocks; the tensor factor s = fp32(amax_tensor / (6 · 448)) (1 without
    tensor_scale); each block's scale S = e4m3(clip(amax_block / 6 / s, 2^-6, 448)); elements are
    e2m1(x · ((1 / s) / S)) · (s · S)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = x.astype(np.float32)
    s = np.float32(np.abs(x).max()) / np.float32(6 * 448) if tensor_scale else np.float32(1)
    blocks = x.reshape(-1, 16)
    wanted = np.abs(blocks).max(1, keepdims=True) / np.float32(6) / s
    scale = np.clip(wanted, np.float32(2.0 ** -6), np.float32(448)).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    elements = (blocks * (np.float32(1) / s / scale)).astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
    return (elements * (s * scale)).reshape(x.shape)


def test_nvfp4_uses_e4m3_block_scales_under_a_tensor_scale():
    x = (np.random.default_rng(11).standard_normal((4, 64)) * 3).astype(np.float32)
    assert np.array_equal(qsim.quantize(torch.from_numpy(x), "nvfp4").numpy(), nvfp4_reference(x))


@pytest.mark.parametrize("blocks", [16, 32, 20, 47, 16 * 40 + 9])
def test_nvfp4_block_maxima_at_every_lane_match_numpys(blocks):
    """Each block scales by its own maximum: magnitudes in [0.1, 1) and one element 2-8x larger (so a
    wrong maximum changes the block's scale), at lane (block + shift) % 16 for every shift, so every
    lane of every block position in a group of 16 holds the maximum once; signs random. Tensors of 16
    to 649 blocks: whole and partial chunks of blocks."""
    rng = np.random.default_rng(blocks)
    for shift in range(16):
        x = rng.uniform(0.1, 1.0, size=(blocks, 16)) * rng.choice([-1.0, 1.0], size=(blocks, 16))
        lane = (np.arange(blocks) + shift) % 16
        x[np.arange(blocks), lane] = rng.uniform(2.0, 8.0, size=blocks) * rng.choice([-1.0, 1.0], size=blocks)
        x = x.astype(np.float32).reshape(-1, 16 * (blocks if blocks % 2 else 2))
        got = qsim.quantize(torch.from_numpy(x), "nvfp4").numpy()
        assert np.array_equal(got.view(np.int32), nvfp4_reference(x).view(np.int32)), f"shift {shift}"


def wide_range_inputs(rows: int = 64, seed: int = 5) -> np.ndarray:
    """Rows of 1024 normal values scaled by e^(3·N(0,1)), some blocks zero and some ~2^-30 of the
    tensor's maximum: block scales from e4m3's top to below its smallest normal (raised to 2^-6)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 1024)) * np.exp(3 * rng.standard_normal((rows, 1)))
    x[0, :16] = 0.0
    x[1, 16:32] *= 2.0 ** -30
    return x.astype(np.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("two_level", [True, False])
def test_nvfp4_matches_torchao_bit_for_bit(two_level, dtype):
    """torchao's NVFP4Tensor (two-level with per_tensor_amax_to_scale, or block scales alone) against
    nvfp4 and mx<fp4_e2m1,16,scale=fp8_e4m3>, over a wide dynamic range, zero blocks and blocks whose
    scale falls below e4m3's smallest normal."""
    nvfp4_tensor = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor")
    x = torch.from_numpy(wide_range_inputs()).to(dtype)
    if two_level:
        scale = nvfp4_tensor.per_tensor_amax_to_scale(x.abs().max())
        expected = nvfp4_tensor.NVFP4Tensor.to_nvfp4(x, per_tensor_scale=scale).dequantize(dtype)
        got = qsim.quantize(x, "nvfp4")
    else:
        expected = nvfp4_tensor.NVFP4Tensor.to_nvfp4(x).dequantize(dtype)
        got = qsim.quantize(x, "mx<fp4_e2m1,16,scale=fp8_e4m3>")
    assert got.dtype == dtype
    assert torch.equal(got.view(torch.uint8), expected.view(torch.uint8))  # bits: signed zeros too


@pytest.mark.parametrize("two_level", [True, False])
def test_nvfp4_over_a_wide_range_matches_its_definition(two_level):
    x = wide_range_inputs(seed=9)
    name = "nvfp4" if two_level else "mx<fp4_e2m1,16,scale=fp8_e4m3>"
    got = qsim.quantize(torch.from_numpy(x), name).numpy()
    assert np.array_equal(got.view(np.int32), nvfp4_reference(x, two_level).view(np.int32))
    got64 = qsim.quantize(torch.from_numpy(x.astype(np.float64)), name).numpy()
    assert np.allclose(got64, got, rtol=2 ** -20, atol=0)  # float64 arithmetic, same scales


@pytest.mark.parametrize("amax", [0.0, 2.0 ** -112, 2.0 ** -100, float("inf"), float("nan")])
def test_nvfp4_falls_back_to_block_scales_where_the_tensor_factor_cannot_serve(amax):
    """A tensor of zeros, NaN or inf, or of magnitudes so small that 1 / factor / 2^-6 overflows
    float32, takes the block scales alone; every other block of it stays finite and scaled."""
    x = np.linspace(-1, 1, 64, dtype=np.float32) * np.float32(amax if math.isfinite(amax) else 1)
    x[0] = amax
    got = qsim.quantize(torch.from_numpy(x), "nvfp4").numpy()
    block_scales_alone = qsim.quantize(torch.from_numpy(x), "mx<fp4_e2m1,16,scale=fp8_e4m3>").numpy()
    expected = nvfp4_reference(x) if amax == 2.0 ** -100 else block_scales_alone  # 2^-112 / 2688 / 2^-6 > 2^128
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.all(np.isfinite(got[16:]))


@pytest.mark.parametrize("spec,error", [
    ("mx<fp8_e4m3,0>", "block_size"), ("mx<fp8_e4m3,32,bogus>", "unknown mx option"),
    ("mx<bfp8,32>", "element: expected an elementwise format"), ("bfp<1>", "wl"), ("bfp<8,x>", "unknown bfp"),
])
def test_bad_block_formats_raise_clear_errors(spec, error):
    with pytest.raises((ValueError, TypeError)) as info:
        qsim.formats.get(spec)
    assert error in str(info.value)


def test_block_dim_out_of_range_is_reported():
    with pytest.raises(ValueError, match="block dim 3 is out of range"):
        qsim.quantize(torch.ones(4, 4), BlockFloatingPoint(8, block_size=2, dim=3))


@pytest.mark.parametrize("rule", ["floor", "ceil", "rceil", "even"])
def test_mx_with_elements_without_subnormals_matches_the_spec(rule):
    """Elements without subnormals take the kernels' general grid path (registered MX elements have
    subnormals and saturate, and compile with those fields fixed); both must follow the same spec."""
    fmt = MX(qsim.FloatingPoint(4, 3, subnormals=False, overflow="saturate"), 32, scale_rule=rule)
    x = mx_inputs()
    got = qsim.quantize(torch.from_numpy(x), fmt).numpy()
    assert np.array_equal(got, spec_mx(x, fmt).astype(np.float32), equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [0, 1, 17, 40000, 70001])
def test_the_cpu_tensor_maximum_of_nvfp4_equals_torchs(n, dtype):
    """NVFP4's tensor scale comes from the largest magnitude: a one-read C++ maximum on the CPU, torch's
    reduction on the GPU. They must agree exactly, NaN (→ factor 1) and inf included, on either side
    of the parallel threshold (2^15 elements)."""
    x = torch.from_numpy(RNG.standard_normal(n)).to(dtype) * 100
    cases = [x]
    if n:
        for special in (float("nan"), float("inf"), -float("inf"), -0.0, 1e-42):
            y = x.clone()
            y[RNG.integers(0, n)] = special
            cases.append(y)
        cases.append(torch.full((n,), -0.0, dtype=dtype))
    kernel = qsim._C.max_magnitude_f32 if dtype == torch.float32 else qsim._C.max_magnitude_f64
    for y in cases:
        expected = y.abs().max().item() if n else 0.0
        got = kernel(y.data_ptr(), y.numel())
        assert got == expected or (math.isnan(got) and math.isnan(expected))
        assert math.copysign(1.0, got) == 1.0 or math.isnan(got)
