"""The FPGA device catalogue: data-sheet figures, names and aliases, and clear errors for bad files."""
import importlib.resources

import pytest

from qsim.hw.devices import available_devices, load_device

# Data-sheet figures (DS190, DS891, DS890, DS962), typed in here independently of the TOML files.
DATA_SHEET = {
    "pynq_z1": dict(luts=53_200, ffs=106_400, dsps=220, bram36=140, uram=0, dsp=("DSP48E1", 25, 18)),
    "zcu102": dict(luts=274_080, ffs=548_160, dsps=2_520, bram36=912, uram=0, dsp=("DSP48E2", 27, 18)),
    "vu9p": dict(luts=1_182_240, ffs=2_364_480, dsps=6_840, bram36=2_160, uram=960, dsp=("DSP48E2", 27, 18)),
    "u250": dict(luts=1_728_000, ffs=3_456_000, dsps=12_288, bram36=2_688, uram=1_280, dsp=("DSP48E2", 27, 18)),
}


def test_the_catalogue_holds_the_four_devices():
    assert set(DATA_SHEET) <= set(available_devices())


@pytest.mark.parametrize("name", sorted(DATA_SHEET))
def test_device_figures_match_the_data_sheets(name):
    device, expected = load_device(name), DATA_SHEET[name]
    assert (device.dsp.primitive, device.dsp.a_bits, device.dsp.b_bits) == expected["dsp"]
    assert device.capacity() == {k: v for k, v in expected.items() if k != "dsp"}
    assert device.dsp.acc_bits == 48
    # 36 Kb blocks: 32K x 1 ... 512 x 72; BRAM18 half as deep; URAM 4K x 72 where present
    assert all(d * w in (32768, 36864) for d, w in device.memory.bram36_shapes)
    assert all(d * w in (16384, 18432) for d, w in device.memory.bram18_shapes)
    assert device.memory.uram_shapes == (((4096, 72),) if device.uram else ())
    # a faster grade never has a lower FMAX
    grades = sorted(device.grades, key=lambda g: g.name)  # "-1", "-2", "-3": rising speed
    for clock in ("dsp_mhz", "bram_mhz", "bufg_mhz"):
        assert [getattr(g, clock) for g in grades] == sorted(getattr(g, clock) for g in grades)
    # the global clock buffer is at least as fast as the DSP slice it clocks at full speed, on every grade but
    # Zynq-7000's -2/-3, where DS187's BUFG FMAX (628 MHz) equals the -3 DSP48E1's
    assert all(g.bufg_mhz >= min(g.dsp_mhz, 628.0) for g in grades)


def test_aliases_and_case_find_the_same_device():
    assert load_device("XCZU9EG") == load_device("zu9eg") == load_device("zcu102")
    assert load_device("zynq7020").part.startswith("xc7z020")


def test_speed_grade_override():
    assert load_device("zcu102", speed_grade="-1").grade.dsp_mhz < load_device("zcu102").grade.dsp_mhz
    with pytest.raises(ValueError, match=r"speed_grade '-9' is not one of the grades"):
        load_device("zcu102", speed_grade="-9")


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown device 'zcu999': known devices are pynq_z1 .*u250 .*vu9p .*zcu102"):
        load_device("zcu999")


def _device_file(tmp_path, text):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


GOOD = (importlib.resources.files("qsim.data.hw_models") / "devices" / "zcu102.toml").read_text()


def test_a_user_device_file_loads(tmp_path):
    assert load_device(_device_file(tmp_path, GOOD)).dsps == 2520


def test_missing_field_is_named(tmp_path):
    text = "\n".join(line for line in GOOD.splitlines() if not line.startswith("dsps ="))
    with pytest.raises(ValueError, match=r"mine.toml: missing field dsps"):
        load_device(_device_file(tmp_path, text))


@pytest.mark.parametrize("field, message", [("b_bits = 18\n", r"missing field dsp.b_bits"),
                                            ("bufg_mhz = 667.0\n", r"missing field grades\[0\].bufg_mhz")])
def test_missing_nested_field_is_named(tmp_path, field, message):
    assert field in GOOD
    with pytest.raises(ValueError, match=message):
        load_device(_device_file(tmp_path, GOOD.replace(field, "")))


@pytest.mark.parametrize("old, new, message", [
    ("luts = 274080", "luts = 0", "luts must be a positive integer"),
    ("luts = 274080", "luts = \"many\"", "luts must be an integer"),
    ('family = "ultrascale_plus"', 'family = "stratix"', "family must be one of"),
    ("uram = 0", "uram = 4", "uram_shapes must be given"),
    ('speed_grade = "-2"', 'speed_grade = "-7"', "speed_grade '-7' is not one of the grades"),
    ("[512, 72]]", "[512, 0]]", r"bram36_shapes must hold \[depth, width\] pairs"),
])
def test_bad_values_are_named(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(ValueError, match=message):
        load_device(_device_file(tmp_path, GOOD.replace(old, new)))
