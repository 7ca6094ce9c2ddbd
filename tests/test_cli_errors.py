"""Every class of mistake on the `qsim` command line gives one `qsim: error: ...` line naming what was
wrong, exit status 2 and no traceback, before any work starts; a failure while running exits 1; Ctrl-C
exits 130 with what finished stored; --debug (or QSIM_DEBUG=1) lets the traceback through.

The table runs in-process through qsim.cli.main (one fresh process checks the real exit and stderr)."""
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qsim.cli import main
from qsim.sweep.cli import budget_count
from qsim.sweep.runner import default_executor
from qsim.sweep.store import ResultStore

# the matmul job (a product, no training) over 3 x 2 = 6 configurations
SPACE = ('[sweep]\njob = "matmul"\n[job]\nm = 8\nk = 16\nn = 8\n[space]\n'
         'weight = ["fp4_e2m1", "fp8_e4m3", "bf16"]\nactivation = ["fp8_e4m3", "bf16"]\n')

FILES = {
    "space.toml": SPACE,
    "bad_toml.toml": "x =\n",
    "unknown_key.toml": SPACE.replace('job = "matmul"', 'job = "matmul"\nfoo = 1'),
    "bad_format.toml": SPACE.replace('"bf16"', '"fp99"'),
    "bad_objective.toml": SPACE.replace('job = "matmul"', 'job = "matmul"\nobjectives = ["error", "bitops"]'),
    "brokenmod.py": "def build():\n    return 1 / 0\n",
    "interrupting.py": textwrap.dedent("""
        def job(config, seed):
            if config.get("weight") == "fp8_e5m2":
                raise KeyboardInterrupt
            return {"error": 1.0, "steps": 2.0}
        """),
    "interrupt.toml": textwrap.dedent("""
        [sweep]
        job = "interrupting:job"
        objectives = ["error", "steps"]
        [space]
        weight = ["bf16", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1"]
        """),
}

SWEEP = ["--executor", "thread", "--no-progress", "--out", "out"]

