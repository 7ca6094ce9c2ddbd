"""qsim.optim.HALP: bit centering keeps an 8-bit offset yet converges past 8-bit precision (De Sa et al. 2018)."""
import pytest
import torch
from torch import nn

from qsim.optim import HALP, LowPrecision

N, D, BATCH = 128, 8, 8


@pytest.fixture(scope="module")
def problem():
    """Least squares 0.5 mean((A w - b)^2): mu and L are the extreme eigenvalues of A^T A / N."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(N, D, generator=g)
    b = a @ torch.randn(D, generator=g) + 0.1 * torch.randn(N, generator=g)
    w_star = torch.linalg.lstsq(a.double(), b.double().unsqueeze(1)).solution.squeeze(1)
    eig = torch.linalg.eigvalsh((a.T @ a / N).double())
    return a, b, w_star, eig[0].item(), eig[-1].item()


def _loss(a, b, w):
    return 0.5 * (a @ w - b).pow(2).mean()


def _batches(epochs):
    g = torch.Generator().manual_seed(1)
    return [[torch.randint(0, N, (BATCH,), generator=g) for _ in range(N // BATCH)] for _ in range(epochs)]


def _run_halp(problem, epochs, bits=8):
    a, b, w_star, mu, L = problem
    w = nn.Parameter(torch.zeros(D))
    opt = HALP([w], lr=0.2 / L, bits=bits, mu=mu)
    errors, offsets = [], []
    for epoch in _batches(epochs):
        opt.recenter(lambda: _backward(_loss(a, b, w)))
        for i in epoch:
            opt.step(lambda i=i: _backward(_loss(a[i], b[i], w)))
            offsets.append(opt.state[w]["codes"])
        errors.append((w.detach().double() - w_star).norm().item())
    return errors, offsets


def _backward(loss):
    loss.backward()
    return loss


def test_offsets_are_bits_wide_integers_on_the_rescaled_grid(problem):
    _, offsets = _run_halp(problem, 2)
    for codes in offsets:
        assert torch.equal(codes, codes.round()) and codes.abs().max() <= 128


def test_converges_linearly_past_the_precision_of_its_offsets(problem):
    """HALP's error shrinks every epoch and ends orders of magnitude below what SGD with 8-bit
    fixed-point weights (same step size, stochastic rounding) reaches."""
    a, b, w_star, mu, L = problem
    errors, _ = _run_halp(problem, 12)
    assert all(later < earlier for earlier, later in zip(errors[:6], errors[1:7]))
    assert errors[-1] < 1e-4 * w_star.norm().item()

    w = nn.Parameter(torch.zeros(D))
    sgd = LowPrecision(torch.optim.SGD([w], lr=0.2 / L), weight="fixed<8,5>", rounding="stochastic")
    for epoch in _batches(12):
        for i in epoch:
            sgd.zero_grad()
            _loss(a[i], b[i], w).backward()
            sgd.step()
    assert errors[-1] < 1e-2 * (w.detach().double() - w_star).norm().item()


def test_step_before_recenter_raises():
    w = nn.Parameter(torch.zeros(2))
    with pytest.raises(RuntimeError, match="recenter"):
        HALP([w], lr=0.1).step(lambda: _backward(w.sum()))
    with pytest.raises(ValueError, match="bits"):
        HALP([w], lr=0.1, bits=1)
