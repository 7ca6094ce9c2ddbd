"""Recipes configure hooks and optimizer formats as their papers say; block formats skip until registered."""
import pytest
import torch
from torch import nn

import qsim
from qsim.nn import recipes

REGISTERED = set(qsim.formats.list())


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))


def _step(model, optimizer, loss_scale):
    torch.manual_seed(1)
    x, y = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))
    optimizer.zero_grad()
    (nn.functional.cross_entropy(model(x), y) * loss_scale).backward()
    optimizer.step()


def representable(t, fmt):
    return torch.equal(qsim.quantize(t, fmt), t)


def test_float8_qpytorch_stores_every_number_in_its_format():
    """W, G in e5m2; M and the accumulator in e6m9; loss x1000 undone by grad_scale 1/1000 (QPyTorch)."""
    model = _cnn()
    recipe = recipes.float8_qpytorch()
    handle, opt = recipe.apply(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    assert recipe.loss_scale == 1000 and opt.grad_scale == pytest.approx(1e-3)
    assert set(handle.specs) == {"0", "1", "4"}
    assert all(representable(p, "float<e5m2>") for p in model.parameters())
    _step(model, opt, recipe.loss_scale)
    for p in model.parameters():
        assert representable(p, "float<e5m2>") and representable(p.grad, "float<e5m2>")
        assert representable(opt.masters[p], "float<e6m9>")
        assert representable(opt.state[p]["momentum_buffer"], "float<e6m9>")


def test_fp8_recipe_hooks_gemm_operands_only():
    """e4m3 weights (cast on the fly) and inputs, e5m2 errors, on conv/linear; masters stay float32."""
    model = _cnn()
    masters = [p.detach().clone() for p in model.parameters()]
    handle, opt = recipes.fp8().apply(model, torch.optim.SGD(model.parameters(), lr=0.0))
    assert set(handle.specs) == {"0", "4"}
    spec = handle.specs["0"]
    assert (spec.weight.name, spec.input.name, spec.grad_output.name, spec.scaling) == \
        ("fp8_e4m3", "fp8_e4m3", "fp8_e5m2", "tensor")
    _step(model, opt, 1.0)
    assert all(torch.equal(p, m) for p, m in zip(model.parameters(), masters))


def test_bfloat16_recipe_uses_stochastic_rounding_everywhere():
    model = _cnn()
    handle, opt = recipes.bfloat16_qpytorch().apply(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    assert {s.rounding for s in handle.specs.values()} == {"stochastic"}
    assert set(opt.rounding.values()) == {"stochastic"}
    _step(model, opt, 1.0)
    assert all(representable(p, "bf16") for p in model.parameters())


def test_averaged_model_is_the_running_mean_of_weights():
    """SWA/SWALP averaging in full precision: after two updates the average is the mean of the snapshots."""
    model = _cnn()
    average = recipes.Recipe("swa", "test").averaged(model)
    first = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update_parameters(model)  # the first update copies
    average.update_parameters(model)
    for a, f in zip(average.module.parameters(), first):
        assert torch.allclose(a, f + 1.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(3.0)
    average.update_parameters(model)
    for a, f in zip(average.module.parameters(), first):
        assert torch.allclose(a, f + 2.0)


@pytest.mark.skipif("bfp8_dim0" not in REGISTERED, reason="SWALP needs 8-bit block floating point: the format 'bfp8_dim0' "
                                                       "is not registered in qsim.formats yet")
def test_swalp_keeps_weights_and_momentum_in_block_floating_point():
    model = _cnn()
    recipe = recipes.swalp()
    handle, opt = recipe.apply(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    assert recipe.average_weights
    _step(model, opt, 1.0)
    for p in model.parameters():
        assert representable(p, "bfp8_dim0") and representable(opt.state[p]["momentum_buffer"], "bfp8_dim0")


@pytest.mark.skipif(not {"mxfp8_e4m3", "mxfp8_e5m2"} <= REGISTERED,
                    reason="MX training needs the formats 'mxfp8_e4m3' and 'mxfp8_e5m2', not registered in qsim.formats yet")
def test_mx_recipe_quantizes_gemm_operands():
    model = _cnn()
    handle, opt = recipes.mx().apply(model, torch.optim.SGD(model.parameters(), lr=0.05))
    assert set(handle.specs) == {"0", "4"}
    _step(model, opt, 1.0)


@pytest.mark.parametrize("make", [recipes.float8_qpytorch, recipes.bfloat16_qpytorch, recipes.fp8,
                                  recipes.swalp, recipes.mx])
def test_each_recipe_names_its_source(make):
    assert make.__doc__ and ("et al." in make.__doc__ or "QPyTorch" in make.__doc__)
