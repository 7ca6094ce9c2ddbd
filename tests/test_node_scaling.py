"""qsim.hw.node_scaling against the closed-form values of Stillmaker and Baas (2017), typed here from the paper."""
import math

import pytest

from qsim.hw.node_scaling import load_node_scaling

SCALING = load_node_scaling()


@pytest.mark.parametrize("from_nm, to_nm, factor", [
    (45, 7, 0.059), (45, 32, 0.46), (45, 16, 0.19), (45, 180, 19), (7, 45, 17), (130, 65, 0.23),
    (65, 65, 1.0), (180, 7, 0.0032),
])
def test_area_factor_is_the_papers_table(from_nm, to_nm, factor):
    assert SCALING.area_factor(from_nm, to_nm) == pytest.approx(factor)


def test_area_table_is_its_own_inverse_within_its_two_significant_figures():
    for i, row in enumerate(SCALING.area):
        for j, factor in enumerate(row):
            assert factor * SCALING.area[j][i] == pytest.approx(1, rel=0.1), (SCALING.nodes_nm[i], SCALING.nodes_nm[j])


def test_area_between_nodes_is_log_log_interpolated_and_monotonic():
    # 28 nm between 32 (0.46) and 20 (0.21): log-linear in log(node)
    t = math.log(32 / 28) / math.log(32 / 20)
    assert SCALING.area_factor(45, 28) == pytest.approx(0.46 ** (1 - t) * 0.21 ** t)
    factors = [SCALING.area_factor(45, n) for n in range(180, 6, -1)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_delay_and_energy_are_the_papers_polynomials_at_nominal_supply():
    # 45 nm HP at 1.0 V and 7 nm at 0.7 V: delay -501.6 + 1567 - 1619 + 566.1 = 12.5, and
    # -28.58*0.343 + 76.6*0.49 - 70.26*0.7 + 24.69; energy 1.018 - 0.3107 + 0.1539 and
    # 0.1776*0.49 - 0.09097*0.7 + 0.02447.
    d45, d7 = -501.6 + 1567 - 1619 + 566.1, -28.58 * 0.7 ** 3 + 76.6 * 0.7 ** 2 - 70.26 * 0.7 + 24.69
    e45, e7 = 1.018 - 0.3107 + 0.1539, 0.1776 * 0.7 ** 2 - 0.09097 * 0.7 + 0.02447
    assert SCALING.delay_factor(45, 7) == pytest.approx(d7 / d45)
    assert SCALING.energy_factor(45, 7) == pytest.approx(e7 / e45)
    # Horowitz's 45 nm table is at 0.9 V
    e45_09 = 1.018 * 0.81 - 0.3107 * 0.9 + 0.1539
    assert SCALING.energy_factor(45, 7, from_vdd=0.9) == pytest.approx(e7 / e45_09)
    assert SCALING.power_factor(45, 45) == 1.0


def test_nominal_supply_is_interpolated_log_log_between_nodes():
    t = math.log(14 / 12) / math.log(14 / 10)  # 12 nm between 14 (0.8 V) and 10 nm (0.75 V)
    assert SCALING.nominal_vdd(12) == pytest.approx(0.8 ** (1 - t) * 0.75 ** t)
    assert (SCALING.nominal_vdd(7), SCALING.nominal_vdd(45)) == (0.7, 1.0)


@pytest.mark.parametrize("call, message", [
    (lambda: SCALING.area_factor(45, 5), "node_nm must be a process node in nm between 7 and 180"),
    (lambda: SCALING.area_factor(45, 0), "between 7 and 180"),
    (lambda: SCALING.area_factor(45, "7nm"), "between 7 and 180"),
    (lambda: SCALING.delay_factor(45, 7, to_vdd=5.0), "outside the range the 7 nm delay fit covers"),
    (lambda: SCALING.energy_factor(45, 7, from_vdd=0), "vdd must be a supply voltage"),
])
def test_bad_nodes_and_voltages_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_malformed_table_is_named(tmp_path):
    bad = tmp_path / "scaling.toml"
    bad.write_text('name = "x"\nsource = "y"\nnodes_nm = [45, 7]\narea = [[1, 0.059]]\nfits = []\n')
    with pytest.raises(ValueError, match="area must be a 2 x 2 table"):
        load_node_scaling(str(bad))
