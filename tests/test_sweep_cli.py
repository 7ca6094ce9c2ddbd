"""`qsim sweep`: files written, frontier printed, a rerun computes nothing, the budgeted search reports
its closeness and says what the numbers mean (mistakes on the command line: test_cli_errors.py)."""
import textwrap

import pytest

from qsim.cli import main
from qsim.sweep.store import ResultStore

SPACE = textwrap.dedent("""
    [sweep]
    job = "matmul"
    [job]
    m = 8
    k = 16
    n = 8
    [space]
    weight = { float = { exp = "3..4", man = "1..3" } }
    activation = ["fp8_e4m3", "bf16"]
    """)


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(SPACE)
    return path


def test_sweep_writes_store_plot_export_and_prints_frontier(tmp_path, space_file, capsys):
    out = tmp_path / "out"
    args = ["sweep", str(space_file), "--executor", "thread", "--out", str(out), "--no-progress",
            "--export", str(out / "results.csv")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Pareto frontier of matmul" in printed and "12 configurations: 0 already stored, 12 ok" in printed
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "★ fp32 reference" in printed  # the 13th stored run: nothing quantized
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 13
    assert main(args) == 0
    assert "12 already stored, 0 ok" in capsys.readouterr().out
    with ResultStore(out / "results.db") as store:
        assert len(store) == 13


def test_budgeted_sweep_reports_closeness_to_the_full_frontier(tmp_path, space_file, capsys):
    args = ["sweep", str(space_file), "--executor", "thread", "--out", str(tmp_path), "--no-progress",
            "--budget", "0.5", "--compare", "--plot", str(tmp_path / "f.svg")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "budgeted search:" in printed and "recall" in printed and "epsilon" in printed
    assert "precision: share of the estimate's points that are on the true frontier" in " ".join(printed.split())
    assert (tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")
