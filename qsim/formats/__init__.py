"""Number formats as small frozen values, and the registry of named formats.

    qsim.formats.get("fp8_e4m3")        # a registered name (formats/*.toml)
    qsim.formats.get("fixed<8,4>")      # an inline spec
    qsim.formats.list()                 # every registered name
"""
from qsim.formats.base import Format
from qsim.formats.block import MX, BlockFloatingPoint
from qsim.formats.elementwise import FixedPoint, FloatingPoint, Grid, GridFormat
from qsim.formats.logarithmic import Logarithmic
from qsim.formats.posit import Posit
from qsim.formats.registry import Entry, get, list, parse, registry  # noqa: A004 - the registry's verb

__all__ = ["MX", "BlockFloatingPoint", "Entry", "FixedPoint", "FloatingPoint", "Format", "Grid", "GridFormat", "Logarithmic", "Posit", "get", "list", "parse",
           "registry"]
