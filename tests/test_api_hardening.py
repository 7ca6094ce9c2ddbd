"""quantize on overlapping memory, autograd leaves, other layouts and meaningless arguments."""
import warnings

import pytest
import torch
from hypothesis import given, settings, strategies as st

import qsim

FAMILIES = ["fixed<8,3>", "fp8_e4m3", "mxfp4", "bfp<8,4>", "posit8", "lns8"]


@settings(max_examples=120, deadline=None)
@given(fmt=st.sampled_from(FAMILIES), n=st.integers(1, 48), src=st.integers(0, 40), dst=st.integers(0, 40),
       step=st.sampled_from([1, 2]), rounding=st.sampled_from(["nearest", "stochastic"]))
def test_out_overlapping_the_input_gives_the_out_of_place_result(fmt, n, src, dst, step, rounding):
    """Any two views of one buffer (shifted, strided, or the same) as x and out: out holds quantize(x) as
    computed on a copy of x; elements of the buffer outside out are untouched."""
    if fmt in ("mxfp4", "bfp<8,4>") and n % 4:
        n += 4 - n % 4  # whole blocks
    buffer = torch.randn(200, generator=torch.Generator().manual_seed(n + 7 * src + 13 * dst)) * 4
    x, out = buffer[src:src + n * step:step], buffer[dst:dst + n * step:step]
    want_out = qsim.quantize(x.clone(), fmt, rounding, seed=5 if rounding == "stochastic" else None)
    want_buffer = buffer.clone()
    want_buffer[dst:dst + n * step:step] = want_out
    qsim.quantize(x, fmt, rounding, seed=5 if rounding == "stochastic" else None, out=out)
    assert torch.equal(buffer, want_buffer)


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
