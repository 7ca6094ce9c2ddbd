"""Accelerator and energy descriptions: packaged files load, bad files fail naming the field."""
import math

import pytest

import qsim.hw as hw

GOOD = """
name = "mine"
clock_mhz = 200
energy_table = "horowitz_45nm"
[array]
rows = 4
cols = 6
dataflow = "ws"
[memory]
ifmap_sram_kib = 8
filter_sram_kib = 8
ofmap_sram_kib = 8
dram_bytes_per_cycle = 4
"""


def write(tmp_path, text, name="acc.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["systolic_8x8", "systolic_32x32", "systolic_128x128", "bitfusion_like_16x16"])
def test_packaged_accelerators_load(name):
    accel = hw.load_accelerator(name)
    assert accel.energy.name == "horowitz_45nm" and accel.pes == accel.array.rows * accel.array.cols


def test_user_file_loads_with_defaults_and_overrides(tmp_path):
    accel = hw.load_accelerator(write(tmp_path, GOOD), dataflow="is", rows=16)
    assert (accel.array.rows, accel.array.cols, accel.array.dataflow) == (16, 6, "is")
    assert accel.pe == hw.PESpec() and accel.memory.double_buffered is True


@pytest.mark.parametrize("edit, message", [
    (("rows = 4", ""), "missing field array.rows"),
    (("rows = 4", "rows = -4"), "array.rows must be a positive integer"),
    (("rows = 4", "rows = 4.5"), "array.rows must be an integer"),
    (("dram_bytes_per_cycle = 4", "dram_bytes_per_cycle = 0"), "memory.dram_bytes_per_cycle must be a positive"),
    (("ifmap_sram_kib = 8", "ifmap_sram_kib = -1"), "memory.ifmap_sram_kib must be a positive"),
    (('dataflow = "ws"', 'dataflow = "rs"'), "array.dataflow must be one of"),
    (("clock_mhz = 200", "clock_mhz = 0"), "clock_mhz must be a positive"),
    (("cols = 6", "cols = 6\nbanks = 2"), "unknown field(s) array.banks"),
    (('energy_table = "horowitz_45nm"', 'energy_table = "nope"'), "no hardware description 'nope'"),
    (("[memory]", "[memory]\ndouble_buffered = 1"), "memory.double_buffered must be true or false"),
])
def test_bad_accelerator_files_name_the_field(tmp_path, edit, message):
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        hw.load_accelerator(path)
    assert str(path) in str(err.value) or "nope" in message


def test_pe_section_is_validated(tmp_path):
    path = write(tmp_path, GOOD + '[pe]\nnative_bits = 8\nscaling = "cubic"\n')
    with pytest.raises(ValueError, match="pe.scaling must be one of"):
        hw.load_accelerator(path)


def test_unknown_dataflow_and_missing_description_raise():
    with pytest.raises(ValueError, match="dataflow must be one of"):
        hw.load_accelerator("systolic_8x8", dataflow="row-stationary")
    with pytest.raises(ValueError, match="no hardware description"):
        hw.load_accelerator("no_such_array")
    with pytest.raises(ValueError, match="unknown accelerator field 'banks'"):
        hw.load_accelerator("systolic_8x8", banks=4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(C=0), "C must be a positive integer"),
    (dict(H=2, R=3), "does not fit"),
    (dict(stride=0), "stride and dilation must be >= 1"),
    (dict(groups=3), "groups=3 must divide"),
])
def test_layers_that_cannot_map_raise_naming_the_field(kwargs, message):
    args = dict(name="bad", N=1, C=4, H=8, W=8, K=4, R=3, S=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        hw.Layer.conv(**args)


def test_zero_size_gemm_and_empty_workload_raise():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        hw.Layer.gemm("g", 4, 0, 4)
    with pytest.raises(ValueError, match="no layers to map"):
        hw.Workload("empty", ())
    with pytest.raises(ValueError, match="weight_bits must be a positive number"):
        hw.Layer.gemm("g", 4, 4, 4, weight_bits=0)


def test_energy_scaling_rule_predicts_the_published_points_within_the_stated_error():
    """The file anchors on 8-bit int / 16-bit float and states how far its rule lands from the rest."""
    table = hw.load_energy_table("horowitz_45nm")
    stated = {"int_mult": 0.04, "int_add": 0.20, "float_mult": 0.19, "float_add": 0.12}  # as the file says
    assert {p.op for p in table.published} == set(stated)
    for point in table.published:
        kind, op = point.op.split("_")
        ops = table.arith(kind)
        predicted = ops.mult(point.bits, point.bits) if op == "mult" else ops.add(point.bits)
        assert abs(predicted - point.pj) / point.pj <= stated[point.op] + 1e-9, point


def test_sram_energy_passes_through_the_published_sizes_and_grows_with_capacity():
    table = hw.load_energy_table()
    for kib, pj in zip(table.sram_capacity_kib, table.sram_pj_per_64bit):
        assert table.sram_pj_per_bit(kib) * 64 == pytest.approx(pj)
    sizes = [1, 8, 16, 64, 512, 4096]
    values = [table.sram_pj_per_bit(s) for s in sizes]
    assert values == sorted(values)
    # Log-log midpoint of 32 KB (20 pJ) and 1 MB (100 pJ): sqrt(32 * 1024) KB costs sqrt(20 * 100) pJ.
    assert table.sram_pj_per_bit(math.sqrt(32 * 1024)) * 64 == pytest.approx(math.sqrt(2000))


def test_bad_energy_table_names_the_field(tmp_path):
    from importlib.resources import files
    source = (files("qsim.data.hw_models") / "horowitz_45nm.toml").read_text()
    path = write(tmp_path, source.replace("mult_pj = 0.2 ", "mult_pj = -0.2 "), "e.toml")
    with pytest.raises(ValueError, match="int_mac.mult_pj must be > 0"):
        hw.load_energy_table(path)
    path = write(tmp_path, source.replace("dram_pj_per_bit = 20.3", "dram_pj_per_bit = 20.3\nleakage = 1"), "f.toml")
    with pytest.raises(ValueError, match="unknown field.*leakage"):
        hw.load_energy_table(path)
