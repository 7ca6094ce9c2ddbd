"""The `qsim overq` study: its pieces against brute force, and the command end to end (small)."""
import pytest
import torch

from qsim import overq_cli
from qsim.cli import main


def test_best_clip_step_is_the_least_squared_error_on_its_grid():
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(2000, generator=g)) ** 2
    step = overq_cli.best_clip_step(x, 3)
    top = float(x.max()) / 7
    errors = [float(((overq_cli.clip_quantize(x, 3, top * k / 64) - x) ** 2).sum()) for k in range(1, 65)]
    assert float(((overq_cli.clip_quantize(x, 3, step) - x) ** 2).sum()) == pytest.approx(min(errors))
    # Plain clipping: at most 7 steps, half-even rounding of x/step.
    q = overq_cli.clip_quantize(x, 3, step)
    assert torch.equal(q, torch.clamp(torch.round(x / step), 0, 7) * step)


def test_coverage_grows_with_the_cascade_on_the_trained_cnn():
    x_train, y_train, x_test, _ = overq_cli.digits()
    torch.manual_seed(0)
    model = overq_cli.cnn().eval()
    rows = overq_cli.coverage(model, x_test[:64], 3, (0, 1, 2, 4))
    assert [r["cascade"] for r in rows] == [0, 1, 2, 4]
    covered = [r["covered"] for r in rows]
    assert covered == sorted(covered) and rows[0]["outliers"] == rows[-1]["outliers"] > 0


def test_unsplit_adds_each_channels_halves_back():
    from qsim.nn import ocs
    x = torch.rand(5, 4, 3, 3)
    x[:, 1] *= 10
    layer = ocs(torch.nn.Conv2d(4, 2, 1), expand_ratio=0.5, activations=x)
    y = layer.split(x)
    assert y.shape[1] == 6 and float(y.abs().max()) < float(x.abs().max())
    torch.testing.assert_close(overq_cli.unsplit(layer.split, y), x)
    assert overq_cli.unsplit(torch.nn.ReLU(), y) is y


def test_the_command_runs_end_to_end(capsys):
    assert main(["overq", "--epochs", "1", "--no-hw", "--bits", "3"]) == 0
    out = capsys.readouterr().out
    for label in ("fp32", "W3A3 best clip", "W3A3 OCS (weights", "W3A3 OCS (activations", "W3A3 OverQ range+precision",
                  "W6A6 best clip", "coverage"):
        assert label in out


def test_the_command_rejects_bad_options(capsys):
    assert main(["overq", "--bits", "1"]) == 2
    assert capsys.readouterr().err.startswith("qsim: error: --bits 1: expected 2 to 8")
