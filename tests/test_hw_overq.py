"""qsim.hw.overq: OverQ PEs on the weight-stationary array against closed forms and the baselines."""
import tomllib
from importlib import resources

import pytest

from qsim.hw import Layer, Workload, WeightStationary
from qsim.hw.overq import OverQArray, compare, load_overq, pe_area_ge

LAYERS = (Layer.conv("c1", 1, 16, 14, 14, 32, 3, 3, padding=1, weight_bits=8, act_bits=8),
          Layer.gemm("fc", 4, 288, 10, weight_bits=8, act_bits=8))


def workload(act_bits):
    return Workload("toy", tuple(layer.with_bits(act_bits=act_bits) for layer in LAYERS))


def test_compute_cycles_equal_the_bits_wide_baseline_and_costs_follow_the_closed_form():
    spec, accel = load_overq()
    overq = OverQArray(accel, spec).run(workload(8)).frame
    base = WeightStationary(accel).run(workload(spec.bits)).frame
    tagged = WeightStationary(accel).run(workload(spec.bits + spec.tag_bits)).frame
    assert (overq["compute_cycles"] == base["compute_cycles"]).all()
    assert (overq["act_bits"] == spec.bits).all()
    table = accel.energy
    for name, layer in zip(overq.index, LAYERS):
        row = overq.loc[name]
        muxes = (spec.weight_mux_ways - 1) * 8 + (8 + 2 * spec.bits) * 2  # weight mux + two shift directions
        assert row["energy_mac_pj"] == pytest.approx(base.loc[name, "energy_mac_pj"]
                                                     + layer.macs * muxes * spec.cost.mux2_pj_per_bit)
        assert row["energy_register_pj"] - base.loc[name, "energy_register_pj"] == pytest.approx(
            layer.macs * spec.tag_bits * table.register_pj_per_bit)
        for column in ("energy_sram_pj", "energy_dram_pj", "dram_read_bytes", "sram_ifmap_read_bytes", "total_cycles"):
            assert row[column] == tagged.loc[name, column]
        assert row["overq_overhead_pj"] == pytest.approx(row["energy_pj"] - base.loc[name, "energy_pj"])
    assert any("OverQ" in a for a in OverQArray(accel, spec).run(workload(8)).assumptions)


def test_pe_area_on_a_worked_example():
    spec, accel = load_overq()
    c = spec.cost
    # 8x4 multiplier: 32 full adders, 32-bit accumulator: 32 more; registers 8 + 4 + 32 flops.
    plain = 64 * c.full_adder_ge + 44 * c.flop_ge
    assert pe_area_ge(accel, c, 8, 4) == pytest.approx(plain)
    extra = ((spec.weight_mux_ways - 1) * 8 + (8 + 8) * 2) * c.mux2_ge + spec.tag_bits * c.flop_ge
    assert pe_area_ge(accel, c, 8, 4, spec) == pytest.approx(plain + extra)


def test_compare_puts_overq_between_the_baselines():
    spec, accel = load_overq()
    frame = compare(workload(8), spec, accel, accuracy={"OverQ 4-bit": 0.9})
    assert list(frame.index) == ["4-bit baseline", "OverQ 4-bit", "8-bit baseline"]
    assert frame["compute_cycles"].nunique() == 1  # a native 8-bit PE: 4 and 8 bits take the same cycles
    assert frame["pe_area_overhead"].iloc[0] == 0 and 0 < frame["pe_area_overhead"].iloc[1]
    assert frame["energy_uj"].iloc[0] < frame["energy_uj"].iloc[1]
    assert frame["accuracy"].tolist()[1] == 0.9


def test_a_pe_whose_rate_depends_on_the_tag_width_is_refused():
    spec, accel = load_overq()
    bit_fusion = accel.with_changes(scaling="quadratic")  # 8x4: two MACs a cycle, 8x6: one
    with pytest.raises(ValueError, match="MAC rate depends on the activation width"):
        OverQArray(bit_fusion, spec).run(workload(8))


def test_bad_spec_values_name_the_field(tmp_path):
    path = tmp_path / "bad.toml"
    source = (resources.files("qsim.data.hw_models") / "overq_ws_32x32.toml").read_text()
    path.write_text(source.replace("tag_bits = 2", "tag_bits = 0"))
    with pytest.raises(ValueError, match="tag_bits must be >= 1"):
        load_overq(path)
    path.write_text(source.replace("activity = 1.0", "activity = 2.0"))
    with pytest.raises(ValueError, match="cost.activity"):
        load_overq(path)
    assert tomllib.loads(source)["bits"] == 4
