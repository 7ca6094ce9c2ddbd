"""qsim.overq_quantize against a plain-Python loop of rules 1-5, its invariants, and its errors."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim
from qsim.overq import CLAIMED, COVERED, PRECISE

SCALE = 0.25  # inputs are multiples of SCALE/8, so x/scale lands on halves (ties) and exact codes


def rne(v: float) -> float:
    """Round half to even (Python's round does exactly that on floats)."""
    return float(round(v)) if math.isfinite(v) else v


def reference_vector(x: list[float], bits: int, scale: float, cascade: int, precision: bool):
    """Rules 1-5 on one channel vector, by loops: (codes as floats, covered, precise, claimed) per position."""
    qmax, qmax_range = 2**bits - 1, 2 ** (2 * bits) - 1
    r = [rne(v / scale) for v in x]
    code = [min(v, qmax) for v in r]
    covered, precise, claimed = [False] * len(x), [False] * len(x), [False] * len(x)

    def claim(i):
        for j in range(i + 1, min(len(x) - 1, i + 1 + cascade) + 1):
            if r[j] == 0 and not claimed[j]:
                claimed[j] = True
                return True
        return False

    for i in range(len(x)):
        if r[i] > qmax and claim(i):
            covered[i] = True
            code[i] = min(r[i], qmax_range)
    if precision:
        for i in range(len(x)):
            if 1 <= r[i] <= qmax and claim(i):
                precise[i] = True
                code[i] = rne(x[i] / scale * 2**bits) / 2**bits
    return code, covered, precise, claimed


def reference(x: torch.Tensor, bits, scale, cascade, dim, precision):
    """The reference applied to every vector along `dim`: (y, covered, precise, claimed) as numpy arrays."""
    moved = x.double().movedim(dim, -1).numpy()
    y = np.zeros(moved.shape)
    masks = [np.zeros(moved.shape, bool) for _ in range(3)]
    for index in np.ndindex(moved.shape[:-1]):
        code, *flags = reference_vector(list(moved[index]), bits, scale, cascade, precision)
        y[index] = [c * scale for c in code]
        for mask, flag in zip(masks, flags):
            mask[index] = flag
    back = lambda a: np.moveaxis(a, -1, dim)  # noqa: E731
    return back(y).astype(np.float32 if x.dtype == torch.float32 else np.float64), *map(back, masks)


@st.composite
def cases(draw):
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    bits = draw(st.integers(2, 8))
    # Multiples of scale/8 from 0 up past the range-overwrite limit, with many zeros (post-ReLU-like).
    top = 8 * 2 ** (2 * bits + 1)
    n = math.prod(shape)
    eighths = draw(st.lists(st.one_of(st.just(0), st.integers(0, 64), st.integers(0, top)), min_size=n, max_size=n))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    x = (torch.tensor(eighths, dtype=torch.float64) * (SCALE / 8)).reshape(shape).to(dtype)
    return x, bits, draw(st.integers(0, 4)), dim, draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(cases())
def test_kernel_matches_the_python_reference_of_rules_1_to_5(case):
    x, bits, cascade, dim, precision = case
    y, info = qsim.overq_quantize(x, bits, SCALE, cascade=cascade, dim=dim, precision=precision)
    want, covered, precise, claimed = reference(x, bits, SCALE, cascade, dim, precision)
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_array_equal(y.numpy(), want)
    np.testing.assert_array_equal(info.covered_mask.numpy(), covered)
    np.testing.assert_array_equal(info.precise_mask.numpy(), precise)
    np.testing.assert_array_equal(info.claimed_mask.numpy(), claimed)
    assert (info.covered, info.precise) == (covered.sum(), precise.sum())
    codes = torch.round(x.double() / SCALE)  # torch.round is half to even
    assert info.outliers == int((codes > 2**bits - 1).sum()) and info.zero_slots == int((codes == 0).sum())


def relu_like(seed: int, shape=(4, 16, 5, 5)) -> torch.Tensor:
    """Post-ReLU-like activations: half zeros, a heavy tail, on multiples of SCALE/8."""
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(shape, generator=g)) * torch.exp(torch.randn(shape, generator=g))
    return torch.round(x * 8) / 8 * SCALE * 4


