"""Statistical checks of stochastic rounding that every format family's tests use: N draws of one value
with a fixed seed, and bounds of Z standard deviations (a false failure has probability < 1e-6 per check)."""
import math

import torch

import qsim

N = 200_000  # draws per value
Z = 5.0  # |error| bound in standard deviations


def draws(x: float, fmt, n=N, seed=0, **kwargs) -> torch.Tensor:
    return qsim.quantize(torch.full((n,), x, dtype=torch.float64), fmt, rounding="stochastic", seed=seed, **kwargs)


def check_unbiased_between(fmt, lo: float, hi: float, fraction: float) -> None:
    """x = lo + fraction·(hi - lo), lo and hi neighbours in fmt, rounds to one of them, to hi with
    probability `fraction`, so that E[q(x)] = x."""
    x = lo + fraction * (hi - lo)
    q = draws(x, fmt)
    assert set(q.unique().tolist()) <= {lo, hi}
    p_hi = (q == hi).double().mean().item()
    sigma = math.sqrt(fraction * (1 - fraction) / N)
    assert abs(p_hi - fraction) < Z * sigma, "P(hi) must be the fraction (x - lo) / (hi - lo)"
    assert abs(q.mean().item() - x) < Z * sigma * abs(hi - lo), "E[q(x)] must equal x"


def check_rand_bits_between(fmt, lo: float, hi: float, rand_bits: int) -> None:
    """With r random bits the fraction f is truncated to r bits: P(hi) = floor(f · 2^r) / 2^r."""
    for fraction in (0.1, 0.37, 0.5, 0.9):
        q = draws(lo + fraction * (hi - lo), fmt, rand_bits=rand_bits, seed=7)
        p_up = (q == hi).double().mean().item()
        expected = math.floor(fraction * 2**rand_bits) / 2**rand_bits
        sigma = math.sqrt(max(expected * (1 - expected), 1e-12) / N)
        assert abs(p_up - expected) < Z * sigma + 1e-12
