"""Stochastic rounding, checked statistically with fixed seeds: unbiased (E[q(x)] = x), P(up) equal to the
fractional distance, limited random bits giving probabilities in multiples of 2^-r, and reproducible
results whatever the thread count."""
import math

import numpy as np
import pytest
import torch

import qsim
from stochastic_checks import N, Z, check_rand_bits_between, check_unbiased_between, draws



@pytest.mark.parametrize("fmt,lo,hi", [("fixed<8,4>", 0.25, 0.3125), ("fp8_e4m3", 1.0, 1.125),
                                       ("fp8_e5m2", -2.0**-16, -2.0**-15), ("bf16", 3.0, 3.0 + 2**-6)])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.77])
def test_stochastic_rounding_is_unbiased_and_lands_on_the_neighbours(fmt, lo, hi, fraction):
    check_unbiased_between(fmt, lo, hi, fraction)


def test_variance_is_that_of_a_bernoulli_choice_between_neighbours():
    """Var[q(x)] = ulp^2 · f(1-f): stochastic rounding adds no noise beyond the choice of neighbour."""
    f = 0.3
    q = draws(1.0 + f * 0.125, "fp8_e4m3")
    expected = 0.125**2 * f * (1 - f)
    # The sample variance of N Bernoulli draws has relative standard error about sqrt(2/N) or less.
    assert abs(q.var().item() - expected) < Z * expected * math.sqrt(2 / N) * 2


@pytest.mark.parametrize("rand_bits", [1, 2, 3, 8])
def test_limited_random_bits_give_probabilities_in_multiples_of_two_to_minus_r(rand_bits):
    """With r bits the fraction is truncated to r bits: P(up) = floor(f · 2^r) / 2^r."""
    check_rand_bits_between("fixed<8,4>", 0.0, 2.0**-4, rand_bits)


def test_values_on_the_grid_never_move():
    grid = torch.from_numpy(qsim.formats.get("fp8_e4m3").values())
    assert torch.equal(qsim.quantize(grid, "fp8_e4m3", rounding="stochastic", seed=3), grid)


@pytest.mark.parametrize("name", ["fp8_e5m2", "fixed<8,4,wrap>", "posit16", "lns16", "mxfp4", "bfp8", "nvfp4"])
def test_same_seed_same_result_for_one_and_two_threads(name):
    x = torch.randn(1000, 1003, generator=torch.Generator().manual_seed(0)) * 10
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = qsim.quantize(x, name, rounding="stochastic", seed=42)
        torch.set_num_threads(2)
        two = qsim.quantize(x, name, rounding="stochastic", seed=42)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_random_bits_depend_on_element_index_not_layout():
    """A transposed (non-contiguous) view gets the bits of its row-major element order."""
    x = torch.randn(300, 200, generator=torch.Generator().manual_seed(1))
    via_view = qsim.quantize(x.t(), "bf16", rounding="stochastic", seed=5)
    via_copy = qsim.quantize(x.t().contiguous(), "bf16", rounding="stochastic", seed=5)
    assert torch.equal(via_view, via_copy)


def test_different_seeds_differ_and_manual_seed_reproduces():
    x = torch.rand(10_000)
    assert not torch.equal(draws(0.3, "fixed<8,4>", seed=1), draws(0.3, "fixed<8,4>", seed=2))
    torch.manual_seed(123)
    a = qsim.quantize(x, "fp8_e4m3", rounding="stochastic")
    torch.manual_seed(123)
    b = qsim.quantize(x, "fp8_e4m3", rounding="stochastic")
    assert torch.equal(a, b)
    generator = torch.Generator().manual_seed(9)
    c = qsim.quantize(x, "fp8_e4m3", rounding="stochastic", seed=generator)
    assert torch.equal(c, qsim.quantize(x, "fp8_e4m3", rounding="stochastic", seed=torch.Generator().manual_seed(9)))


def test_philox_matches_the_random123_known_answers():
    """Known-answer vectors of Philox4x32-10 from Random123's kat_vectors."""
    from qsim import _C

    assert _C.philox4x32_10([0, 0, 0, 0], [0, 0]) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert _C.philox4x32_10([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert _C.philox4x32_10([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0]) == [
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def test_random_words_are_uniform():
    """Over fractions spread evenly in [0, 1), P(up) in each decile equals the decile's mean fraction."""
    x = torch.linspace(0, 1, 100_001, dtype=torch.float64)[:-1] * 2.0**-4
    q = qsim.quantize(x, "fixed<8,4>", rounding="stochastic", seed=11)
    up = (q > x).double().numpy().reshape(10, -1).mean(axis=1)
    expected = (np.arange(10) + 0.5) / 10
    assert np.all(np.abs(up - expected) < 0.02)


@pytest.mark.parametrize("seed", [0x0123456789ABCDEF, 2**63 - 1])
def test_vector_generator_gives_the_scalar_philox_words(seed):
    """Element i rounds up iff word i % 4 of Philox4x32-10(counter i / 4, key seed) is below its
    fraction (scaled by 2^32), so x_i = w_i and w_i + 1 (in units of 2^-32 of a quantum) pin each
    word the kernels draw to the scalar Philox's, the one the known-answer test checks. 4099
    elements: five blocks of 768 and a tail that is not a whole vector of groups."""
    from qsim import _C

    n = 4099
    key = [seed & 0xFFFFFFFF, seed >> 32]
    words = np.array([w for g in range((n + 3) // 4) for w in _C.philox4x32_10([g, 0, 0, 0], key)][:n], dtype=np.float64)
    quantum = 2.0**-4  # fixed<8,4>
    for offset, rounds_up in ((0, False), (1, True)):
        x = torch.from_numpy((words + offset) * 2.0**-32 * quantum)
        q = qsim.quantize(x, "fixed<8,4>", rounding="stochastic", seed=seed).numpy()
        expected = np.where(words + offset > words, quantum, 0.0) if rounds_up else np.zeros(n)
        assert np.array_equal(q, expected)
