"""Per-module error report: how far each quantized module's output is from float32, in dB of SQNR.

Exports error_report and sqnr_db. Users of simulators ask for this per layer (the simulated model
drifts from float32 as depth grows; which layer is to blame?). Two views, on one batch, in eval mode:
  sqnr_db        the module's output in the fully quantized model against the float32 model: the
                 error the model really carries at that depth (propagated from earlier layers too);
  local_sqnr_db  the module alone quantized, fed the float32 model's inputs: its own contribution.
SQNR = 10 log10(sum(ref^2) / sum((out - ref)^2)); +inf when the output is exact.
"""
from __future__ import annotations

import math

import pandas as pd
import torch


def sqnr_db(reference: torch.Tensor, output: torch.Tensor) -> float:
    """10 log10(signal power / noise power) of `output` against `reference`."""
    ref, out = reference.double(), output.double()
    noise = (out - ref).pow(2).sum().item()
    signal = ref.pow(2).sum().item()
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def _first_float(obj):
    """The first floating-point tensor in a module's output (LSTM and attention return tuples)."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.is_floating_point() else None
    if isinstance(obj, (tuple, list)):
        return next((t for t in map(_first_float, obj) if t is not None), None)
    return None


def error_report(handle, *args, **kwargs) -> pd.DataFrame:
    """One row per quantized module (in model order): module, type, sqnr_db, local_sqnr_db.

    Runs the model three times on args/kwargs under torch.no_grad (float32, quantized, then each module
    alone), in eval mode, restoring the training flag after."""
    model = handle.model
    modules = dict(model.named_modules())
    names = list(handle.specs)
    captured: dict[str, dict] = {name: {} for name in names}

    def recorder(name, key):
        def hook(module, inputs, input_kwargs, output):
            captured[name][key] = output
            captured[name][f"{key}_args"] = (inputs, input_kwargs)
        return hook

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            hooks = [modules[n].register_forward_hook(recorder(n, "ref"), with_kwargs=True) for n in names]
            with handle.disabled():
                model(*args, **kwargs)
            for h in hooks:
                h.remove()
            hooks = [modules[n].register_forward_hook(recorder(n, "quant"), with_kwargs=True) for n in names]
            model(*args, **kwargs)
            for h in hooks:
                h.remove()
            rows = []
            for name in names:
                record = captured[name]
                if "ref" not in record:
                    continue  # not called in this forward (e.g. an out_proj used through its parent)
                ref, quant = _first_float(record["ref"]), _first_float(record["quant"])
                inputs, input_kwargs = record["ref_args"]
                local = _first_float(_alone(handle, modules[name], inputs, input_kwargs))
                rows.append({"module": name, "type": type(modules[name]).__name__,
                             "sqnr_db": sqnr_db(ref, quant), "local_sqnr_db": sqnr_db(ref, local)})
    finally:
        model.train(was_training)
    return pd.DataFrame(rows, columns=["module", "type", "sqnr_db", "local_sqnr_db"])


def _alone(handle, module, inputs, input_kwargs):
    """`module` quantized, every other hooked module in float32."""
    with handle.disabled(keep=module):
        return module(*inputs, **input_kwargs)
