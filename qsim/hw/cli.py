"""`qsim hw`: run a built-in model, a SCALE-Sim topology or your own model on an accelerator description.

    qsim hw resnet18 --accelerator systolic_32x32 --dataflow ws --precision 4,8 --plot r18.png
    qsim hw topology.csv --accelerator my_array.toml --csv layers.csv
    qsim hw mypkg.models:build_net --input-shape 1,3,64,64 --precision 'layer1.*=4,4' --precision '*=8'
    qsim hw resnet18 --accelerator systolic_32x32 --device zcu102 --node 7   # + FPGA resources, fmax, ASIC mm²
    qsim hw fit --device zcu102 --precision w4a4                             # the largest array that fits
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
from pathlib import Path

HELP = "Cycles, stalls, utilisation and energy of a network on a systolic-array accelerator."


def _precision_value(text: str):
    wa = re.fullmatch(r"\s*w(\d+)a(\d+)\s*", text)
    if wa:  # "w4a8": 4-bit weights, 8-bit activations
        return float(wa.group(1)), float(wa.group(2))
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"precision {text!r}: expected BITS, W,A, a format name or two")

    def one(part):
        try:
            return float(part)
        except ValueError:
            return part  # a format name, resolved by qsim.formats
    values = [one(p) for p in parts]
    return values[0] if len(values) == 1 else tuple(values)


def parse_precision(items: list[str] | None):
    """["4,8"] -> (4, 8); ["layer1.*=4", "*=8"] -> {"layer1.*": 4, "*": 8}; None -> None."""
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return _precision_value(items[0])
    mapping = {}
    for item in items:
        pattern, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"precision {item!r}: with several values each must be GLOB=VALUE")
        mapping[pattern.strip()] = _precision_value(value)
    return mapping


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .models import BUILTIN_MODELS
    parser.add_argument("model", metavar="MODEL_OR_TOPOLOGY",
                        help=f"a built-in model ({', '.join(BUILTIN_MODELS)}), a SCALE-Sim topology .csv, "
                             "or module:callable returning an nn.Module")
    parser.add_argument("--accelerator", default="systolic_32x32",
                        help="hw_models name or path to an accelerator .toml (default: systolic_32x32)")
    parser.add_argument("--dataflow", choices=("os", "ws", "is"), help="override the accelerator's dataflow")
    parser.add_argument("--rows", type=int, help="override the array rows")
    parser.add_argument("--cols", type=int, help="override the array columns")
    parser.add_argument("--dram-bw", type=float, dest="dram_bytes_per_cycle", help="override DRAM bytes/cycle")
    parser.add_argument("--precision", action="append", metavar="[GLOB=]W[,A]",
                        help="operand bits or format names, e.g. 8, 4,8, fp8_e4m3, 'fc=8,8' (repeatable)")
    parser.add_argument("--input-shape", help="input shape for a model, e.g. 1,3,224,224 (first dim: batch)")
    parser.add_argument("--csv", type=Path, help="write the per-layer table to this CSV file")
    parser.add_argument("--plot", type=Path, help="write the per-layer cycles/energy plot (.png or .svg)")
    parser.add_argument("--device", help="FPGA device (hw_models/devices: zcu102, pynq_z1, vu9p, u250, or a .toml): "
                                         "adds resources, fit and fmax, and runs at that fmax; MODEL 'fit' "
                                         "prints the largest array that fits")
    parser.add_argument("--speed-grade", help="the device's speed grade, e.g. -1 (default: the board's)")
    parser.add_argument("--node", type=float, metavar="NM", help="ASIC process node in nm: adds area and power")


def build_workload(args):
    """The Workload named by args.model (built-in, topology file or module:callable)."""
    import torch

    from .extract import workload
    from .models import BUILTIN_MODELS
    from .precision import assign_precision
    from .topology import read_topology

    precision = parse_precision(args.precision)
    if args.model.endswith(".csv"):
        wl = read_topology(args.model)
        if precision is not None:
            wl = dataclasses.replace(wl, layers=assign_precision(wl.layers, precision=precision))
        return wl
    if args.model in BUILTIN_MODELS:
        ctor, shape = BUILTIN_MODELS[args.model]
        name = args.model
    elif ":" in args.model:
        module_name, _, attr = args.model.partition(":")
        ctor, shape, name = getattr(importlib.import_module(module_name), attr), None, attr
    else:
        raise ValueError(f"MODEL_OR_TOPOLOGY {args.model!r}: not a built-in model "
                         f"({', '.join(BUILTIN_MODELS)}), a .csv topology, or module:callable")
    if args.input_shape:
        shape = tuple(int(x) for x in args.input_shape.split(","))
    if shape is None:
        raise ValueError("--input-shape is needed for a model given as module:callable")
    torch.manual_seed(0)
    return workload(ctor(), torch.randn(shape), precision=precision, name=name)


def run(args) -> int:
    from rich.console import Console

    from .spec import load_accelerator
    from .systolic import simulate

    accel = load_accelerator(args.accelerator, dataflow=args.dataflow, rows=args.rows, cols=args.cols,
                             dram_bytes_per_cycle=args.dram_bytes_per_cycle)
    if args.model == "fit":
        return run_fit(args, accel)
    work = build_workload(args)
    if args.device:
        from . import fpga
        from .devices import load_device
        report = fpga.simulate(work, accel, load_device(args.device, args.speed_grade), node_nm=args.node)
    elif args.node:
        from . import area
        report = area.simulate(work, accel, args.node)
    else:
        report = simulate(work, accel)
    console = Console()
    console.print(report)
    if args.csv:
        console.print(f"per-layer table: {report.to_csv(args.csv)}")
    if args.plot:
        console.print(f"plot: {report.plot(args.plot)}")
    return 0


def run_fit(args, accel) -> int:
    """`qsim hw fit --device D --precision P`: the largest square array of the accelerator's PEs on D."""
    from rich.console import Console

    from . import fpga
    from .devices import load_device

    if not args.device:
        raise ValueError("qsim hw fit needs --device (one of the hw_models/devices names or a .toml path)")
    precision = parse_precision(args.precision)
    if isinstance(precision, dict):
        raise ValueError("qsim hw fit takes one --precision value (e.g. w4a4, 8, fp8_e4m3), not GLOB=VALUE rules")
    device = load_device(args.device, args.speed_grade)
    best = fpga.largest_array(accel, device, precision)
    console = Console()
    if best is None:
        console.print(f"not even a 1x1 array of {accel.name}'s PE fits on {device.name}")
        return 1
    console.print(f"largest square array of {accel.name}'s PE on {device.name}: {best.rows}x{best.cols}")
    console.print(best.summary())
    return 0