MISTAKES = [
    # sweep files and jobs
    (["sweep", "nofile.toml"], "space file: 'nofile.toml' does not exist"),
    (["sweep", "bad_toml.toml"], "is not valid TOML"),
    (["sweep", "unknown_key.toml"], "[sweep]: unknown key 'foo'"),
    (["sweep", "bad_format.toml"], "unknown or invalid format 'fp99'"),
    (["sweep", "bad_objective.toml"], "[sweep].objectives: unknown name 'bitops' (did you mean 'bit_ops'?)"),
    (["sweep", "--job", "resnet"], "job: expected a built-in job ['digits', 'matmul']"),
    (["sweep", "--job", "os:nope"], "job: cannot import 'os:nope'"),
    # sweep options
    (["sweep", "space.toml", "--executor", "mpi"], "--executor: expected 'process', 'thread', 'dask'"),
    (["sweep", "space.toml", "--workers", "0"], "--workers: expected a positive int, got 0"),
    (["sweep", "space.toml", "--workers", "two"], "argument --workers: invalid int value: 'two'"),
    (["sweep", "space.toml", "--objectives", "error,energyy"], "--objectives: unknown name 'energyy'; job 'matmul' "
                                                              "reports ['error', 'activation_kib', 'bit_ops']"),
    (["sweep", "space.toml", "--objectives", "eror,bit_ops"], "(did you mean 'error'?)"),
    (["sweep", "space.toml", "--objectives", "error"], "--objectives: expected 2 or more"),
    (["sweep", "space.toml", "--objectives", "bit_ops,error", "--budget", "3"], "--objectives: a budgeted search "
                                                                              "needs a metric followed by costs"),
    (["sweep", "space.toml", "--budget", "0"], "--budget 0: expected a whole number"),
    (["sweep", "space.toml", "--budget", "-3"], "--budget -3: expected a whole number"),
    (["sweep", "space.toml", "--budget", "2.5"], "--budget 2.5: expected a whole number"),
    (["sweep", "space.toml", "--budget", "nan"], "--budget nan: expected a whole number"),
    (["sweep", "space.toml", "--budget", "0.05"], "--budget 0.05: 1 of the 6 configurations; this search needs "
                                                 "at least 2"),
    (["sweep", "space.toml", "--budget", "7"], "--budget 7: more than the 6 configurations"),
    (["sweep", "space.toml", "--compare"], "--compare: needs --budget"),
    (["sweep", "space.toml", "--estimate", "meta"], "--estimate meta: needs --budget"),
    (["sweep", "--estimate", "meta", "--budget", "3", "--meta", "none.csv"], "--meta 'none.csv': no such file"),
    (["sweep", "--estimate", "meta", "--budget", "3", "--rank", "0"], "--rank 0: expected a positive int"),
    (["sweep", "space.toml", "--estimate", "guess"], "argument --estimate: invalid choice: 'guess'"),
    (["sweep", "space.toml", "--out", "space.toml"], "--out 'space.toml': is a file; expected a directory"),
    (["sweep", "space.toml", "--plot", "f.jpg"], "--plot 'f.jpg': expected a .png or .svg file name"),
    (["sweep", "space.toml", "--export", "r.xlsx"], "--export 'r.xlsx': expected a .csv or .parquet file name"),
    # hw: models, files, accelerators, precisions, shapes
    (["hw", "resnet19"], "MODEL_OR_TOPOLOGY 'resnet19': not a built-in model"),
    (["hw", "missing.csv"], "missing.csv"),
    (["hw", "nomod:build", "--input-shape", "1,4"], "MODEL_OR_TOPOLOGY 'nomod:build': cannot import it"),
    (["hw", "resnet18", "--accelerator", "nope"], "no hardware description 'nope'"),
    (["hw", "resnet18", "--rows", "0"], "rows must be a positive integer"),
    (["hw", "resnet18", "--dataflow", "xs"], "argument --dataflow: invalid choice: 'xs'"),
    (["hw", "resnet18", "--input-shape", "1,3,32,32", "--precision", "fp9"], "unknown format 'fp9'"),
    (["hw", "resnet18", "--input-shape", "1,3,32,32", "--precision", "layer9.*=4"],
     "precision: 'layer9.*' matches no layer; the layers are conv1, layer1.0.conv1"),
    (["hw", "resnet18", "--input-shape", "3,224,224"], "this model takes 4 dimensions, batch first"),
    (["hw", "resnet18", "--input-shape", "1,3,x,2"], "expected comma-separated positive integers"),
    (["hw", "resnet18", "--input-shape", "1,5,32,32"], "the model fails on such an input (the first dimension is "
                                                      "the batch)"),
    (["hw", "fit", "--accelerator", "multicore_16", "--device", "zcu102"], "is not an accelerator description"),
    (["hw", "resnet18", "--accelerator", "overq_ws_32x32", "--dataflow", "os"], "is weight-stationary"),
    (["hw", "resnet18", "--scalesim-compat", "--device", "zcu102"], "--scalesim-compat counts as SCALE-Sim does"),
    # the other commands
    (["formats", "--size", "3"], "--size 3: expected at least 10 values"),
    (["asgd", "digits", "--q", "2", "--iterations", "10"], "obstinate_q must be a probability in [0, 1]"),
    (["asgd", "digits", "--workers", "1,x"], "argument --workers: expected a comma-separated list of int"),
    (["gating", "--epochs", "0"], "--epochs: expected a positive integer, got 0"),
    (["overq", "--accelerator", "nope"], "no hardware description 'nope'"),
    (["overq", "--bits", "1", "--cascade", "-1"], "--bits 1: expected 2 to 8; --cascade -1: expected >= 0"),
    # the command itself
    (["swep"], "argument COMMAND: invalid choice: 'swep'"),
    ([], "the following arguments are required: COMMAND"),
    (["formats", "--all"], "unrecognized arguments: --all"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QSIM_DEBUG", raising=False)
    return tmp_path


def run_main(argv) -> int:
    """main's status; argparse's own errors leave through SystemExit, as they do from the console script."""
    try:
        return main(argv)
    except SystemExit as done:
        return done.code


@pytest.mark.parametrize("argv, says", MISTAKES, ids=[" ".join(argv) or "(nothing)" for argv, _ in MISTAKES])
def test_a_mistake_gives_one_error_line_exit_2_and_does_no_work(argv, says, workdir, capsys):
    if argv[:1] == ["sweep"]:
        argv = ["sweep", *SWEEP, *argv[1:]]
    assert run_main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("qsim: error: ")]
    assert len(lines) == 1 and says in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (workdir / "out").exists()  # checked before any work: no store, no plot


def test_a_failure_while_running_exits_1_and_names_the_exception(workdir, capsys):
    assert run_main(["hw", "brokenmod:build", "--input-shape", "1,4"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qsim: error: ZeroDivisionError: division by zero (--debug shows the traceback)")


def test_ctrl_c_exits_130_after_storing_what_finished(workdir, capsys):
    """One thread evaluates the configurations in order; the third raises KeyboardInterrupt."""
    argv = ["sweep", "interrupt.toml", "--workers", "1", *SWEEP]
    assert run_main(argv) == 130
    assert "qsim: interrupted (what finished is stored" in capsys.readouterr().err
    with ResultStore(workdir / "out" / "results.db") as store:
        stored = {r.config.get("weight"): r.status for r in store.records()}
    assert stored == {"bf16": "ok", "fp8_e4m3": "ok"}


def test_sweep_workers_leave_ctrl_c_to_the_main_process():
    """A terminal's Ctrl-C reaches every process of the group; a worker that died of it would break the
    pool while the main process stores what finished and shuts it down (tracebacks, not one line)."""
    with default_executor(1) as pool:
        assert pool.submit(signal.getsignal, signal.SIGINT).result() == signal.SIG_IGN


@pytest.mark.parametrize("how", ["--debug", "QSIM_DEBUG"])
def test_debug_lets_the_exception_through(how, workdir, monkeypatch):
    if how == "QSIM_DEBUG":
        monkeypatch.setenv("QSIM_DEBUG", "1")
    with pytest.raises(ValueError, match="not a built-in model"):
        main([*(["--debug"] if how == "--debug" else []), "hw", "resnet19"])
    with pytest.raises(KeyboardInterrupt):
        main([*(["--debug"] if how == "--debug" else []), "sweep", "interrupt.toml", "--workers", "1", *SWEEP])


def test_a_fresh_process_prints_the_error_line_and_exits_2(tmp_path):
    """`python -m qsim` as a user runs it: the real exit status and stderr."""
    done = subprocess.run([sys.executable, "-m", "qsim", "hw", "resnet19"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("qsim: error:") and "Traceback" not in done.stderr


def test_version_and_sweep_help_name_the_jobs_and_objectives(capsys):
    assert run_main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("qsim ")
    assert run_main(["sweep", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "digits: metrics error, train_loss; costs memory_kib," in text
    assert "matmul: metrics error; costs activation_kib, bit_ops; default error,bit_ops" in text


def test_no_assumptions_leaves_the_report_list_out(workdir, capsys):
    topology = str(Path(__file__).parents[1] / "examples" / "mobilenet_head.csv")
    assert run_main(["hw", topology]) == 0
    assert "Assumptions:" in capsys.readouterr().out
    assert run_main(["hw", topology, "--no-assumptions"]) == 0
    assert "Assumptions:" not in capsys.readouterr().out


def test_budget_fraction_is_the_decimal_typed():
    """0.3 * 10 is 3.0000000000000004 in binary floating point; the budget is 3, not 4."""
    assert budget_count(0.3, 10, 2) == 3 and budget_count(0.3, 12, 2) == 4 and budget_count(7.0, 12, 2) == 7


@given(thousandths=st.integers(1, 999), total=st.integers(1, 5000))
def test_budget_fraction_rounds_up_exactly(thousandths, total):
    """Oracle: integer arithmetic, ceil(k * n / 1000) = -(-k * n // 1000)."""
    assert budget_count(float(f"0.{thousandths:03d}"), total, 1) == -(-thousandths * total // 1000)


def test_every_table_column_folds_instead_of_cutting_digits():
    """rich cuts a cell to "…" at the terminal's width unless its column folds: a total would lose digits.
    Every add_column call in the package says overflow="fold"."""
    import ast

    root = Path(__file__).parents[1] / "qsim"
    cutting = [f"{path.relative_to(root.parent)}:{node.lineno}" for path in sorted(root.rglob("*.py"))
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_column"
               and not any(k.arg == "overflow" and getattr(k.value, "value", None) == "fold" for k in node.keywords)]
    assert not cutting, cutting
