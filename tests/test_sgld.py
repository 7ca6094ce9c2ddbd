"""Low-precision SGLD: Q^vc has the mean and variance it promises; on a Gaussian target the quantized chains
keep the full-precision stationary variance except naive low-precision accumulation, which inflates it."""
import math

import pytest
import torch
from torch import nn

import qsim
from qsim.nn import recipes
from qsim.optim_sgld import SGLD, CyclicalSchedule, grid_gap, variance_corrected_quantize

FMT = "fixed<8,3>"  # as the authors' Gaussian script: 8 bits, 3 fractional, Δ = 1/8
DELTA = 1 / 8
Z = 5.0


@pytest.fixture(autouse=True)
def _one_thread():
    """The chains are 4000-element tensors: torch's thread pool only adds contention on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _moment_bounds(t: torch.Tensor):
    """Sample mean and variance with their standard errors: the variance's from the 4th moment, plus var/n for
    the O(1/n) terms that dominate when m4 = var² (a fair two-point distribution)."""
    t = t.double()
    n, mean, var = t.numel(), t.mean().item(), t.var().item()
    m4 = ((t - mean) ** 4).mean().item()
    return mean, math.sqrt(var / n), var, math.sqrt(max(m4 - var ** 2, 0.0) / n) + var / n


@pytest.mark.parametrize("mu", [0.3, 0.25, -1.0625, 2.01])
@pytest.mark.parametrize("variance", [0.0005, 0.002, 0.0039, 0.01, 0.2])
def test_variance_corrected_quantize_has_the_requested_mean_and_variance(mu, variance):
    """E[Q^vc(μ, v)] = μ and Var = max(v, v_s), v_s = |r|(Δ − |r|) the stochastic rounding's own variance
    (which only matters when v <= Δ²/4); the values lie on the grid."""
    g = torch.Generator().manual_seed(1)
    t = variance_corrected_quantize(torch.full((100_000,), mu), variance, FMT, g)
    assert torch.equal(qsim.quantize(t, FMT), t), "Q^vc must return grid points"
    residual = abs(mu - round(mu / DELTA) * DELTA)
    expected_var = variance if variance > DELTA ** 2 / 4 else max(variance, residual * (DELTA - residual))
    mean, mean_se, var, var_se = _moment_bounds(t)
    assert abs(mean - mu) < Z * mean_se + 1e-9
    assert abs(var - expected_var) < Z * var_se + 1e-9


def test_grid_gap_is_the_local_spacing():
    """Fixed point: 2^-fl everywhere, saturated values included; float: the larger ulp around a power of two."""
    assert torch.equal(grid_gap(torch.tensor([0.3, 0.25, 7.875, -8.0, 100.0]), FMT), torch.full((5,), DELTA))
    # fp8_e4m3 has 3 mantissa bits: ulp 2^-5 in [0.25, 0.5), 2^-4 below 1 and 2^-3 from 1 on.
    assert grid_gap(torch.tensor([0.3, 0.9, 1.0, 1.1]), "fp8_e4m3").tolist() == [2 ** -5, 2 ** -4, 2 ** -3, 2 ** -3]


class _Chains(nn.Module):
    """n independent 1-d chains targeting N(0, 1): U(θ) = Σ θ²/2."""

    def __init__(self, n):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(n))

    def forward(self):
        return 0.5 * (self.theta ** 2).sum()


def _final_states(accumulator, alpha, steps=1000, chains=4000):
    model = _Chains(chains)
    optimizer = SGLD(model.parameters(), lr=alpha, generator=torch.Generator().manual_seed(3))
    if accumulator is not None:
        _, optimizer = recipes.sgld(FMT, accumulator, activations=False).apply(model, optimizer)
    torch.manual_seed(4)  # the stochastic rounding seeds LowPrecision draws
    for _ in range(steps):
        optimizer.zero_grad()
        model().backward()
        optimizer.step()
    return model.theta.detach()


ALPHA = 0.005


@pytest.mark.parametrize("accumulator", [None, "full", "vc"])
def test_gaussian_target_stationary_variance_matches_full_precision(accumulator):
    """θ' = (1 − α)θ − α e + sqrt(2α) ξ with E[e | θ] = 0 has stationary variance
    (2α + α² Var e) / (2α − α²): 1/(1 − α/2) in full precision; the gradient and weight rounding errors e
    (variance <= Δ²/4 each) add at most α Δ²/4 to it. Q^vc keeps each step's variance at exactly 2α, so VC
    lands in the same interval."""
    theta = _final_states(accumulator, ALPHA)
    _, _, var, var_se = _moment_bounds(theta)
    low = 2 * ALPHA / (2 * ALPHA - ALPHA ** 2)
    high = (2 * ALPHA + ALPHA ** 2 * DELTA ** 2 / 2) / (2 * ALPHA - ALPHA ** 2)
    assert low - Z * var_se < var < high + Z * var_se, f"{accumulator}: variance {var:.4f}"
    if accumulator is not None:
        assert torch.equal(qsim.quantize(theta, FMT), theta)


def test_naive_low_precision_accumulator_overestimates_the_variance():
    """SGLDLP-L stochastically rounds θ − α∇U + noise: each step adds the rounding variance p(1 − p)Δ²,
    on average Δ²/6 over a density spread across many grid cells, so the stationary variance is about
    (2α + Δ²/6) / (2α − α²) = 1.26 at α = 0.005, far above full precision's 1.0025."""
    theta = _final_states("low", ALPHA)
    _, _, var, var_se = _moment_bounds(theta)
    full_precision_high = (2 * ALPHA + ALPHA ** 2 * DELTA ** 2 / 2) / (2 * ALPHA - ALPHA ** 2)
    assert var > full_precision_high + Z * var_se
    predicted = (2 * ALPHA + DELTA ** 2 / 6) / (2 * ALPHA - ALPHA ** 2)
    assert abs(var - predicted) < 0.05 * predicted


