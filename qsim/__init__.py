"""qsim: low-precision arithmetic simulation and hardware emulation for PyTorch.

    import qsim
    y = qsim.quantize(x, "fp8_e4m3")                          # nearest, ties to even
    y = qsim.quantize(x, "fixed<8,4>", rounding="stochastic", seed=0)
"""
from qsim import formats
from qsim.formats import FixedPoint, FloatingPoint, Format
from qsim.quant import quantize, quantize_
from qsim.rounding import ROUNDING_MODES

__all__ = ["formats", "Format", "FixedPoint", "FloatingPoint", "quantize", "quantize_", "ROUNDING_MODES"]
__version__ = "0.1.0"
