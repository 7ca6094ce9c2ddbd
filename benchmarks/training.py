"""Time per training step: float32 vs qsim with a full recipe vs QPyTorch (qtorch) with the same formats.

The recipe is QPyTorch's 8-bit float training (qsim.nn.recipes.float8_qpytorch): weights, gradients,
activations and errors in float e5m2 (nearest), momentum and the weight accumulator in float e6m9
(stochastic), loss scale 1000. Every tensor of the step is quantized: activations at the input of
every conv, linear and norm layer, errors at their outputs, W/G/M/Acc in the optimizer. QPyTorch gets
the same placement with its Quantizer modules and OptimLP. (QPyTorch's
"nearest" rounds ties away from zero, qsim's to even: the same work, not bit-identical results.)
"qsim W/A/E/G" is the same recipe with the optimizer's state left in float32 (SGD's momentum; no
accumulator, so the e5m2 weights are updated in place): fp8 weights, activations, errors and gradients
only, the wording of the "≤ 1.3× fp32" target.

Configurations are timed round-robin, several rounds, and the median step time is reported, so that
load from other processes on the machine falls on all of them alike; ratios come from the same run.

    python benchmarks/training.py [--threads 1] [--steps 20] [--rounds 5] [--clock cpu] [--no-qtorch] [--acc]

--clock cpu times the steps in the process's CPU time instead of wall-clock time: on a machine shared
with other work, time the scheduler gives to other processes is left out (use it with one thread).

--acc adds the cost of the simulated low-precision accumulator (qsim.nn.functional) on layer-sized
GEMMs against torch's own op: chunk=1 rounds the running sum after every product, K roundings in all.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from qsim.nn import functional as qF
from qsim.nn import recipes


def _wrap(layer: nn.Module, quant) -> list[nn.Module]:
    """QPyTorch's placement of what the qsim recipe hooks: A in front of the layer, E behind it."""
    return [layer] if quant is None else [quant("forward"), layer, quant("backward")]


def cnn(quant=None) -> nn.Module:
    """A small CIFAR-sized CNN; `quant(direction)` makes a QPyTorch Quantizer for one direction."""
    return nn.Sequential(
        *_wrap(nn.Conv2d(3, 16, 3, padding=1), quant), *_wrap(nn.BatchNorm2d(16), quant),
        nn.ReLU(), nn.MaxPool2d(2),                                                           # (N, 16, 16, 16)
        *_wrap(nn.Conv2d(16, 32, 3, padding=1), quant), *_wrap(nn.BatchNorm2d(32), quant),
        nn.ReLU(), nn.MaxPool2d(2),                                                           # (N, 32, 8, 8)
        nn.Flatten(), *_wrap(nn.Linear(32 * 8 * 8, 10), quant))


def mlp(quant=None) -> nn.Module:
    return nn.Sequential(nn.Flatten(), *_wrap(nn.Linear(784, 256), quant), nn.ReLU(),
                         *_wrap(nn.Linear(256, 256), quant), nn.ReLU(), *_wrap(nn.Linear(256, 10), quant))


WORKLOADS = {"cnn": (cnn, (64, 3, 32, 32)), "mlp": (mlp, (128, 1, 28, 28))}


def fp8_only() -> recipes.Recipe:
    """float8_qpytorch without its e6m9 momentum and accumulator: W, A, E, G in e5m2, SGD's state in float32."""
    recipe = recipes.float8_qpytorch()
    return replace(recipe, name="float8_qpytorch_fp32_state",
                   optimizer={**recipe.optimizer, "momentum": None, "acc": None})


RECIPES = {"qsim": recipes.float8_qpytorch, "qsim W/A/E/G": fp8_only}


