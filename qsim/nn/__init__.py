"""qsim.nn: say which tensors of an ordinary torch model are kept in which format, without rewriting it.

    from qsim.nn import QuantSpec, quantize_model
    handle = quantize_model(model, [(nn.Conv2d, QuantSpec(weight="fp8_e4m3", input="fp8_e4m3",
                                                          grad_output="fp8_e5m2"))])
    ...; handle.summary(); handle.error_report(x); handle.remove()

Exports QuantSpec, quantize_model, QuantHandle, register_module_type, Quantizer, quantizer,
quantize_fb, and the modules functional (low-precision accumulation), report (per-module SQNR)
and recipes (published training methods).
"""
import importlib

from qsim.nn import functional
from qsim.nn.model import QuantHandle, quantize_model, register_module_type
from qsim.nn.quantizer import Quantizer, quantize_fb, quantizer
from qsim.nn.spec import QuantSpec
from qsim.nn.ocs import ocs

__all__ = ["QuantSpec", "quantize_model", "QuantHandle", "register_module_type", "Quantizer", "quantizer",
           "quantize_fb", "functional", "recipes"]
__all__ += ["ocs"]


def __getattr__(name):
    # recipes builds on qsim.optim, which builds on qsim.nn.spec: imported on first use to avoid a cycle.
    if name == "recipes":
        return importlib.import_module("qsim.nn.recipes")
    raise AttributeError(f"module 'qsim.nn' has no attribute {name!r}")
