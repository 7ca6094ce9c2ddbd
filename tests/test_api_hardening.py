"""quantize on overlapping memory, autograd leaves, other layouts and meaningless arguments."""
import warnings

import pytest
import torch
from hypothesis import given, settings, strategies as st

import qsim

# Every family that takes out= (OverQ: unsigned, nearest only), and block formats along memory and across it.
FAMILIES = ["fixed<8,3>", "fp8_e4m3", "mxfp4", "bfp<8,4>", "mx<fp8_e4m3,4,dim=0>", "posit8", "lns8",
            "overq<4,scale=0.25,dim=-1>"]


@settings(max_examples=200, deadline=None)
@given(fmt=st.sampled_from(FAMILIES), n=st.integers(1, 48), src=st.integers(0, 40), dst=st.integers(0, 40),
       step=st.sampled_from([1, 2]), rounding=st.sampled_from(["nearest", "stochastic"]),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
       shape=st.sampled_from(["flat", "rows", "columns"]))
def test_out_overlapping_the_input_gives_the_out_of_place_result(fmt, n, src, dst, step, rounding, dtype, shape):
    """Any two views of one buffer (shifted, strided, or the same; flat, as rows or transposed) as x and out:
    out holds quantize(x) as computed on a copy of x; elements of the buffer outside out are untouched."""
    if fmt.startswith("overq"):
        rounding = "nearest"
    n += -n % 4  # whole blocks
    buffer = torch.randn(200, generator=torch.Generator().manual_seed(n + 7 * src + 13 * dst)).to(dtype) * 4
    if fmt.startswith("overq"):
        buffer = buffer.abs()
    seed = 5 if rounding == "stochastic" else None
    index = torch.arange(200)

    def view(t, start):
        flat = t[start:start + n * step:step]
        return flat if shape == "flat" else flat.view(-1, 4) if shape == "rows" else flat.view(4, -1).t()

    x, out, written = view(buffer, src), view(buffer, dst), view(index, dst)
    want_out = qsim.quantize(x.clone(), fmt, rounding, seed=seed)
    want_buffer = buffer.clone()
    want_buffer[written.reshape(-1)] = want_out.reshape(-1)
    qsim.quantize(x, fmt, rounding, seed=seed, out=out)
    assert torch.equal(buffer, want_buffer)


@pytest.mark.parametrize("fmt", FAMILIES)
def test_an_out_that_overlaps_itself_is_refused_before_any_work(fmt):
    """An expanded (stride-0) out, or x itself in place: refused as torch refuses it, naming out."""
    x = torch.rand(4, 8)
    for out in (torch.zeros(4, 1).expand(4, 8), torch.zeros(8).expand(4, 8)):
        with pytest.raises(RuntimeError, match="out: more than one of its elements"):
            qsim.quantize(x, fmt, out=out)
        assert out.eq(0).all()
    with pytest.raises(RuntimeError, match="out: more than one of its elements"):
        qsim.quantize_(torch.rand(1, 8).expand(4, 8), fmt)


def test_a_cuda_tensor_without_cuda_says_what_is_missing(monkeypatch):
    """(A CUDA tensor stands in through Tensor.is_cuda, as tests/emulated_gpu.py does.)"""
    if torch.cuda.is_available():
        pytest.skip("this torch runs CUDA")
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    for fmt in FAMILIES:
        with pytest.raises(RuntimeError, match="x: a CUDA tensor, but (this torch build has no CUDA|torch sees no)"):
            qsim.quantize(torch.rand(2, 8), fmt)


def test_in_place_on_a_leaf_that_requires_grad_is_refused_as_torch_refuses_it():
    weight = torch.nn.Parameter(torch.randn(4))
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        qsim.quantize_(weight, "fp8_e4m3")
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        qsim.quantize(torch.randn(4), "fp8_e4m3", out=weight)
    with torch.no_grad():
        qsim.quantize_(weight, "fp8_e4m3")
    assert torch.equal(weight.detach(), qsim.quantize(weight.detach(), "fp8_e4m3"))


@pytest.mark.parametrize("make", [lambda t: t.to_sparse(), lambda t: t.to_sparse_csr(),
                                  lambda t: torch.nested.nested_tensor([t[0], t[1, :2]])],
                         ids=["coo", "csr", "nested"])
def test_other_layouts_are_refused_with_the_supported_one_named(make):
    with pytest.raises(TypeError, match="expected a dense tensor"):
        qsim.quantize(make(torch.randn(3, 3)), "fp8_e4m3")


def test_a_seed_with_a_deterministic_rounding_warns():
    x = torch.randn(8)
    with pytest.warns(UserWarning, match="deterministic and ignores the seed"):
        qsim.quantize(x, "fp8_e4m3", "toward_zero", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qsim.quantize(x, "fp8_e4m3", "stochastic", seed=1)
        qsim.quantize(x, "fp8_e4m3", "toward_zero")


def test_importing_qsim_loads_neither_torch_dynamo_nor_pandas():
    """The two heavy imports (2.4 s and 0.7 s here) wait until torch.compile or a table needs them."""
    import subprocess
    import sys

    code = "import sys, qsim; print(sorted(m for m in ('torch._dynamo', 'pandas') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
