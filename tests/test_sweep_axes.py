"""Non-format sweep axes: the product with the formats, keys that older stores keep, storage and validation."""
import hashlib
import json
import pathlib
import sqlite3

import pytest

from qsim.sweep import Config, Job, ResultStore, grid_space, load_sweep, result_key, space_from_dict
from qsim.sweep.job import config_seed
from qsim.sweep.store import Record


def metrics(config):
    return {"error": float(config.value("workers"))}


def test_axes_multiply_the_format_choices_and_name_themselves_in_labels():
    space = space_from_dict({"weight": ["bf16", "fp8_e4m3"], "axes": {"workers": [1, 4, 16], "q": 0.5}})
    configs = space.configs()
    assert len(configs) == 2 * 3
    assert {(c.get("weight"), c.value("workers"), c.value("q")) for c in configs} == \
        {(w, n, 0.5) for w in ("bf16", "fp8_e4m3") for n in (1, 4, 16)}
    assert configs[0].label() == "W=bf16 q=0.5 workers=1"
    only_axes = grid_space(dmgc=["D8M8G16C8", "D32M32G32C32"], workers=[1, 2])
    assert [c.formats for c in only_axes.configs()] == [()] * 4
    with pytest.raises(ValueError, match="has no axis 'obstinate_q'; it has \\['q', 'workers'\\]"):
        configs[0].value("obstinate_q")


def test_keys_and_seeds_of_configurations_without_axes_are_those_of_earlier_stores():
    config = Config.from_dict({"weight": "bf16"})
    job = Job("j", metrics, (("epochs", 2),))

    def digest(payload):
        return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    assert result_key(job, config, 3) == digest(["j", {"epochs": 2}, config.formats, config.groups, 3])[:32]
    assert config_seed(3, config) == int(digest([3, config.formats, config.groups])[:8], 16) & 0x7FFFFFFF
    with_axes = [Config.from_dict({"weight": "bf16"}, axes={"workers": n}) for n in (1, 2)]
    assert len({result_key(job, c, 3) for c in [config, *with_axes]}) == 3


def test_a_job_must_take_exactly_the_axes_its_configurations_give():
    configs = grid_space(workers=[1, 2]).configs()
    with pytest.raises(ValueError, match=r"takes the axes \[\], the configuration gives \['workers'\]"):
        Job("plain", metrics).check(configs)
    with pytest.raises(ValueError, match=r"takes the axes \['q', 'workers'\]"):
        Job("two", metrics, axes=frozenset({"workers", "q"})).check(configs)
    Job("one", metrics, axes=frozenset({"workers"}), keys=frozenset()).check(configs)


@pytest.mark.parametrize("axes,message", [({"workers": []}, "space.axes.workers: expected a value or a non-empty"),
                                          ({"workers": [{"a": 1}]}, "non-empty list of numbers"),
                                          ({"1x": [1]}, "axis names must be identifiers, got '1x'")])
def test_bad_axes_are_named(axes, message):
    with pytest.raises(ValueError, match=message):
        space_from_dict({"axes": axes})
    with pytest.raises(ValueError, match="grid_space: expected at least one axis"):
        grid_space()


def test_axes_are_stored_and_read_back_and_an_older_store_opens(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)  # the schema before axes: 13 columns
    old.execute("CREATE TABLE results (key TEXT PRIMARY KEY, job TEXT NOT NULL, params TEXT NOT NULL, "
                "config TEXT NOT NULL, groups TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, "
                "message TEXT NOT NULL, metrics TEXT NOT NULL, costs TEXT NOT NULL, wall_s REAL NOT NULL, "
                "versions TEXT NOT NULL, finished_at TEXT NOT NULL)")
    old.execute("INSERT INTO results VALUES ('k0', 'j', '{}', '{\"weight\": \"bf16\"}', '[]', 1, 'ok', '', "
                "'{\"error\": 1.0}', '{}', 0.1, '{}', '2026-01-01')")
    old.commit()
    old.close()
    config = Config.from_dict({}, axes={"workers": 4, "dmgc": "D8M8G16C8"})
    with ResultStore(path) as store:
        store.add(Record("k1", "j", {}, config, 2, "ok", "", {"error": 2.0}, {}, 0.1, {}, "2026-01-02"))
        records = {r.key: r for r in store.records()}
        frame = store.to_dataframe().set_index("key")
    assert records["k0"].config == Config.from_dict({"weight": "bf16"}) and records["k1"].config == config
    assert frame.loc["k1", "axis.workers"] == 4 and frame.loc["k1", "axis.dmgc"] == "D8M8G16C8"
    assert frame.loc["k1", "label"] == "dmgc=D8M8G16C8 workers=4"


def test_sweep_files_take_an_axes_table(tmp_path):
    spec = load_sweep({"sweep": {"job": "qsim.hw.asgd_sweep:make_asgd_job", "objectives": ["a", "b"]},
                       "job": {"iterations": 20, "target_loss": 0.5},
                       "space": {"axes": {"dmgc": ["D8M8G16C8"], "obstinate_q": [0.0, 0.5], "workers": 2}}})
    assert [(c.value("obstinate_q"), c.value("workers")) for c in spec.space.configs()] == [(0.0, 2), (0.5, 2)]
    with pytest.raises(ValueError, match="takes the axes"):
        load_sweep({"sweep": {"job": "qsim.hw.asgd_sweep:make_asgd_job"}, "job": {"target_loss": 0.5},
                    "space": {"axes": {"workers": [1]}}})


def test_the_example_asgd_sweep_file_is_valid():
    spec = load_sweep(pathlib.Path(__file__).resolve().parents[1] / "examples" / "asgd_sweep.toml")
    assert len(spec.space.configs()) == 4 * 3 * 3
    assert spec.objectives == ("time_to_target_ms", "energy_to_target_uj") and spec.job.name == "asgd-digits"
