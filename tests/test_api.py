"""The quantize API: dtypes, shapes, layouts, out= and in-place forms, autograd, torch.compile, and
clear errors for bad input."""
import pytest
import torch

import qsim


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_result_keeps_dtype_shape_and_device_and_is_on_the_grid(dtype, device):
    x = torch.randn(3, 5, 7, dtype=dtype, device=device)
    y = qsim.quantize(x, "fp8_e4m3")
    assert (y.dtype, y.shape, y.device) == (x.dtype, x.shape, x.device)
    grid = torch.from_numpy(qsim.formats.get("fp8_e4m3").values())
    assert torch.isin(y.double().cpu(), grid).all()


def test_half_inputs_match_float32_inputs():
    x = torch.randn(10_000).half()
    assert torch.equal(qsim.quantize(x, "fp8_e5m2").float(), qsim.quantize(x.float(), "fp8_e5m2"))


def test_empty_and_zero_dim_tensors():
    assert qsim.quantize(torch.empty(0, 3), "bf16").shape == (0, 3)
    assert qsim.quantize(torch.tensor(0.30078125), "fp8_e4m3").item() == 0.3125


def test_non_contiguous_inputs_and_outputs():
    x = torch.randn(64, 48)
    expected = qsim.quantize(x.t().contiguous(), "fp8_e5m2")
    assert torch.equal(qsim.quantize(x.t(), "fp8_e5m2"), expected)
    out = torch.empty(48, 64).t()  # a strided destination
    qsim.quantize(x.t().contiguous().t(), "fp8_e5m2", out=out)
    assert torch.equal(out, qsim.quantize(x, "fp8_e5m2"))


def test_out_and_in_place_forms_equal_the_functional_form():
    x = torch.randn(1000)
    expected = qsim.quantize(x, "fixed<8,4>", rounding="stochastic", seed=3)
    out = torch.empty_like(x)
    assert qsim.quantize(x, "fixed<8,4>", rounding="stochastic", seed=3, out=out) is out
    assert torch.equal(out, expected)
    y = x.clone()
    assert qsim.quantize_(y, "fixed<8,4>", rounding="stochastic", seed=3) is y
    assert torch.equal(y, expected)
    strided = x.clone().reshape(25, 40).t()
    qsim.quantize_(strided, "fixed<8,4>")
    assert torch.equal(strided, qsim.quantize(x.reshape(25, 40).t(), "fixed<8,4>"))


