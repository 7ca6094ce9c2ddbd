"""Speed of qsim.overq_quantize as a ratio to a plain qsim.quantize of the same tensor to unsigned 4 bits
("fixed<4,2,unsigned>", the grid OverQ starts from), both allocating their output, measured in the same run.
The input is post-ReLU-like NCHW activations (half zeros, a heavy tail), channel axis dim=1, or a linear
layer's (N, features) with dim=-1. Timings on a shared 2-core machine are noisy: read the ratio, not the ms.

    python benchmarks/overq.py [--shape 64,256,32,32] [--dim 1] [--cascade 2] [--repeat 9] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import qsim


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up: page faults of the first output, thread start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,256,32,32")
    parser.add_argument("--dim", type=int, default=1)
    parser.add_argument("--cascade", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(shape, generator=g)) * torch.exp(0.5 * torch.randn(shape, generator=g))
    scale = 0.25
    plain = median_ms(lambda: qsim.quantize(x, "fixed<4,2,unsigned>"), args.repeat)
    print(f"shape {shape}, dim {args.dim}, {torch.get_num_threads()} threads, median of {args.repeat}")
    print(f"{'method':<40} {'ms':>8} {'ratio':>7}")
    print(f"{'qsim.quantize fixed<4,2,unsigned>':<40} {plain:8.2f} {1.0:7.2f}")
    for precision in (False, True):
        ms = median_ms(lambda: qsim.overq_quantize(x, 4, scale, cascade=args.cascade, dim=args.dim,
                                                   precision=precision), args.repeat)
        label = f"overq_quantize 4 bits, cascade {args.cascade}" + (", precision" if precision else "")
        print(f"{label:<40} {ms:8.2f} {ms / plain:7.2f}")


if __name__ == "__main__":
    main()