@pytest.mark.parametrize("cascade", [0, 1, 3])
def test_each_zero_slot_is_claimed_at_most_once_and_reads_zero(cascade):
    x = relu_like(0)
    y, info = qsim.overq_quantize(x, 3, SCALE, cascade=cascade)
    claimed = info.claimed_mask
    # One claim per claimer and one claimer per claim: the counts match, and claimed slots are zero slots.
    assert int(claimed.sum()) == info.covered + info.precise
    assert bool((info.zero_mask | ~claimed).all()) and bool((y[claimed] == 0).all())
    # A claimer is never itself claimed (zero slots do not claim), and each claimer took exactly one slot.
    assert not bool(((info.state & CLAIMED != 0) & (info.state & (COVERED | PRECISE) != 0)).any())


def test_positions_not_overwritten_equal_plain_unsigned_rounding_with_clipping():
    x = relu_like(1)
    y, info = qsim.overq_quantize(x, 4, SCALE, cascade=2)
    plain = qsim.quantize(x, "fixed<4,2,unsigned>")  # unsigned 4 bits, step 2^-2 = SCALE, saturating
    kept = ~(info.covered_mask | info.precise_mask)
    assert int(kept.sum()) < x.numel() and torch.equal(y[kept], plain[kept])


def test_covered_outlier_error_is_at_most_half_a_step_below_the_range_limit():
    bits = 3
    x = relu_like(2)
    y, info = qsim.overq_quantize(x, bits, SCALE, cascade=4, precision=False)
    inside = info.covered_mask & (x < (2 ** (2 * bits) - 1) * SCALE)
    assert int(inside.sum()) > 0
    assert float((y[inside] - x[inside]).abs().max()) <= SCALE / 2


def test_coverage_never_decreases_with_cascade():
    x = relu_like(3, (8, 32, 4, 4))
    covered = [qsim.overq_quantize(x, 2, SCALE, cascade=c)[1].covered for c in range(6)]
    assert covered == sorted(covered) and covered[-1] > covered[0]


def test_precision_overwrite_never_increases_the_error():
    x = relu_like(4)
    plain, _ = qsim.overq_quantize(x, 4, SCALE, cascade=2, precision=False)
    finer, info = qsim.overq_quantize(x, 4, SCALE, cascade=2, precision=True)
    assert info.precise > 0
    assert bool(((finer - x).abs() <= (plain - x).abs()).all())
    assert float((finer - x).abs().sum()) < float((plain - x).abs().sum())


def test_range_overwrite_does_not_depend_on_precision():
    x = relu_like(5)
    a, ia = qsim.overq_quantize(x, 4, SCALE, cascade=1, precision=False)
    b, ib = qsim.overq_quantize(x, 4, SCALE, cascade=1, precision=True)
    assert torch.equal(ia.covered_mask, ib.covered_mask) and torch.equal(a[ia.covered_mask], b[ib.covered_mask])


def test_large_tensor_threads_agree_with_the_reference_on_a_slice():
    # Enough elements for the parallel loop; vectors are independent, so a slice of batch items is checked.
    x = relu_like(6, (16, 64, 6, 6))
    y, _ = qsim.overq_quantize(x, 4, SCALE, cascade=2)
    want, *_ = reference(x[:2], 4, SCALE, 2, 1, True)
    np.testing.assert_array_equal(y[:2].numpy(), want)
    y_again, _ = qsim.overq_quantize(x[:2].contiguous(), 4, SCALE, cascade=2)
    assert torch.equal(y_again, y[:2])


def test_half_dtypes_and_noncontiguous_inputs():
    x = relu_like(7, (2, 8, 3, 3))
    y32, _ = qsim.overq_quantize(x, 4, SCALE)
    yh, _ = qsim.overq_quantize(x.half(), 4, SCALE)
    assert yh.dtype == torch.float16 and torch.equal(yh, y32.half())
    xt = x.transpose(1, 3)  # channels now on dim 3, not contiguous
    yt, _ = qsim.overq_quantize(xt, 4, SCALE, dim=3)
    assert torch.equal(yt, y32.transpose(1, 3))