def test_gradient_is_straight_through():
    x = torch.randn(100, requires_grad=True)
    (qsim.quantize(x, "fp8_e4m3") * torch.arange(100.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(100.0))


def test_works_under_torch_compile():
    def f(x):
        return qsim.quantize(x * 2, "bf16") + 1

    x = torch.randn(256)
    assert torch.equal(torch.compile(f, backend="eager", fullgraph=True)(x), f(x))
    w = torch.randn(256, requires_grad=True)
    torch.compile(f, backend="eager", fullgraph=True)(w).sum().backward()
    assert torch.equal(w.grad, torch.full((256,), 2.0))


def test_in_place_rounding_of_a_tensor_saved_for_backward_is_caught_by_autograd():
    """The eager in-place path writes memory directly, so it must bump the version counter as torch ops do."""
    w, a = torch.randn(8, requires_grad=True), torch.randn(8)
    loss = (w * a).sum()  # saves a for the gradient of w
    qsim.quantize_(a, "fp8_e4m3")
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_format_values_and_names_are_interchangeable():
    x = torch.randn(1000)
    fmt = qsim.FloatingPoint(4, 3, special="fn", overflow="saturate")
    assert qsim.formats.get("fp8_e4m3") == fmt == qsim.formats.get("float<e4m3,fn>")
    assert torch.equal(qsim.quantize(x, fmt), qsim.quantize(x, "fp8_e4m3"))
    assert qsim.formats.get("fixed<8,4>") == qsim.FixedPoint(8, 4) == qsim.formats.get("fixed8_4")


@pytest.mark.parametrize("call,error,words", [
    (lambda: qsim.quantize(torch.arange(4), "fp16"), TypeError, "x: expected a floating tensor"),
    (lambda: qsim.quantize([1.0], "fp16"), TypeError, "x: expected a torch.Tensor"),
    (lambda: qsim.quantize(torch.ones(2), "fp8_e4m4"), ValueError, "did you mean"),
    (lambda: qsim.quantize(torch.ones(2), "fp16", rounding="nearest_even"), ValueError, "rounding: expected one of"),
    (lambda: qsim.quantize(torch.ones(2), "fp16", rounding="stochastic", rand_bits=0), ValueError, "rand_bits"),
    (lambda: qsim.quantize(torch.ones(2), "fp16", rounding="stochastic", rand_bits=33), ValueError, "rand_bits"),
    (lambda: qsim.quantize(torch.ones(2), "fp16", rand_bits=8), ValueError, "only applies to rounding='stochastic'"),
    (lambda: qsim.quantize(torch.ones(2), "fp16", rounding="stochastic", seed=-1), ValueError, "seed"),
    (lambda: qsim.quantize(torch.ones(2), "fp16", rounding="stochastic", seed=2**63), ValueError, "seed"),
    (lambda: qsim.quantize(torch.ones(2), "fp16", rounding="stochastic", seed=1.5), TypeError, "seed"),
    (lambda: qsim.quantize(torch.ones(2), "fp16", out=torch.ones(3)), ValueError, "out: expected shape"),
    (lambda: qsim.quantize(torch.ones(2), 8), TypeError, "fmt: expected a Format"),
    (lambda: qsim.FloatingPoint(0, 3), ValueError, "exp: expected an int in [1, 8]"),
    (lambda: qsim.FloatingPoint(4, 24), ValueError, "man"),
    (lambda: qsim.FloatingPoint(4, 3, special="fn", overflow="inf"), ValueError, "overflow: 'inf' needs"),
    (lambda: qsim.FloatingPoint(4, 3, special="weird"), ValueError, "special: expected one of"),
    (lambda: qsim.FixedPoint(8, 8), ValueError, "wl > fl"),
    (lambda: qsim.FixedPoint(8.0, 4), TypeError, "wl: expected an int"),
    (lambda: qsim.FixedPoint(8, 4, overflow="clip"), ValueError, "overflow: expected one of"),
    (lambda: qsim.formats.get("fixed<8>"), ValueError, "expected fixed<wl,fl"),
    (lambda: qsim.formats.get("float<8,3>"), ValueError, "expected float<eXmY"),
    (lambda: qsim.formats.get("float<e4m3,bogus>"), ValueError, "unknown float options"),
])
def test_bad_input_raises_a_clear_error(call, error, words):
    with pytest.raises(error, match=None) as info:
        call()
    assert words in str(info.value)


def test_formats_registry_lists_documented_formats():
    names = qsim.formats.list()
    assert {"fp32", "tf32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "fp8_e4m3fnuz", "fp8_e5m2fnuz", "fp6_e2m3",
            "fp6_e3m2", "fp4_e2m1", "int8"} <= set(names)
    for name in names:
        entry = qsim.formats.registry()[name]
        assert entry.description and entry.source
        assert qsim.formats.get(entry.format.spec) == entry.format, "inline specs round-trip"


def test_derived_limits_match_the_published_ones():
    get = qsim.formats.get
    assert (get("fp8_e4m3").max, get("fp8_e5m2").max, get("fp8_e4m3fnuz").max, get("fp8_e5m2fnuz").max) == (
        448.0, 57344.0, 240.0, 57344.0)
    assert (get("fp6_e2m3").max, get("fp6_e3m2").max, get("fp4_e2m1").max) == (7.5, 28.0, 6.0)
    assert get("fp16").max == 65504.0 and get("fp16").min_positive == 2.0**-24 and get("fp16").eps == 2.0**-10
    assert get("bf16").max == float(torch.finfo(torch.bfloat16).max)
    assert get("fp32").max == float(torch.finfo(torch.float32).max) and get("fp32").min_positive == 2.0**-149
    assert get("int8").max == 127 and get("fixed<8,4>").eps == 1 / 16
