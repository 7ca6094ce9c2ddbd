"""Results at chance level are not presented as results: `health` relabels them, `qsim sweep` keeps them
off the frontier and lists them, and an untrained network on digits is at chance while a trained one is not."""
import textwrap

import pandas as pd
import pytest
import torch

from qsim.cli import main
from qsim.sweep.health import CHANCE_MARGIN, chance_limit, health
from qsim.sweep.jobs import make_digits_job, make_matmul_job, train_digits
from qsim.sweep.space import Config

DIGITS = make_digits_job()


def frame(errors, statuses=None):
    return pd.DataFrame({"error": errors, "status": statuses or ["ok"] * len(errors)})


def test_ok_rows_within_the_margin_of_chance_or_worse_are_chance():
    threshold = DIGITS.chance * (1 - CHANCE_MARGIN)  # 85.5 for ten classes
    got = health(frame([3.0, threshold - 0.01, threshold, 90.0, 97.0]), DIGITS, "error")
    assert list(got) == ["ok", "ok", "chance", "chance", "chance"]


def test_diverged_and_failed_rows_keep_their_status():
    got = health(frame([float("nan"), 90.0, 90.0], ["diverged", "error", "ok"]), DIGITS, "error")
    assert list(got) == ["diverged", "error", "chance"]


@pytest.mark.parametrize("job, metric", [(DIGITS, "train_loss"), (make_matmul_job(), "error")])
def test_nothing_is_relabelled_without_a_chance_level_for_that_metric(job, metric):
    results = pd.DataFrame({"error": [95.0], "train_loss": [95.0], "status": ["ok"]})
    assert list(health(results, job, metric)) == ["ok"]
    assert chance_limit(job, metric) is None  # and the meta estimate's frontier keeps everything too


def test_the_chance_limit_is_the_margin_below_the_jobs_chance_level():
    assert chance_limit(DIGITS, "error") == pytest.approx(90 * (1 - CHANCE_MARGIN)) == pytest.approx(85.5)


@pytest.fixture
def one_thread():
    """A network this small trains fastest on one thread, as each sweep worker runs it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_an_untrained_digits_network_is_at_chance_and_a_trained_one_is_not(one_thread):
    """Independent of the margin's choice: zero epochs leave the random network guessing (about 90 %
    error on ten balanced classes); two epochs in fp32 reach a few percent."""
    untrained = train_digits(Config(()), seed=0, epochs=0)["error"]
    trained = train_digits(Config(()), seed=0, epochs=2)["error"]
    assert 80 <= untrained <= 100 and trained < 20
    assert list(health(frame([untrained, trained]), DIGITS, "error")) == ["chance", "ok"]


JOB_MODULE = textwrap.dedent('''
    from qsim.sweep.costs import BIT_OPS, LayerProfile, ModelProfile
    from qsim.sweep.job import Job

    def two_class_error(config):
        """50 % (a coin toss) for 4-bit weights, else 10 % less per extra bit."""
        bits = {"fp4_e2m1": 4, "fp8_e4m3": 8, "bf16": 16}.get(config.get("weight"), 32)
        return {"error": 50.0 if bits == 4 else 50.0 / (bits / 4)}

    def make() -> Job:
        profile = ModelProfile((LayerProfile("fc", "Linear", 100, 10, 100),), batch_size=1)
        return Job("coin", two_class_error, profile=profile, costs=(BIT_OPS,), objectives=("error", "bit_ops"),
                   metrics=("error",), chance=50.0)
    ''')


def test_sweep_lists_chance_results_and_keeps_them_off_the_frontier(tmp_path, monkeypatch, capsys):
    """The 4-bit configuration is the cheapest, so on raw numbers it would be on the frontier."""
    (tmp_path / "coin_job.py").write_text(JOB_MODULE)
    (tmp_path / "space.toml").write_text('[sweep]\njob = "coin_job:make"\n[space]\nweight = ["fp4_e2m1", "fp8_e4m3", '
                                         '"bf16"]\n')
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "space.toml", "--executor", "thread", "--no-progress", "--out", "out"]) == 0
    printed = capsys.readouterr().out
    assert "chance: W=fp4_e2m1: error 50 is no better than chance (50)" in printed
    frontier_rows = printed[printed.index("Pareto frontier of coin (2 of 3)"):]
    assert "fp4_e2m1" not in frontier_rows and "★ fp32 reference" in frontier_rows
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 0
