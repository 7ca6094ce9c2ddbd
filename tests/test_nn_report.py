"""Per-module error report: SQNR in closed form, propagated vs local errors, exactly the hooked modules."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import qsim
from qsim.nn import QuantSpec, quantize_model
from qsim.nn.report import sqnr_db


def test_sqnr_closed_form():
    ref = torch.ones(4)
    assert sqnr_db(ref, ref + torch.tensor([0.1, 0.0, 0.0, 0.0])) == pytest.approx(10 * math.log10(4 / 0.01))
    assert sqnr_db(ref, ref) == math.inf


def test_report_rows_local_and_propagated_errors():
    """Row per hooked module in model order; the first module's two SQNRs agree (same inputs); a later
    module's local SQNR is that of the module alone on float32 inputs, computed here by hand."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(64, 5))
    x = torch.randn(8, 1, 8, 8)
    handle = quantize_model(model, [((nn.Conv2d, nn.Linear), QuantSpec(weight="fp8_e4m3", input="fp8_e4m3"))])
    report = handle.error_report(x)
    assert list(report["module"]) == ["0", "2", "4"]
    assert report.loc[0, "sqnr_db"] == report.loc[0, "local_sqnr_db"]

    with torch.no_grad():
        h = F.relu(F.conv2d(x, model[0].weight, model[0].bias))
        ref = F.conv2d(h, model[2].weight, model[2].bias)
        alone = F.conv2d(qsim.quantize(h, "fp8_e4m3"), qsim.quantize(model[2].weight, "fp8_e4m3"), model[2].bias)
    assert report.loc[1, "local_sqnr_db"] == pytest.approx(sqnr_db(ref, alone))
    assert all(20 < v < 40 for v in report["sqnr_db"])  # 3 mantissa bits: ~6 dB per bit plus headroom
    assert model.training  # the report restores the mode it found
    handle.remove()


def test_report_on_lossless_format_is_infinite():
    model = nn.Sequential(nn.Linear(5, 3))
    handle = quantize_model(model, [(nn.Linear, QuantSpec(weight="fp32", input="fp32"))])
    assert (handle.error_report(torch.randn(2, 5))["sqnr_db"] == math.inf).all()


def test_disabled_block_computes_float32_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2))
    x = torch.randn(3, 6)
    ref = model(x)
    handle = quantize_model(model, [(nn.Linear, QuantSpec(weight="fp8_e4m3", acc="fp16"))])
    assert not torch.equal(model(x), ref)
    with handle.disabled():
        assert torch.equal(model(x), ref)
    assert not torch.equal(model(x), ref)