def test_gradient_is_straight_through():
    x = relu_like(8, (2, 4, 3)).requires_grad_()
    y, _ = qsim.overq_quantize(x, 4, SCALE, dim=-1)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_inf_is_an_outlier_that_saturates_and_negative_zero_is_a_zero_slot():
    x = torch.tensor([[math.inf, -0.0, math.inf, 1.0]])
    y, info = qsim.overq_quantize(x, 2, 1.0, cascade=0, dim=1)
    assert y.tolist() == [[15.0, 0.0, 3.0, 1.0]] and info.outliers == 2 and info.covered == 1


@pytest.mark.parametrize("bad, error, match", [
    (dict(x=torch.tensor([[0.5, -0.25]])), ValueError, "non-negative.*1 negative"),
    (dict(x=torch.tensor([[0.5, math.nan]])), ValueError, "1 NaN"),
    (dict(bits=1), ValueError, "bits: expected an int in \\[2, 16\\]"),
    (dict(bits=17), ValueError, "bits"),
    (dict(bits=4.0), TypeError, "bits"),
    (dict(scale=0.0), ValueError, "scale: expected a positive finite"),
    (dict(scale=-1.0), ValueError, "scale"),
    (dict(scale=math.inf), ValueError, "scale"),
    (dict(scale=math.nan), ValueError, "scale"),
    (dict(scale="max"), TypeError, "scale"),
    (dict(dim=2), ValueError, "dim: expected an axis of x in \\[-2, 1\\]"),
    (dict(dim=-3), ValueError, "dim"),
    (dict(cascade=-1), ValueError, "cascade"),
    (dict(precision=1), TypeError, "precision"),
    (dict(x=torch.tensor([1, 2])), TypeError, "x: expected a floating tensor"),
    (dict(x=torch.tensor(1.0)), ValueError, "dim"),
])
def test_bad_input_raises_a_specific_error(bad, error, match):
    arguments = dict(x=torch.tensor([[0.5, 0.0]]), bits=4, scale=0.25, cascade=1, dim=1, precision=True) | bad
    x, bits, scale = arguments.pop("x"), arguments.pop("bits"), arguments.pop("scale")
    with pytest.raises(error, match=match):
        qsim.overq_quantize(x, bits, scale, **arguments)


def test_the_exact_rounding_path_outside_the_default_float_environment_agrees():
    # Flush-to-zero makes the kernel round with floor() instead of the FPU's nearbyint: same results.
    x = relu_like(9, (3, 16, 5, 5))
    want, info = qsim.overq_quantize(x, 3, SCALE, cascade=2)
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        got, got_info = qsim.overq_quantize(x, 3, SCALE, cascade=2)
    finally:
        torch.set_flush_denormal(False)
    assert torch.equal(got, want) and torch.equal(got_info.state, info.state)


@pytest.mark.parametrize("shape, dim", [((2, 6, 300), 1), ((3, 7, 2, 150), 1), ((40, 9), -1), ((5, 3000), 0)])
def test_tiles_of_many_vectors_match_the_reference(shape, dim):
    # More than 256 vectors side by side (several tiles per slab), and many short contiguous vectors.
    g = torch.Generator().manual_seed(sum(shape))
    eighths = torch.randint(0, 8 * 2**7, shape, generator=g) * (torch.rand(shape, generator=g) < 0.6)
    x = eighths.float() * (SCALE / 8)
    for precision in (False, True):
        y, info = qsim.overq_quantize(x, 3, SCALE, cascade=2, dim=dim, precision=precision)
        want, covered, precise, claimed = reference(x, 3, SCALE, 2, dim, precision)
        np.testing.assert_array_equal(y.numpy(), want)
        np.testing.assert_array_equal(info.claimed_mask.numpy(), claimed)
