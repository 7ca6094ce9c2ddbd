"""Throughput of qsim.quantize on a 2^24-element float32 tensor (or --dtype), as ratios to references measured
in the same run: `y.copy_(x)` for the `out=` form (the memory-bandwidth limit of an elementwise op) and a fresh
`x.clone()` for the allocating form; and against QPyTorch (qtorch) and torchao's MX emulation on the
formats they have (each is skipped when not installed). QPyTorch runs twice: as shipped, whose JIT build
of its CPU extension passes no optimisation flag (so gcc compiles it at -O0), and with those same sources
rebuilt at -O3 (the first run builds it, ~1 minute; ninja must be installed, as for QPyTorch itself).

    python benchmarks/quantize.py [--size 24] [--repeat 15] [--threads N] [--device cpu|cuda] [--formats a,b]
                                  [--dtype float32|bfloat16|float16|float64]

--sweep: the cost per element over sizes 2^--min-size ... 2^--size (every power of two), on one thread (in
the calling thread's CPU time) and on all of them (wall clock), as ratios to `y.copy_(x)` and
`torch.mul(x, c, out=y)` of the same size measured beside each row (small tensors: what layer hooks
quantize, where a call's fixed cost shows); the per-call cost on 1000 elements against torch.mul's; a
log-log plot of ns/element over size (--plot, PNG).

    python benchmarks/quantize.py --sweep [--min-size 8] [--size 24] [--formats a,b] [--modes a,b]
                                  [--plot benchmarks/quantize_sizes.png]

--per-call: only the per-call cost on 1000 elements against torch.mul's.

    python benchmarks/quantize.py --per-call [--formats a,b] [--repeat 15]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

import qsim
from qsim.rounding import rounding_code

FORMATS = ["bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "fp6_e2m3", "fp4_e2m1", "int8", "fixed8_4",
           "bfp8", "bfp8_dim0", "bfp8_32", "mxfp8_e4m3", "mxfp6_e2m3", "mxfp4", "mxint8", "nvfp4", "posit8", "posit16", "lns8"]
# QPyTorch equivalents: (function name, arguments) for the formats it can express.
QTORCH = {
    "bf16": ("float_quantize", dict(exp=8, man=7)),
    "fp16": ("float_quantize", dict(exp=5, man=10)),
    "fp8_e5m2": ("float_quantize", dict(exp=5, man=2)),
    "fp8_e4m3": ("float_quantize", dict(exp=4, man=3)),
    "int8": ("fixed_point_quantize", dict(wl=8, fl=0)),
    "fixed8_4": ("fixed_point_quantize", dict(wl=8, fl=4)),
    "bfp8": ("block_quantize", dict(wl=8, dim=-1)),
    "bfp8_dim0": ("block_quantize", dict(wl=8, dim=0)),
}
# torchao's MX emulation (to_mx, then back to float32) for the MX formats it has (their element dtypes),
# and its NVFP4 (two-level, the per-tensor scale from the tensor's maximum).
TORCHAO = {"mxfp8_e4m3": "float8_e4m3fn", "mxfp6_e2m3": "fp6_e2m3", "mxfp4": "fp4_e2m1", "nvfp4": None}


def torchao_mx(name):
    """A function quantizing with torchao's MX or NVFP4 emulation, or None where torchao is missing."""
    try:
        import torchao.prototype.mx_formats.mx_tensor as mx
        import torchao.prototype.mx_formats.nvfp4_tensor as nvfp4
    except ImportError:
        return None
    if name == "nvfp4":
        def quantize(x):
            scale = nvfp4.per_tensor_amax_to_scale(x.abs().max())
            return nvfp4.NVFP4Tensor.to_nvfp4(x, per_tensor_scale=scale).dequantize(torch.float32)

        return quantize
    elem = TORCHAO[name]
    elem = getattr(torch, elem) if hasattr(torch, elem) else getattr(mx, f"DTYPE_{elem.upper()}", torch.float4_e2m1fn_x2)

    def quantize(x):
        scale, data = mx.to_mx(x, elem, 32)
        return mx.to_dtype(data, scale, elem, 32, torch.float32)

    return quantize


