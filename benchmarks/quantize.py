"""Throughput of qsim.quantize on a 2^24-element float32 tensor (or --dtype), as ratios to references measured
in the same run: `y.copy_(x)` for the `out=` form (the memory-bandwidth limit of an elementwise op) and a fresh
`x.clone()` for the allocating form; and against QPyTorch (qtorch) and torchao's MX emulation on the
formats they have (each is skipped when not installed).

    python benchmarks/quantize.py [--size 24] [--repeat 15] [--threads N] [--device cpu|cuda] [--formats a,b]
                                  [--dtype float32|bfloat16|float16|float64]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

import qsim

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=24, help="log2 of the number of elements")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--modes", default=",".join(qsim.ROUNDING_MODES))
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated format names")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "float64"],
                        help="the tensor's dtype (peers run on float32 only)")
    args = parser.parse_args()
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
    for column in ("format", "rounding", "out= Gelem/s", "÷ copy_", "alloc ÷ clone", "vs QPyTorch", "vs torchao"):
        table.add_column(column, justify="left" if column in ("format", "rounding") else "right")
    for name in args.formats.split(","):
        for mode in args.modes.split(","):
            seed = 0 if mode == "stochastic" else None
            # References measured right beside each row, so load that comes and goes cancels out.
            copy = median_seconds(lambda: y.copy_(x), args.repeat, sync)
            clone = median_seconds(lambda: x.clone(), args.repeat, sync)
            t_out = median_seconds(lambda: qsim.quantize(x, name, rounding=mode, seed=seed, out=y), args.repeat, sync)
            t_alloc = median_seconds(lambda: qsim.quantize(x, name, rounding=mode, seed=seed), args.repeat, sync)
            versus_qtorch = "-"
            peers = dtype == torch.float32
            if peers and qtorch_quant is not None and name in QTORCH and mode in ("nearest", "stochastic"):
                function, kwargs = QTORCH[name]
                quantizer = getattr(qtorch_quant, function)
                t_q = median_seconds(lambda: quantizer(x, rounding=mode, **kwargs), args.repeat, sync)
                versus_qtorch = f"{t_q / t_alloc:.1f}× faster"
            versus_torchao = "-"
            if peers and name in TORCHAO and mode == "nearest" and args.device == "cpu" and torchao_mx(name):
                t_ao = median_seconds(lambda: torchao_mx(name)(x), args.repeat, sync)
                versus_torchao = f"{t_ao / t_alloc:.1f}× faster"
            table.add_row(name, mode, f"{n / t_out / 1e9:.2f}", f"{copy / t_out:.2f}", f"{clone / t_alloc:.2f}",
                          versus_qtorch, versus_torchao)
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
