"""The fused C++ accumulator (qsim._C.accumulate_f32) gives the bits of the vectorised torch path.

qsim.nn.functional runs CPU products of float32/float16/bfloat16 operands with a fixed- or
floating-point accumulator in one C++ loop, and everything else through a loop of whole-output torch
operations. Both follow the same model (the running sum rounded to `acc` after every chunk of products,
in float64), so on data whose chunk sums are exact in float64 (bfloat16 values, short chunks) they must
agree bit for bit, stochastic rounding included: both draw one seed per rounding step from torch's
generator and key element i of the (batch, N, M) running sum by (seed, i). The torch path is the
oracle here (tests/test_nn_functional.py checks it, and the fused kernel, against scalar loops).
The data are scaled by powers of two so that sums also land in the accumulator's overflow and
subnormal ranges and outside float32's range, where the kernel's float32 shortcut hands elements back
to its float64 path.
"""
import pytest
import torch
from hypothesis import given, settings, strategies as st

import qsim
from qsim.nn import functional as qF
from test_nn_functional import reference_linear

ACC_FORMATS = ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp32", "fixed<12,6>", "fixed<32,16>", "int8",
               qsim.FixedPoint(8, 3, overflow="wrap"), qsim.FloatingPoint(exp=4, man=3, subnormals=False),
               qsim.FloatingPoint(exp=8, man=4), qsim.FloatingPoint(exp=8, man=20), qsim.FloatingPoint(exp=8, man=22), qsim.FloatingPoint(exp=5, man=2, overflow="inf")]
SCALES = [-70, -12, 0, 6, 66]  # powers of two applied to each operand


def bf16_data(shape, scale):
    return torch.randn(shape).bfloat16().float() * 2.0 ** scale


def both_paths(seed, fn):
    """fn() through the fused kernel and through the torch path, from the same torch seed."""
    torch.manual_seed(seed)
    fused = fn()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(qF, "_fused", lambda *args: False)
        torch.manual_seed(seed)
        reference = fn()
    return fused, reference


def assert_same(got, want):
    """Equal values, NaN where NaN (the sign of a zero result may differ: -0 == 0)."""
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5), k=st.integers(1, 40), m=st.integers(1, 9), chunk=st.integers(1, 9),
       fmt=st.sampled_from(ACC_FORMATS), rounding=st.sampled_from(qsim.ROUNDING_MODES), bias=st.booleans(),
       scales=st.tuples(st.sampled_from(SCALES), st.sampled_from(SCALES)), seed=st.integers(0, 2**16))
def test_fused_linear_equals_torch_path(n, k, m, chunk, fmt, rounding, bias, scales, seed):
    """Any K (also not a multiple of chunk, or below it), with and without bias, every mode and grid."""
    torch.manual_seed(seed)
    x, w = bf16_data((n, k), scales[0]), bf16_data((m, k), scales[1])
    b = bf16_data((m,), scales[0] + scales[1]) if bias else None
    assert qF._fused(x, w.t(), qsim.formats.get(fmt))
    fused, reference = both_paths(seed, lambda: qF.linear(x, w, b, acc=fmt, chunk=chunk, rounding=rounding))
    assert_same(fused, reference)


@pytest.mark.parametrize("rounding", qsim.ROUNDING_MODES)
@pytest.mark.parametrize("fmt", ACC_FORMATS, ids=str)
def test_fused_linear_equals_torch_path_on_every_grid_and_mode(fmt, rounding):
    """A fixed sweep of every accumulator and mode over scales from float32's subnormals to overflow,
    K = 37 in chunks of 1 and 5 (the last chunk short), with a bias."""
    for chunk, (sx, sw) in [(1, (0, 0)), (1, (-70, -66)), (1, (-64, -64)), (5, (6, 0)), (1, (66, 6)), (3, (66, 66)), (5, (-12, 0))]:
        torch.manual_seed(chunk + sx)
        x, w, b = bf16_data((3, 37), sx), bf16_data((5, 37), sw), bf16_data((5,), min(sx + sw, 100))
        fused, reference = both_paths(8, lambda: qF.linear(x, w, b, acc=fmt, chunk=chunk, rounding=rounding))
        assert_same(fused, reference)


@settings(max_examples=25, deadline=None)
@given(stride=st.integers(1, 2), padding=st.integers(0, 2), dilation=st.integers(1, 2), groups=st.sampled_from([1, 2]),
       chunk=st.integers(1, 7), bias=st.booleans(), rounding=st.sampled_from(["nearest", "toward_zero", "stochastic"]),
       fmt=st.sampled_from(["fp16", "fp8_e5m2", "fixed<10,4>"]), seed=st.integers(0, 2**16))
