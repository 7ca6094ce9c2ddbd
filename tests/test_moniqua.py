"""Moniqua and decentralized SGD: exact recovery below θ/2, equality with D-PSGD without quantization, the
gossip matrices and the bit counts in closed form, and clear errors on bad input."""
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import qsim
from qsim.moniqua import (Communication, bits_per_iteration, centered_mod, decentralized_sgd, gossip_matrix,
                          moniqua_bits)


@settings(max_examples=200, deadline=None)
@given(theta_exp=st.integers(-6, 6), codes=st.lists(st.integers(-2**20, 2**20), min_size=2, max_size=2),
       offset=st.integers(-2**30, 2**30), fraction=st.fractions(Fraction(-49, 100), Fraction(49, 100)))
def test_modulo_recovery_is_exact_below_half_theta(theta_exp, codes, offset, fraction):
    """x̂ = ((θ q_j − x_i) mod θ) + x_i with q_j = (x_j / θ) mod 1 equals x_j whenever |x_j − x_i| < θ/2,
    however large x_i and x_j themselves are (offset: many multiples of θ). Dyadic values keep the float64
    arithmetic exact, so equality is bitwise."""
    theta = 2.0 ** theta_exp
    x_i = theta * offset + codes[0] * theta * 2.0 ** -22
    x_j = x_i + float(Fraction(round(fraction * 2**20), 2**20)) * theta
    assert abs(x_j - x_i) < theta / 2
    message = Communication("moniqua", theta=theta)
    x = torch.tensor([[x_i], [x_j]], dtype=torch.float64)
    estimates = message.estimates(x, seed=0)
    assert estimates[0, 1].item() == x_j and estimates[1, 0].item() == x_i
    assert estimates[0, 0].item() == x_i and estimates[1, 1].item() == x_j


def test_modulo_recovery_fails_beyond_half_theta():
    """The bound is tight: |x_j − x_i| = 0.75 θ is recovered as x_j − θ."""
    x = torch.tensor([[0.0], [0.75]], dtype=torch.float64)
    assert Communication("moniqua", theta=1.0).estimates(x, 0)[0, 1].item() == -0.25


def _numpy_dpsgd(mixing, targets, x0, lr, steps):
    """D-PSGD (1) for f_i(x) = |x − b_i|²/2, written independently: X ← W X − α (X − B)."""
    x = np.repeat(x0[None, :], mixing.shape[0], axis=0)
    for _ in range(steps):
        x = mixing @ x - lr * (x - targets)
    return x


@pytest.mark.parametrize("graph, workers", [("ring", 8), ("torus", 16), ("complete", 4)])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_infinite_precision_moniqua_equals_dpsgd_exactly(graph, workers, data):
    """Without quantization Moniqua's recovery is exact (the workers stay within θ/2), so its iterates are
    D-PSGD's, bit for bit: dyadic targets, step and gossip weights keep every float64 operation exact."""
    dim = 3
    codes = data.draw(st.lists(st.integers(-64, 64), min_size=workers * dim, max_size=workers * dim))
    targets = np.array(codes, dtype=np.float64).reshape(workers, dim) / 16
    x0 = np.array(data.draw(st.lists(st.integers(-64, 64), min_size=dim, max_size=dim)), dtype=np.float64) / 8
    mixing = gossip_matrix(graph, workers)
    steps, lr = 6, 0.125
    expected = _numpy_dpsgd(mixing.numpy(), targets, x0, lr, steps)
    b = torch.from_numpy(targets)
    for communication in (Communication("full"), Communication("moniqua", theta=64.0)):
        run = decentralized_sgd(lambda x, k: x - b, torch.from_numpy(x0), mixing, steps, lr, communication)
        assert np.array_equal(run["x"].numpy(), expected), communication.method


def test_gossip_matrices_are_symmetric_doubly_stochastic_with_the_documented_weights():
    ring = gossip_matrix("ring", 5)
    assert ring[0].tolist() == [0.5, 0.25, 0, 0, 0.25]
    torus = gossip_matrix("torus", 12)  # 3 x 4: worker 0's neighbours are 1, 3 (row) and 4, 8 (column)
    assert torus[0].nonzero().flatten().tolist() == [0, 1, 3, 4, 8] and torus[0, 4].item() == 0.125
    complete = gossip_matrix("complete", 4)
    assert torch.equal(complete, torch.full((4, 4), 0.25, dtype=torch.float64))
    for w in (ring, torus, complete, gossip_matrix("ring", 6, self_weight=0.2)):
        assert torch.equal(w, w.T)
        assert torch.allclose(w.sum(0), torch.ones(len(w), dtype=torch.float64))


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("graph, workers, degree", [("ring", 8, 2), ("torus", 9, 4), ("torus", 16, 4),
                                                    ("complete", 6, 5)])
