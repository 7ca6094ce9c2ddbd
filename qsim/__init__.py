"""qsim: low-precision arithmetic simulation and hardware emulation for PyTorch.

    import qsim
    y = qsim.quantize(x, "fp8_e4m3")                                  # nearest, ties to even
    y = qsim.quantize(x, "fixed<8,4>", rounding="stochastic", seed=0)
    handle = qsim.quantize_model(model, [(torch.nn.Linear, qsim.QuantSpec(weight="mxfp8_e4m3"))])

Subpackages: formats (number formats), nn (hooks, accumulation, recipes), optim (low-precision
optimizers), sweep (precision sweeps and Pareto frontiers), hw (accelerator models).
"""
from qsim import formats
from qsim.formats import MX, BlockFloatingPoint, FixedPoint, FloatingPoint, Format, Logarithmic, Posit
from qsim.quant import quantize, quantize_
from qsim.rounding import ROUNDING_MODES
from qsim.nn import QuantSpec, Quantizer, quantize_model  # noqa: E402 - builds on quantize
from qsim.optim import HALP, LowPrecision  # noqa: E402
from qsim.overq import overq_quantize  # noqa: E402
from qsim.formats.overq import OverQ  # noqa: E402

__all__ = ["formats", "Format", "FixedPoint", "FloatingPoint", "BlockFloatingPoint", "MX", "Posit", "Logarithmic",
           "quantize", "quantize_",
           "ROUNDING_MODES", "QuantSpec", "Quantizer", "quantize_model", "LowPrecision", "HALP"]
__all__ += ["overq_quantize", "OverQ"]
__version__ = "0.1.0"