def test_fused_conv2d_equals_torch_path(stride, padding, dilation, groups, chunk, bias, rounding, fmt, seed):
    """Convolutions reach the kernel through the unfold path with a broadcast weight (batch stride 0 views)."""
    torch.manual_seed(seed)
    x, w = bf16_data((2, 4, 6, 5), 0), bf16_data((4, 4 // groups, 3, 2), 0)
    b = bf16_data((4,), 0) if bias else None
    fused, reference = both_paths(
        seed, lambda: qF.conv2d(x, w, b, stride, padding, dilation, groups, acc=fmt, chunk=chunk, rounding=rounding))
    assert_same(fused, reference)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_fused_batched_matmul_equals_torch_path(rounding):
    """Broadcast batch dims, float16 and bfloat16 operands (read exactly as float32), wide rows that span
    several column tiles of the kernel."""
    torch.manual_seed(3)
    a = torch.randn(2, 1, 5, 11).half()
    b = torch.randn(3, 11, 300).bfloat16()
    fused, reference = both_paths(4, lambda: qF.matmul(a, b, acc="bf16", chunk=3, rounding=rounding))
    assert fused.dtype == torch.float32 and fused.shape == (2, 3, 5, 300)
    assert_same(fused, reference)


def test_fused_chunk1_matches_sequential_reference_across_tiles():
    """float32 data (exact products), rows and columns spanning several tiles, against the scalar loop."""
    torch.manual_seed(5)
    x, w, b = torch.randn(6, 7), torch.randn(261, 7), torch.randn(261)
    got = qF.linear(x, w, b, acc="fp8_e4m3", chunk=1, rounding="nearest")
    assert torch.equal(got, reference_linear(x, w, b, "fp8_e4m3", 1, "nearest"))


def test_fused_is_used_only_where_it_applies():
    """float64 operands, CUDA tensors and non-elementwise accumulators keep the torch path."""
    a, b = torch.randn(3, 4), torch.randn(4, 2)
    assert qF._fused(a, b, qsim.formats.get("fp16"))
    assert not qF._fused(a.double(), b, qsim.formats.get("fp16"))
    assert not qF._fused(a, b, qsim.formats.get("bfp8"))


def test_stochastic_accumulator_is_reproducible_and_unbiased():
    """Same torch seed, same bits; over many outputs the stochastic sum's mean error is near zero while
    truncation toward zero is biased (a sanity check on the random words the kernel draws)."""
    torch.manual_seed(6)
    x, w = torch.rand(64, 256), torch.rand(64, 256)
    exact = (x.double() @ w.double().t())
    torch.manual_seed(7)
    first = qF.linear(x, w, acc="bf16", rounding="stochastic")
    torch.manual_seed(7)
    assert torch.equal(first, qF.linear(x, w, acc="bf16", rounding="stochastic"))
    stochastic_bias = ((first.double() - exact) / exact).mean().item()
    truncated_bias = ((qF.linear(x, w, acc="bf16", rounding="toward_zero").double() - exact) / exact).mean().item()
    assert abs(stochastic_bias) < 0.1 * abs(truncated_bias)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_fused_result_does_not_depend_on_the_thread_count(rounding):
    """The kernel runs on torch's intra-op thread count; tiles own their outputs and the random words are
    keyed by output index, so 1 and 2 threads give the same bits."""
    torch.manual_seed(9)
    x, w = torch.randn(40, 300), torch.randn(70, 300)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(10)
            results.append(qF.linear(x, w, acc="fp8_e5m2", chunk=4, rounding=rounding))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(results[0], results[1])


def test_empty_products_leave_the_rounded_bias():
    """K = 0: no products, the output is the bias rounded to the accumulator; N = 0 or M = 0: empty outputs."""
    b = torch.tensor([0.1, -3.3])
    want = qsim.quantize(b, "fp8_e4m3").expand(3, 2)
    assert torch.equal(qF.linear(torch.randn(3, 0), torch.randn(2, 0), b, acc="fp8_e4m3"), want)
    assert qF.linear(torch.randn(0, 4), torch.randn(2, 4), b, acc="fp8_e4m3").shape == (0, 2)
    assert qF.matmul(torch.randn(3, 4), torch.randn(4, 0), acc="fp16").shape == (3, 0)


@pytest.mark.parametrize("chunk", [3, 8])
def test_fused_chunks_of_float32_data_match_the_left_to_right_reference(chunk):
    """The kernel sums each chunk left to right in float64 like the scalar reference, so it matches it bit
    for bit even where float32 chunk sums are inexact in float64 (the torch path's matmul order may not)."""
    torch.manual_seed(11)
    x, w, b = torch.randn(5, 29) * 2.0 ** torch.randint(-20, 20, (5, 29)), torch.randn(6, 29), torch.randn(6)
    got = qF.linear(x, w, b, acc="bf16", chunk=chunk, rounding="nearest")
    assert torch.equal(got, reference_linear(x, w, b, "bf16", chunk, "nearest"))
