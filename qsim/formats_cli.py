"""`qsim formats`: every registered format with its limits, and the error each one makes on a
built-in test tensor (RMSE, max error, SQNR), so the table answers "what does this format cost me?"."""
from __future__ import annotations

import math

import torch
from rich.console import Console
from rich.table import Table

from qsim import formats
from qsim.quant import quantize
from qsim.rounding import ROUNDING_MODES



def test_tensor(size: int, seed: int) -> torch.Tensor:
    """A weight-like mix: Gaussian values plus a heavy-tailed tenth (Student-t, 3 dof) for outliers."""
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(size - size // 10, generator=generator, dtype=torch.float64)
    chi2 = torch.randn(size // 10, 3, generator=generator, dtype=torch.float64).pow(2).sum(1)
    heavy = torch.randn(size // 10, generator=generator, dtype=torch.float64) / (chi2 / 3).sqrt()
    return torch.cat([gaussian, heavy])


def error_stats(x: torch.Tensor, q: torch.Tensor) -> dict[str, float]:
    """RMSE, max |error| and SQNR in dB (signal power over error power) of q as an estimate of x."""
    err = q - x
    power = err.pow(2).mean().item()
    return {
        "rmse": math.sqrt(power),
        "max_error": err.abs().max().item(),
        "sqnr_db": math.inf if power == 0 else 10 * math.log10(x.pow(2).mean().item() / power),
    }


def add_arguments(parser) -> None:
    parser.add_argument("--rounding", default="nearest", choices=ROUNDING_MODES, help="rounding mode")
    parser.add_argument("--size", type=int, default=1 << 20, help="elements in the test tensor")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test tensor and of stochastic rounding")
    parser.add_argument("--describe", action="store_true", help="list each format's description and source instead")


def describe() -> Table:
    table = Table(title="qsim named formats")
    for column in ("name", "spec", "description", "source"):
        table.add_column(column, overflow="fold")
    for name, entry in formats.registry().items():
        table.add_row(name, entry.format.spec, entry.description, entry.source)
    return table


def run(args) -> int:
    if args.describe:
        Console().print(describe())
        return 0
    if args.size < 10:
        raise ValueError(f"--size {args.size}: expected at least 10 values")
    x = test_tensor(args.size, args.seed)
    table = Table(title=f"qsim formats: error on {args.size:,} Gaussian + heavy-tailed values ({args.rounding})")
    for column in ("name", "bits", "max", "min > 0", "RMSE", "max error", "SQNR dB"):
        table.add_column(column, justify="left" if column == "name" else "right", overflow="fold")
    for name in formats.list():
        fmt = formats.get(name)
        stats = error_stats(x, quantize(x, fmt, rounding=args.rounding, seed=args.seed))
        table.add_row(name, f"{fmt.bits_per_element:g}", f"{fmt.max:.4g}", f"{fmt.min_positive:.3g}",
                      f"{stats['rmse']:.3g}", f"{stats['max_error']:.3g}", f"{stats['sqnr_db']:.1f}")
    Console().print(table)
    return 0