class Trainer:
    """One model, optimizer and batch; step() runs forward, backward and the optimizer step."""

    def __init__(self, workload: str, mode: str):
        build, shape = WORKLOADS[workload]
        torch.manual_seed(0)
        self.loss_scale = 1.0
        if mode == "qtorch":
            from qtorch import FloatingPoint
            from qtorch.optim import OptimLP
            from qtorch.quant import Quantizer, quantizer

            bit8, bit16 = FloatingPoint(exp=5, man=2), FloatingPoint(exp=6, man=9)
            self.model = build(lambda direction: Quantizer(bit8, None, "nearest", "nearest") if direction == "forward"
                               else Quantizer(None, bit8, "nearest", "nearest"))
            inner = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
            self.optimizer = OptimLP(inner, grad_scaling=1 / 1000,
                                     weight_quant=quantizer(bit8, forward_rounding="nearest"),
                                     grad_quant=quantizer(bit8, forward_rounding="nearest"),
                                     momentum_quant=quantizer(bit16, forward_rounding="stochastic"),
                                     acc_quant=quantizer(bit16, forward_rounding="stochastic"))
            self.loss_scale = 1000.0
        else:
            self.model = build()
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
            if mode in RECIPES:
                recipe = RECIPES[mode]()
                _, self.optimizer = recipe.apply(self.model, self.optimizer)
                self.loss_scale = recipe.loss_scale
        self.x, self.y = torch.randn(shape), torch.randint(0, 10, (shape[0],))

    def step(self) -> None:
        self.optimizer.zero_grad()
        loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        (loss * self.loss_scale).backward()
        self.optimizer.step()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def measure(modes, steps: int, rounds: int, clock=time.perf_counter) -> dict:
    """Median seconds per step of each (workload, mode), timed round-robin with `clock`."""
    trainers = {(w, m): Trainer(w, m) for w in WORKLOADS for m in modes}
    for trainer in trainers.values():  # warm up: first calls, QPyTorch's extension build, allocator
        for _ in range(3):
            trainer.step()
    samples = {key: [] for key in trainers}
    for _ in range(rounds):
        for key, trainer in trainers.items():
            start = clock()
            for _ in range(steps):
                trainer.step()
            samples[key].append((clock() - start) / steps)
    return {key: statistics.median(values) for key, values in samples.items()}


def accumulation_table(rounds: int) -> Table:
    """ms of a Linear and a Conv2d forward with an fp16 accumulator at several chunk sizes vs torch."""
    torch.manual_seed(0)
    x, w = torch.randn(256, 1024), torch.randn(512, 1024)                     # K = 1024
    xc, wc = torch.randn(8, 64, 32, 32), torch.randn(64, 64, 3, 3)            # K = 576
    cases = {"linear 256x1024 @ 1024x512": (lambda: F.linear(x, w), lambda k: qF.linear(x, w, acc="fp16", chunk=k)),
             "conv2d 8x64x32x32, 64x64x3x3": (lambda: F.conv2d(xc, wc, padding=1),
                                              lambda k: qF.conv2d(xc, wc, padding=1, acc="fp16", chunk=k))}
    chunks = (1, 16, 128)
    table = Table(title="forward ms with an fp16 accumulator (qsim.nn.functional) vs torch float32")
    for column in ("GEMM", "torch", *(f"chunk={k}" for k in chunks), *(f"ratio k={k}" for k in chunks)):
        table.add_column(column, justify="right")

    def median_ms(fn, repeats):
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append(1e3 * (time.perf_counter() - start))
        return statistics.median(samples)

    for name, (exact, simulated) in cases.items():
        base = median_ms(exact, 5 * rounds)
        times = [median_ms(lambda k=k: simulated(k), max(1, rounds // 2)) for k in chunks]
        table.add_row(name, f"{base:.2f}", *(f"{t:.1f}" for t in times), *(f"{t / base:.0f}x" for t in times))
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable on shared machines)")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds; the median is reported")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall-clock time, or the process's CPU time (less noisy under other load)")
    parser.add_argument("--no-qtorch", action="store_true", help="skip QPyTorch (pip install qtorch==0.3.0 --no-deps ninja)")
    parser.add_argument("--acc", action="store_true", help="also time the simulated low-precision accumulator")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with_qtorch = not args.no_qtorch and importlib.util.find_spec("qtorch") is not None
    if not args.no_qtorch and not with_qtorch:
        print("QPyTorch is not installed: its column is left out (pip install qtorch==0.3.0 --no-deps ninja)")
    modes = ["fp32", *RECIPES] + (["qtorch"] if with_qtorch else [])
    times = measure(modes, args.steps, args.rounds, CLOCKS[args.clock])

    table = Table(title=f"ms per training step (median of {args.rounds} rounds x {args.steps} steps, "
                        f"{args.threads} thread{'s' if args.threads > 1 else ''}, {args.clock} clock)")
    for column in ("workload", *modes, *(f"{m} / fp32" for m in RECIPES),
                   *(["qtorch / fp32", "qtorch / qsim"] if "qtorch" in modes else [])):
        table.add_column(column, justify="right")
    for workload in WORKLOADS:
        t = {m: times[workload, m] for m in modes}
        ratios = [t[m] / t["fp32"] for m in RECIPES]
        if "qtorch" in modes:
            ratios += [t["qtorch"] / t["fp32"], t["qtorch"] / t["qsim"]]
        table.add_row(workload, *(f"{1e3 * t[m]:.2f}" for m in modes), *(f"{r:.2f}x" for r in ratios))
    Console().print(table)
    if args.acc:
        Console().print(accumulation_table(args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