def format_names(text: str) -> list[str]:
    """--formats split at its commas outside <...>, so inline specs such as fixed<8,4,wrap> stay whole."""
    return re.split(r",(?![^<]*>)", text)


@functools.cache
def qtorch_rebuilt():
    """QPyTorch's CPU extension compiled again from its own sources at -O3 (once, when a row first needs it)."""
    import qtorch.quant.quant_function as shipped
    from torch.utils.cpp_extension import load

    folder = os.path.join(os.path.dirname(shipped.__file__), "quant_cpu")
    sources = [os.path.join(folder, f) for f in ("quant_cpu.cpp", "bit_helper.cpp", "sim_helper.cpp")]
    return load(name="quant_cpu_O3", sources=sources, extra_cflags=["-O3"])


@contextlib.contextmanager
def qtorch_extension(module):
    """QPyTorch's quantizers calling `module` as their CPU extension while inside (they look it up per call)."""
    import qtorch.quant.quant_function as functions

    shipped, functions.quant_cpu = functions.quant_cpu, module
    try:
        yield
    finally:
        functions.quant_cpu = shipped


def median_seconds(fn, repeat: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


SWEEP_FORMATS = ["fp8_e4m3", "fixed8_4", "int8", "bf16", "mxfp4", "nvfp4", "bfp8", "posit8", "lns8"]
SWEEP_MODES = ["nearest", "down", "stochastic"]


def seconds_per_call(fn, n: int, repeat: int, clock=time.perf_counter) -> float:
    """The median over `repeat` samples of fn's time per call, each sample a loop of enough calls to last
    ~2^20 elements' worth (a small tensor's call is microseconds: one call alone is all timer noise)."""
    calls = max(1, (1 << 20) // n)
    fn()
    times = []
    for _ in range(repeat):
        start = clock()
        for _ in range(calls):
            fn()
        times.append((clock() - start) / calls)
    return statistics.median(times)


def sweep(args) -> None:
    """Per-element cost over sizes, one thread and all threads, with references beside each row."""
    formats, modes = args.formats, args.modes
    sizes = list(range(args.min_size, args.size + 1))
    thread_counts = sorted({1, args.threads})
    rows = []  # (threads, format, mode, log2 size, ns/element, ÷ copy_, ÷ torch.mul)
    for threads in thread_counts:
        torch.set_num_threads(threads)
        # One thread: the calling thread's CPU time, which leaves out the time a shared machine gives to
        # other processes (the kernel runs on the calling thread); several: the wall clock.
        clock = time.thread_time if threads == 1 else time.perf_counter
        for k in sizes:
            n = 1 << k
            x = torch.randn(n)
            y = torch.empty_like(x)
            for name in formats:
                for mode in modes:
                    seed = 0 if mode == "stochastic" else None
                    copy = seconds_per_call(lambda: y.copy_(x), n, args.repeat, clock)
                    mul = seconds_per_call(lambda: torch.mul(x, 0.5, out=y), n, args.repeat, clock)
                    t = seconds_per_call(lambda: qsim.quantize(x, name, rounding=mode, seed=seed, out=y), n,
                                         args.repeat, clock)
                    rows.append((threads, name, mode, k, t / n * 1e9, copy / t, mul / t))
                    rows.append((threads, "copy_", "", k, copy / n * 1e9, 1.0, mul / copy))
                    rows.append((threads, "torch.mul", "", k, mul / n * 1e9, copy / mul, 1.0))
            print(f"  {threads} thread(s), 2^{k} done", flush=True)
    console = Console(width=60 + 9 * len(sizes))
    for threads in thread_counts:
        for title, column in (("ns/element", 4), ("÷ copy_ (throughput ratio)", 5), ("÷ torch.mul", 6)):
            timing = "CPU time" if threads == 1 else "wall clock"
            table = Table(title=f"{title}, {threads} thread(s) ({timing}), float32, out=")
            table.add_column("format")
            table.add_column("rounding")
            for k in sizes:
                table.add_column(f"2^{k}", justify="right")
            for name in ["copy_", "torch.mul"] + formats:
                for mode in [""] if name in ("copy_", "torch.mul") else modes:
                    cells = []
                    for k in sizes:
                        values = [r[column] for r in rows if r[:4] == (threads, name, mode, k)]
                        cells.append(f"{statistics.median(values):.2f}")
                    table.add_row(name, mode, *cells)
            console.print(table)
    print_per_call(formats, args.repeat)
    if args.plot:
        plot(rows, thread_counts, formats, modes, args.plot)


def print_per_call(formats, repeat: int) -> None:
    """The fixed cost of a call: `quantize(x, fmt, out=y)` on 1000 elements, one thread, against
    `torch.mul(x, c, out=y)`, both in the calling thread's CPU time (on a shared machine the wall clock of a
    few-microsecond call mostly measures the other processes). The samples alternate (torch.mul, by name,
    by Format value, torch.mul, ...) and each ratio is the median of the ratios of neighbouring samples, so
    that a stretch of load slows both sides of a ratio alike."""
    torch.set_num_threads(1)
    x = torch.randn(1000)
    y = torch.empty_like(x)
    print("Per call, 1000 float32 elements, 1 thread, CPU time (µs, median; ratio to torch.mul(x, c, out=y) "
          "in the samples beside it):")
    for name in formats:
        fmt = qsim.formats.get(name)
        mul, by_name, by_value = [], [], []
        for _ in range(3 * repeat):
            mul.append(seconds_per_call(lambda: torch.mul(x, 0.5, out=y), 1000, 1, time.thread_time))
            by_name.append(seconds_per_call(lambda: qsim.quantize(x, name, out=y), 1000, 1, time.thread_time))
            by_value.append(seconds_per_call(lambda: qsim.quantize(x, fmt, out=y), 1000, 1, time.thread_time))
        # each quantize sample against the torch.mul samples either side of it (the next round's, or its own)
        after = mul[1:] + mul[-1:]
        name_ratio = statistics.median(t / min(a, b) for t, a, b in zip(by_name, mul, after))
        value_ratio = statistics.median(t / min(a, b) for t, a, b in zip(by_value, mul, after))
        print(f"  {name:10s} quantize(x, {name!r}, out=y) {statistics.median(by_name) * 1e6:5.2f} µs = "
              f"{name_ratio:.2f}× torch.mul's {statistics.median(mul) * 1e6:.2f} µs; a Format value "
              f"{statistics.median(by_value) * 1e6:5.2f} µs = {value_ratio:.2f}×")


def plot(rows, thread_counts, formats, modes, path: str) -> None:
    """ns/element over size, log-log, one panel per thread count, copy_ and torch.mul in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(thread_counts), figsize=(7 * len(thread_counts), 5.5), sharey=True, squeeze=False)
    styles = {"nearest": "-", "down": ":", "stochastic": "--"}
    for ax, threads in zip(axes[0], thread_counts):
        for name in ["copy_", "torch.mul"] + formats:
            for mode in [""] if name in ("copy_", "torch.mul") else modes:
                points = {}
                for r in rows:
                    if r[:3] == (threads, name, mode):
                        points.setdefault(r[3], []).append(r[4])
                ks = sorted(points)
                reference = name in ("copy_", "torch.mul")
                ax.plot([2**k for k in ks], [statistics.median(points[k]) for k in ks],
                        "-." if name == "torch.mul" else styles.get(mode, "-"), color="black" if reference else None,
                        linewidth=2.5 if reference else 1.2, marker="o" if name == "copy_" else None, markersize=3,
                        label=name if reference else f"{name} {mode}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("elements")
        ax.set_title(f"{threads} thread(s)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("ns per element (quantize(x, fmt, out=y), float32)")
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", action="store_true", help="ns/element over sizes instead of the one-size table")
    parser.add_argument("--per-call", action="store_true",
                        help="only the fixed cost of a call on 1000 elements against torch.mul's")
    parser.add_argument("--min-size", type=int, default=8, help="--sweep: log2 of the smallest size")
    parser.add_argument("--plot", default=None, help="--sweep: where to save the log-log plot (PNG)")
    parser.add_argument("--size", type=int, default=24, help="log2 of the number of elements")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--modes", type=lambda text: text.split(","), default=list(qsim.ROUNDING_MODES),
                        help="comma-separated rounding modes")
    parser.add_argument("--formats", type=format_names, default=FORMATS, help="comma-separated format names")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "float64"],
                        help="the tensor's dtype (peers run on float32 only)")
    args = parser.parse_args()
    for name in args.formats:
        qsim.formats.get(name)  # an unknown name fails here, with the registry's hint, before any timing
    for mode in args.modes:
        rounding_code(mode)
    if args.per_call:
        return print_per_call(SWEEP_FORMATS if args.formats == FORMATS else args.formats, args.repeat)
    if args.sweep:
        if args.formats == FORMATS:
            args.formats = SWEEP_FORMATS
        if args.modes == list(qsim.ROUNDING_MODES):
            args.modes = SWEEP_MODES
        return sweep(args)
    dtype = getattr(torch, args.dtype)
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    n = 1 << args.size
    x = torch.randn(n, device=args.device).to(dtype).reshape(1 << (args.size // 2), -1)  # 2-D, for the block formats
    y = torch.empty_like(x)

    copy = median_seconds(lambda: y.copy_(x), args.repeat, sync)
    clone = median_seconds(lambda: x.clone(), args.repeat, sync)
    print(f"copy_ {n / copy / 1e9:.2f} Gelem/s, clone {n / clone / 1e9:.2f} Gelem/s at the start; "
          "each row's ratios use references re-measured next to it", flush=True)
    try:
        import qtorch.quant as qtorch_quant
    except ImportError:
        qtorch_quant = None

    table = Table(title=f"qsim.quantize, 2^{args.size} {args.dtype} on {args.device} ({args.threads} threads)")
    for column in ("format", "rounding", "out= Gelem/s", "÷ copy_", "alloc ÷ clone", "vs QPyTorch", "vs QPyTorch -O3",
                   "vs torchao"):
        table.add_column(column, justify="left" if column in ("format", "rounding") else "right")
    for name in args.formats:
        for mode in args.modes:
            seed = 0 if mode == "stochastic" else None
            # References measured right beside each row, so load that comes and goes cancels out.
            copy = median_seconds(lambda: y.copy_(x), args.repeat, sync)
            clone = median_seconds(lambda: x.clone(), args.repeat, sync)
            t_out = median_seconds(lambda: qsim.quantize(x, name, rounding=mode, seed=seed, out=y), args.repeat, sync)
            t_alloc = median_seconds(lambda: qsim.quantize(x, name, rounding=mode, seed=seed), args.repeat, sync)
            versus_qtorch = versus_qtorch_o3 = "-"
            peers = dtype == torch.float32
            if peers and qtorch_quant is not None and name in QTORCH and mode in ("nearest", "stochastic"):
                function, kwargs = QTORCH[name]
                quantizer = getattr(qtorch_quant, function)
                t_q = median_seconds(lambda: quantizer(x, rounding=mode, **kwargs), args.repeat, sync)
                versus_qtorch = f"{t_q / t_alloc:.1f}× faster"
                if args.device == "cpu":
                    with qtorch_extension(qtorch_rebuilt()):
                        t_q3 = median_seconds(lambda: quantizer(x, rounding=mode, **kwargs), args.repeat, sync)
                    versus_qtorch_o3 = f"{t_q3 / t_alloc:.1f}× faster"
            versus_torchao = "-"
            if peers and name in TORCHAO and mode == "nearest" and args.device == "cpu" and torchao_mx(name):
                t_ao = median_seconds(lambda: torchao_mx(name)(x), args.repeat, sync)
                versus_torchao = f"{t_ao / t_alloc:.1f}× faster"
            table.add_row(name, mode, f"{n / t_out / 1e9:.2f}", f"{copy / t_out:.2f}", f"{clone / t_alloc:.2f}",
                          versus_qtorch, versus_qtorch_o3, versus_torchao)
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
