"""`qsim hw`: run a built-in model, a SCALE-Sim topology or your own model on an accelerator description.

    qsim hw resnet18 --accelerator systolic_32x32 --dataflow ws --precision 4,8 --plot r18.png
    qsim hw topology.csv --accelerator my_array.toml --csv layers.csv
    qsim hw mypkg.models:build_net --input-shape 1,3,64,64 --precision 'layer1.*=4,4' --precision '*=8'
    qsim hw mymodel:build_lm --input-shape 1,128 --input-dtype long --input-high 32000   # token ids
    qsim hw resnet18 --accelerator channel_gating_32x32 --gating target=1.0,partitions=4 --schedule compacted
    qsim hw resnet18 --accelerator systolic_32x32 --device zcu102 --node 7   # + FPGA resources, fmax, ASIC mm²
    qsim hw fit --device zcu102 --precision w4a4                             # the largest array that fits
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
from functools import partial
from pathlib import Path

INPUT_DTYPES = {"float32": "float32", "float64": "float64", "bfloat16": "bfloat16", "float16": "float16",
                "long": "int64", "int64": "int64", "int": "int32", "int32": "int32"}


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
    parser.add_argument("--input-dtype", default="float32", choices=sorted(INPUT_DTYPES),
                        help="dtype of the example input (default float32: standard normal values; integer "
                             "dtypes such as long for token ids: uniform in [0, --input-high))")
    parser.add_argument("--input-high", type=int, default=2,
                        help="exclusive upper bound of integer inputs (default 2, valid for any vocabulary)")
    parser.add_argument("--csv", type=Path, help="write the per-layer table to this CSV file")
    parser.add_argument("--plot", type=Path, help="write the per-layer cycles/energy plot (.png or .svg)")
    parser.add_argument("--no-assumptions", action="store_true", help="leave the report's list of assumptions out")
    parser.add_argument("--gating", metavar="KEY=VALUE[,...]",
                        help="channel-gate the model's convs (target=, partitions=, grouping=; see qsim.nn.gate_model), "
                             "gates calibrated on the input; with an accelerator that has a [gating] section")
    parser.add_argument("--schedule", choices=("lockstep", "compacted", "ideal"),
                        help="conditional-pass schedule of a channel-gating accelerator")
    parser.add_argument("--device", help="FPGA device (hw_models/devices: zcu102, pynq_z1, vu9p, u250, or a .toml): "
                                         "adds resources, fit and fmax, and runs at that fmax; MODEL 'fit' "
                                         "prints the largest array that fits")
    parser.add_argument("--speed-grade", help="the device's speed grade, e.g. -1 (default: the board's)")
    parser.add_argument("--node", type=float, metavar="NM", help="ASIC process node in nm: adds area and power")
    parser.add_argument("--scalesim-compat", nargs="?", const="user", choices=("user", "calc"),
                        help="count as SCALE-Sim v3 does (per-operand DRAM links from [memory], 1-byte words, "
                             "write-only partial outputs), in its USER (default) or CALC bandwidth mode")


def build_workload(args):
    """The Workload named by args.model (built-in, topology file or module:callable)."""
    import torch

    from .extract import workload
    from .models import BUILTIN_MODELS
    from .precision import assign_precision
    from .topology import read_topology

    precision = parse_precision(args.precision)
    if precision is not None:
        assign_precision((), precision=precision)  # format names are checked before a model is built and traced
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
        try:
            ctor, shape, name = getattr(importlib.import_module(module_name), attr), None, attr
        except (ImportError, AttributeError) as err:  # a name typed on the command line: a mistake in it
            raise ValueError(f"MODEL_OR_TOPOLOGY {args.model!r}: cannot import it: {err}") from err
    else:
        raise ValueError(f"MODEL_OR_TOPOLOGY {args.model!r}: not a built-in model "
                         f"({', '.join(BUILTIN_MODELS)}), a .csv topology, or module:callable")
    if args.input_shape:
        shape = _input_shape(args.input_shape, shape)
    if shape is None:
        raise ValueError("--input-shape is needed for a model given as module:callable")
    torch.manual_seed(0)
    dtype = getattr(torch, INPUT_DTYPES[args.input_dtype])
    if dtype.is_floating_point:
        example = torch.randn(shape, dtype=dtype)
    elif args.input_high < 1:
        raise ValueError(f"--input-high: expected a positive bound for integer inputs; got {args.input_high}")
    else:
        example = torch.randint(0, args.input_high, shape, dtype=dtype)
    model = ctor()
    if getattr(args, "gating", None):
        from .gating_cli import gate_and_calibrate
        gate_and_calibrate(model, example, args.gating)
    try:
        return workload(model, example, precision=precision, name=name)
    except RuntimeError as err:  # the model itself refused the input (shape, dtype): a mistake in what was asked
        cause = err
        while cause.__cause__ is not None:  # fx's shape propagation wraps the model's own error
            cause = cause.__cause__
        raise ValueError(f"--input-shape {','.join(map(str, shape))} ({args.input_dtype}): the model fails on such "
                         f"an input (the first dimension is the batch): {str(cause).splitlines()[0]}") from err


def _input_shape(text: str, builtin_shape) -> tuple[int, ...]:
    """--input-shape as a tuple of positive ints; a built-in model's needs as many dimensions as its default."""
    try:
        shape = tuple(int(x) for x in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ValueError(f"--input-shape {text!r}: expected comma-separated positive integers, batch first, "
                         f"e.g. 1,3,224,224")
    if builtin_shape is not None and len(shape) != len(builtin_shape):
        raise ValueError(f"--input-shape {text!r}: this model takes {len(builtin_shape)} dimensions, batch first "
                         f"(default {','.join(map(str, builtin_shape))})")
    return shape


def run(args) -> int:
    from rich.console import Console

    from . import gating_cli, overq
    from .systolic import simulate

    console = Console()
    if args.model == "fit":
        return run_fit(args)
    if args.gating or args.schedule or gating_cli.is_gating_accelerator(args.accelerator):
        if args.scalesim_compat:
            raise ValueError("--scalesim-compat: SCALE-Sim has no channel gating; use a plain systolic accelerator")
        report = gating_cli.simulate_hw(args, build_workload, console)
    else:
        accel = load_any_accelerator(args)
        overq_array = isinstance(accel, tuple)  # (OverQSpec, Accelerator)
        if args.scalesim_compat and (args.device or args.node or overq_array):
            raise ValueError("--scalesim-compat counts as SCALE-Sim does; it does not combine with --device/--node "
                             "or an OverQ accelerator")
        plain = (overq.OverQArray(accel[1], accel[0]).run if overq_array
                 else partial(simulate, accelerator=accel, scalesim_compat=args.scalesim_compat or False))
        report = simulate_on(build_workload(args), accel, args, plain)
    console.print(report.render(assumptions=not args.no_assumptions))
    if args.csv:
        console.print(f"per-layer table: {report.to_csv(args.csv)}")
    if args.plot:
        console.print(f"plot: {report.plot(args.plot)}")
    return 0


def is_overq(name_or_path) -> bool:
    """Whether `name_or_path` is an OverQ description (an OverQ section on a base accelerator's name)."""
    from . import toml_spec
    try:
        table, _ = toml_spec.resolve(name_or_path)
    except ValueError:
        return False  # load_accelerator reports the missing file
    return "cascade" in table and "array" not in table


def load_any_accelerator(args):
    """--accelerator with the command line's overrides: an Accelerator, a gating.GatedAccelerator, or
    (OverQSpec, Accelerator) for an OverQ file (weight-stationary, as OverQ runs)."""
    from . import gating, gating_cli, overq, toml_spec
    from .spec import load_accelerator
    changes = {k: v for k, v in (("dataflow", args.dataflow), ("rows", args.rows), ("cols", args.cols),
                                 ("dram_bytes_per_cycle", args.dram_bytes_per_cycle)) if v is not None}
    if gating_cli.is_gating_accelerator(args.accelerator):
        return gating.load(args.accelerator, **changes)
    if is_overq(args.accelerator):
        if changes.get("dataflow", "ws") != "ws":
            raise ValueError(f"--dataflow {args.dataflow}: an OverQ array ({args.accelerator}) is weight-stationary")
        spec, accel = overq.load_overq(args.accelerator)
        return spec, accel.with_changes(**changes)
    table, source = toml_spec.resolve(args.accelerator)
    if "array" not in table:
        runnable = [n for n in toml_spec.available() if _is_accelerator(toml_spec.resolve(n)[0])]
        raise ValueError(f"--accelerator {args.accelerator}: {source} is not an accelerator description (no "
                         f"[array] section, no [gating] or OverQ section); the packaged ones: {', '.join(runnable)}")
    return load_accelerator(args.accelerator, **changes)


def _is_accelerator(table: dict) -> bool:
    return "array" in table or "cascade" in table


def simulate_on(work, accelerator, args, plain):
    """`plain(work)`, the Report without estimates; with --device, qsim.hw.fpga.simulate instead (the same
    array model at the estimated fmax, with resources and fit); with --node, the ASIC area attached."""
    if args.device:
        from . import fpga
        from .devices import load_device
        return fpga.simulate(work, accelerator, load_device(args.device, args.speed_grade), node_nm=args.node)
    report = plain(work)
    if args.node:
        from . import area, fpga
        report = area.attach(report, work, args.node, extension=fpga.extension_kind(accelerator))
    return report


def run_fit(args) -> int:
    """`qsim hw fit --device D --precision P`: the largest square array of the accelerator's PEs on D
    (any packaged kind: plain, channel-gating or OverQ)."""
    from rich.console import Console

    from . import fpga
    from .devices import load_device

    if not args.device:
        raise ValueError("qsim hw fit needs --device (one of the hw_models/devices names or a .toml path)")
    precision = parse_precision(args.precision)
    if isinstance(precision, dict):
        raise ValueError("qsim hw fit takes one --precision value (e.g. w4a4, 8, fp8_e4m3), not GLOB=VALUE rules")
    device = load_device(args.device, args.speed_grade)
    best = fpga.largest_array(load_any_accelerator(args), device, precision)
    console = Console()
    if best is None:
        console.print(f"not even a 1x1 array of {args.accelerator}'s PE fits on {device.name}")
        return 1
    console.print(f"largest square array of {best.accelerator}'s PE on {device.name}: {best.rows}x{best.cols}")
    console.print(best.summary())
    return 0