def test_recipes_store_weights_and_accumulators_as_the_paper_says():
    """SGLDLP-F keeps a float32 master and fmt weights; SGLDLP-L and VC keep only fmt weights."""
    model = _Chains(64)
    with torch.no_grad():
        model.theta.normal_()
    _, full = recipes.sgld(FMT, "full", activations=False).apply(model, SGLD(model.parameters(), lr=0.01))
    assert full.formats["acc"].name == "fp32" and full.optimizer.vc_format is None
    model().backward()
    full.step()
    assert torch.equal(qsim.quantize(model.theta.detach(), FMT), model.theta.detach())
    master = full.masters[model.theta]
    assert not torch.equal(qsim.quantize(master, FMT), master)
    _, vc = recipes.sgld(FMT, "vc", activations=False).apply(model, SGLD(model.parameters(), lr=0.01))
    assert vc.formats["acc"] is None and vc.optimizer.vc_format.name == qsim.formats.get(FMT).name


def test_temperature_zero_is_sgd():
    model = _Chains(8)
    with torch.no_grad():
        model.theta.copy_(torch.arange(8.0))
    optimizer = SGLD(model.parameters(), lr=0.25, temperature=0.0)
    model().backward()
    optimizer.step()
    assert torch.equal(model.theta.detach(), 0.75 * torch.arange(8.0))


def test_cyclical_schedule_follows_the_cosine_and_its_stages():
    """K = 8 steps in M = 2 cycles of 4: lr_0/2 (cos(π r) + 1) for r = 0, 1/4, 1/2, 3/4; noise from r >= 1/2."""
    optimizer = SGLD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = CyclicalSchedule(optimizer, total_steps=8, cycles=2, exploration=0.5, samples_per_cycle=1)
    lrs, sampling, collect = [], [], []
    for _ in range(8):
        schedule.step()
        lrs.append(optimizer.param_groups[0]["lr"])
        sampling.append(optimizer.param_groups[0]["sampling"])
        collect.append(schedule.collect)
    expected = [(math.cos(math.pi * r) + 1) / 2 for r in (0, 0.25, 0.5, 0.75)] * 2
    assert lrs == pytest.approx(expected)
    assert sampling == [False, False, True, True] * 2
    assert collect == [False, False, False, True] * 2


def test_bad_input_raises_clear_errors():
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="temperature"):
        SGLD(params, lr=0.1, temperature=-1.0)
    with pytest.raises(ValueError, match="lr"):
        SGLD(params, lr=0.0)
    with pytest.raises(ValueError, match="datasize"):
        SGLD(params, lr=0.1, datasize=0)
    with pytest.raises(ValueError, match="variance"):
        variance_corrected_quantize(torch.zeros(2), -0.1, FMT)
    with pytest.raises(ValueError, match="accumulator"):
        recipes.sgld(FMT, "bogus")
    with pytest.raises(ValueError, match="fmt"):
        recipes.sgld("no_such_format")
    with pytest.raises(TypeError, match="SGLD"):
        recipes.sgld(FMT).apply(nn.Linear(2, 2), torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1))
    with pytest.raises(ValueError, match="exploration"):
        CyclicalSchedule(SGLD(params, lr=0.1), total_steps=10, exploration=1.0)
