"""qsim.nn: say which tensors of an ordinary torch model are kept in which format, without rewriting it.

    from qsim.nn import QuantSpec, quantize_model
    handle = quantize_model(model, [(nn.Conv2d, QuantSpec(weight="fp8_e4m3", input="fp8_e4m3",
                                                          grad_output="fp8_e5m2"))])
    ...; handle.summary(); handle.error_report(x); handle.remove()

Exports QuantSpec, quantize_model, QuantHandle, remove_quantization, is_quantized, FlushWarning,
register_module_type, Quantizer, quantizer, quantize_fb, and the modules functional (low-precision
accumulation), report (per-module SQNR) and recipes (published training methods); ChannelGatedConv2d,
gate_model and GateHandle (channel gating, qsim.nn.gating); ocs (outlier channel splitting, qsim.nn.ocs).
"""
import importlib

from qsim.nn import functional
from qsim.nn.gating import ChannelGatedConv2d, GateHandle, gate_model
from qsim.nn.model import QuantHandle, is_quantized, quantize_model, register_module_type, remove_quantization
from qsim.nn.quantizer import FlushWarning, Quantizer, quantize_fb, quantizer
from qsim.nn.ocs import ocs
from qsim.nn.spec import QuantSpec

__all__ = ["QuantSpec", "quantize_model", "QuantHandle", "remove_quantization", "is_quantized", "FlushWarning",
           "register_module_type", "Quantizer", "quantizer", "quantize_fb", "functional", "recipes",
           "ChannelGatedConv2d", "GateHandle", "gate_model", "ocs"]


def __getattr__(name):
    # recipes builds on qsim.optim, which builds on qsim.nn.spec: imported on first use to avoid a cycle.
    if name == "recipes":
        return importlib.import_module("qsim.nn.recipes")
    raise AttributeError(f"module 'qsim.nn' has no attribute {name!r}")
