"""Sweep spaces and sweep files: the schema's products, ranges, constraints and groups, and clear
errors for bad input before any job runs."""
import textwrap

import pytest

from qsim.sweep.jobs import DIGITS_SPACE
from qsim.sweep.space import Config, space_from_dict
from qsim.sweep.sweepfile import load_sweep


def labels(space):
    return sorted(tuple(sorted(c.as_dict().items())) for c in space.configs())


def test_product_of_lists_has_every_combination_once():
    space = space_from_dict({"weight": ["bf16", "fp8_e4m3"], "activation": ["bf16", "fp16", "fp8_e5m2"],
                             "error": "fp8_e5m2"})
    configs = space.configs()
    assert len(configs) == 2 * 3 and len(set(configs)) == 6
    assert all(c.get("error") == "fp8_e5m2" for c in configs)


def test_float_and_fixed_ranges_expand_inclusively():
    space = space_from_dict({"weight": {"float": {"exp": "2..5", "man": "1..7"}},
                             "activation": {"fixed": {"wl": "4..16:4", "fl": "wl-2"}}})
    weights = {c.get("weight") for c in space.configs()}
    activations = {c.get("activation") for c in space.configs()}
    assert weights == {f"float<e{e}m{m}>" for e in range(2, 6) for m in range(1, 8)}
    assert activations == {"fixed<4,2>", "fixed<8,6>", "fixed<12,10>", "fixed<16,14>"}


def test_constraint_activation_no_wider_than_weight_filters_by_bits():
    space = space_from_dict({"weight": ["fp8_e4m3", "bf16"], "activation": ["fp8_e5m2", "fp16"],
                             "constraints": ["activation <= weight"]})
    assert labels(space) == [(("activation", "fp16"), ("weight", "bf16")),
                             (("activation", "fp8_e5m2"), ("weight", "bf16")),
                             (("activation", "fp8_e5m2"), ("weight", "fp8_e4m3"))]


def test_bare_role_constraint_holds_inside_every_group():
    """fc overrides the weight with 4 bits, so an 8-bit activation violates the constraint inside fc."""
    space = space_from_dict({"groups": {"fc": ["fc*"]}, "weight": "bf16", "activation": ["fp8_e4m3", "fp4_e2m1"],
                             "fc": {"weight": "fp4_e2m1"}, "constraints": ["activation <= weight"]})
    assert [c.get("activation") for c in space.configs()] == ["fp4_e2m1"]
    config = space.configs()[0]
    assert config.get("weight", "fc") == "fp4_e2m1" and config.get("weight") == "bf16"
    assert config.group_of("fc", "Linear") == "fc" and config.group_of("conv1", "Conv2d") is None


def test_explicit_configs_are_added_without_duplicates():
    space = space_from_dict({"weight": ["bf16"], "configs": [{"weight": "bf16"}, {"weight": "fp8_e4m3"}]})
    assert labels(space) == [(("weight", "bf16"),), (("weight", "fp8_e4m3"),)]


def test_config_key_is_independent_of_insertion_order():
    assert Config.from_dict({"weight": "bf16", "activation": "fp16"}) == \
        Config.from_dict({"activation": "fp16", "weight": "bf16"})


def test_builtin_digits_space_has_between_12_and_20_configurations():
    assert 12 <= len(space_from_dict(DIGITS_SPACE).configs()) <= 20


@pytest.mark.parametrize("table, message", [
    ({"wieght": ["bf16"]}, "did you mean 'weight'"),
    ({"weight": ["fp8_e4m4"]}, "fp8_e4m3"),
    ({"weight": []}, "empty list"),
    ({}, "empty"),
    ({"weight": ["fp8_e4m3"], "activation": ["bf16"], "constraints": ["activation <= weight"]}, "empty"),
    ({"weight": {"float": {"exp": "5..2", "man": 3}}}, "empty range"),
    ({"weight": {"float": {"exp": 4}}}, "missing"),
    ({"weight": {"flaot": {"exp": 4, "man": 3}}}, "did you mean 'float'"),
    ({"weight": "bf16", "constraints": ["activation <== weight"]}, "cannot parse"),
    ({"weight": "bf16", "constraints": ["actvation <= weight"]}, "unknown role"),
    ({"weight": "bf16", "conv": {"weight": "bf16"}}, "unknown key 'conv'"),
])
def test_bad_space_raises_value_error_naming_the_problem(table, message):
    with pytest.raises(ValueError, match=message):
        space_from_dict(table)


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="space.weight"):
        space_from_dict({"weight": 8})


def write(tmp_path, text):
    path = tmp_path / "space.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_sweep_file_sets_job_params_seed_and_objectives(tmp_path):
    path = write(tmp_path, """
        [sweep]
        job = "matmul"
        seed = 7
        objectives = ["error", "activation_kib"]
        [job]
        k = 32
        [space]
        weight = ["bf16", "fp8_e4m3"]
        """)
    spec = load_sweep(path)
    assert (spec.job.name, dict(spec.job.params)["k"], spec.seed) == ("matmul", 32, 7)
    assert spec.objectives == ("error", "activation_kib") and len(spec.space.configs()) == 2


@pytest.mark.parametrize("text, message", [
    ("[space\nweight = 1", "not valid TOML"),
    ("[sweep]\njob = 'nosuchjob'\n[space]\nweight = 'bf16'", "built-in job"),
    ("[sweep]\njob = 'matmul'\n[job]\nepochs = 3\n[space]\nweight = 'bf16'", "does not take"),
    ("[sweep]\njob = 'matmul'\nsed = 1\n[space]\nweight = 'bf16'", "did you mean 'seed'"),
    ("[sweep]\njob = 'matmul'\n[space]\nerror = 'bf16'", "cannot honour"),
    ("[sweep]\njob = 'matmul'\n", "missing the \\[space\\]"),
])
def test_bad_sweep_file_fails_before_any_work(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_sweep(write(tmp_path, text))


def test_missing_sweep_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_sweep(tmp_path / "nope.toml")
