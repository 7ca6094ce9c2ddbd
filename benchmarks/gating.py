"""Speed of the channel-gating accelerator model on ImageNet-sized ResNet-18 (224x224) with real masks.

The masks come from the built-in qsim.hw.resnet18 gated by qsim.nn.gate_model (untrained weights, thresholds 0:
about half the outputs on, spread everywhere, the hardest case for the vectorised tiling) on one random image;
the script times qsim.hw.gating.simulate for each schedule (median of --repeat runs) next to the dense systolic
model of the same workload, measured in the same run. Target: under 5 s per simulation.

    python benchmarks/gating.py --repeat 7 [--batch 1]
"""
import argparse
import statistics
import time

import torch

from qsim.hw import gating, resnet18, simulate, workload
from qsim.nn import gate_model


def median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = resnet18()
    gate_model(model)
    start = time.perf_counter()
    wl = workload(model, torch.randn(args.batch, 3, 224, 224))
    extract = time.perf_counter() - start
    masks = sum(layer.gating.on.size for layer in wl if layer.gating is not None)
    accelerator = gating.load()
    print(f"ResNet-18 224x224, batch {args.batch}: {masks:,} gate decisions in {sum(l.gating is not None for l in wl)}"
          f" gated layers; workload extraction (gated forward + masks) {extract:.2f} s")
    dense = median_seconds(lambda: simulate(wl, accelerator.accelerator), args.repeat)
    print(f"{'dense systolic model':24s} {dense * 1e3:8.1f} ms")
    for schedule in gating.SCHEDULES:
        seconds = median_seconds(lambda: gating.simulate(wl, accelerator, schedule), args.repeat)
        print(f"{'gating, ' + schedule:24s} {seconds * 1e3:8.1f} ms  ({seconds / dense:.2f}x the dense model)")


if __name__ == "__main__":
    main()