def test_bits_per_iteration_has_its_closed_form(bits, graph, workers, degree):
    """W workers each send d parameters of b bits to each of their deg neighbours: W · deg · d · b
    (ring deg 2, torus deg 4, complete deg W − 1); full precision: 32 bits an element."""
    dim = 650
    mixing = gossip_matrix(graph, workers)
    moniqua = Communication("moniqua", moniqua_bits(bits), theta=1.0)
    assert bits_per_iteration(mixing, dim, moniqua) == workers * degree * dim * bits
    assert bits_per_iteration(mixing, dim, Communication("full")) == workers * degree * dim * 32
    run = decentralized_sgd(lambda x, k: x, torch.zeros(dim), mixing, 3, 0.1, moniqua)
    assert run["bits"] == [0, 1 * workers * degree * dim * bits, 2 * workers * degree * dim * bits,
                           3 * workers * degree * dim * bits]


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_moniqua_bits_grid_wraps_modulo_one(bits):
    """fixed<b,b,unsigned,wrap> holds the 2^b residues k/2^b and rounds modulo 1: nearest rounding of any y
    is round-half-even(y 2^b) / 2^b mod 1 (numpy oracle), so 1/2 − tiny and −1/2 are the same residue."""
    grid = moniqua_bits(bits)
    assert grid.bits_per_element == bits
    y = torch.tensor([0.5 - 2.0 ** -30, 0.75, -0.5, -0.3, 37.3, -5.2], dtype=torch.float64)
    expected = np.mod(np.round(y.numpy() * 2**bits) / 2**bits, 1.0)
    assert qsim.quantize(y, grid, "nearest").tolist() == expected.tolist()
    assert centered_mod(qsim.quantize(y[:1], grid, "nearest"), 1.0).item() == -0.5


def test_moniqua_messages_are_unbiased_within_theta_two_to_minus_b():
    """With stochastic rounding on the b-bit residue grid, x̂_ij − x_j has mean 0 and |.| < θ 2^-b."""
    theta, bits = 0.5, 2
    x = torch.tensor([[0.1], [0.23]], dtype=torch.float64).repeat(1, 20000)
    errors = Communication("moniqua", moniqua_bits(bits), theta=theta).estimates(x, 5)[0, 1] - x[1]
    assert errors.abs().max().item() < theta * 2.0 ** -bits
    assert abs(errors.mean().item()) < 5 * theta * 2.0 ** -bits / math.sqrt(x.shape[1])


def test_moniqua_at_two_bits_beats_naive_at_eight():
    """A consensus problem whose values are large (around 100) but close together (spread 0.05): Moniqua's
    message error scales with θ (0.5 here: 2^-2 · 0.5 at 2 bits), naive's with the range R = 128 (2^-7 · 128
    = 1 at 8 bits), so 2-bit Moniqua keeps every worker near the optimum and 8-bit naive does not."""
    workers, dim = 8, 16
    torch.manual_seed(0)
    targets = 100 + 0.05 * torch.randn(workers, dim, dtype=torch.float64)
    optimum = targets.mean(0)
    mixing = gossip_matrix("ring", workers)

    def worst_worker(communication):
        run = decentralized_sgd(lambda x, k: x - targets, optimum + 0.01, mixing, 200, 0.05, communication)
        return (run["x"] - optimum).abs().max().item()

    full = worst_worker(Communication("full"))
    moniqua = worst_worker(Communication("moniqua", moniqua_bits(2), theta=0.5))
    naive = worst_worker(Communication("naive", "fixed<8,7>", scale=128.0))
    assert full < 0.03 and moniqua < 0.1 and naive > 0.3


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="theta"):
        Communication("moniqua", moniqua_bits(2), theta=0.0)
    with pytest.raises(ValueError, match="theta"):
        Communication("moniqua", moniqua_bits(2), theta=-1.0)
    with pytest.raises(ValueError, match="scale"):
        Communication("naive", "fixed<4,3>")
    with pytest.raises(ValueError, match="graph"):
        gossip_matrix("star", 8)
    with pytest.raises(ValueError, match="torus"):
        gossip_matrix("torus", 8)
    with pytest.raises(ValueError, match="workers"):
        gossip_matrix("ring", 2)
    with pytest.raises(ValueError, match="method"):
        Communication("gossip")
    with pytest.raises(ValueError, match="bits"):
        moniqua_bits(0)
    with pytest.raises(ValueError, match="self_weight"):
        gossip_matrix("ring", 4, self_weight=1.0)
    with pytest.raises(ValueError, match="fmt"):
        Communication("moniqua", "no_such_format", theta=1.0)
    with pytest.raises(ValueError, match="consensus_step"):
        decentralized_sgd(lambda x, k: x, torch.zeros(2), gossip_matrix("ring", 3), 1, 0.1, Communication(),
                          consensus_step=0.0)


def test_consensus_step_scales_the_mixing_term():
    """One step from different starting points (zero gradients): x ← x + γ (W x − x)."""
    mixing = gossip_matrix("ring", 4)
    x0 = torch.zeros(1, dtype=torch.float64)
    start = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    run = decentralized_sgd(lambda x, k: -(start - x) / 0.5 if k == 0 else torch.zeros_like(x), x0, mixing, 1, 0.5,
                            Communication(), consensus_step=0.5)
    # The gradient puts worker i at start_i before mixing acts on x0: x = x0 + γ (W x0 − x0) + (start − x0).
    assert torch.equal(run["x"], start)
    run = decentralized_sgd(lambda x, k: -(start - x) / 0.5 if k == 0 else torch.zeros_like(x), x0, mixing, 2, 0.5,
                            Communication(), consensus_step=0.5)
    assert torch.equal(run["x"], start + 0.5 * (mixing @ start - start))
