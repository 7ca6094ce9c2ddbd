"""`qsim gating`: channel gating end to end. Trains a small channel-gated CNN and the same CNN without gating on
scikit-learn's digits, measures the gates on the test images, and runs those masks, and the masks of a briefly
trained gated ResNet-18 (the built-in qsim.hw.resnet18, trained on digits upsampled to 32x32, gates calibrated
and measured at 224x224), on the channel-gating accelerator under every conditional-pass schedule.

    qsim gating                                   # defaults: about 1.5 minutes on 2 busy cores
    qsim gating --epochs 20 --target 1.5 --resnet-steps 0 --accelerator my_gating.toml

Exports the steps as functions (examples/channel_gating.py calls them): load_digits_tensors, digits_cnn,
train_and_evaluate, gated_digits_run, resnet18_gated_workload, schedule_summaries; and what `qsim hw --gating`
uses: parse_gating, gate_and_calibrate, is_gating_accelerator, simulate_hw.
"""
from __future__ import annotations

import argparse
from functools import partial

PAPER = {"achieved_speedup": 2.3, "ideal_speedup": 2.8}  # Hua et al., MICRO 2019, ImageNet ResNet-18


def load_digits_tensors(size: int = 16, channels: int = 1, seed: int = 0):
    """scikit-learn digits as (x_train, y_train, x_test, y_test), images upsampled to size x size (bilinear)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.expand(-1, channels, -1, -1).contiguous()
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, test = perm[:1297], perm[1297:]
    return x[train], y[train], x[test], y[test]


def digits_cnn():
    """Four 3x3 convs on 16x16 digits; the first (the stem) stays dense, as in the paper."""
    from torch import nn

    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*block(1, 16), *block(16, 32), nn.MaxPool2d(2),    # (N, 32, 8, 8)
                         *block(32, 32), *block(32, 64), nn.MaxPool2d(2),   # (N, 64, 4, 4)
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def train_and_evaluate(model, data, epochs: int, gates=None, lr: float = 0.05, batch: int = 64, seed: int = 0,
                       progress: bool = True, desc: str = "train") -> float:
    """SGD with momentum and a cosine schedule, plus the gate loss when `gates` (a GateHandle) is given;
    returns test accuracy. Eval-mode gate statistics of the test pass are left in `gates`."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    x_train, y_train, x_test, y_test = data
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * -(-len(y_train) // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    order = torch.Generator().manual_seed(seed)
    model.train()
    with tqdm(total=steps, desc=desc, unit="step", disable=not progress, leave=False) as bar:
        for _ in range(epochs):
            perm = torch.randperm(len(y_train), generator=order)
            for start in range(0, len(y_train), batch):
                index = perm[start:start + batch]
                loss = F.cross_entropy(model(x_train[index]), y_train[index])
                if gates is not None:
                    loss = loss + gates.gate_loss()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update()
    model.eval()
    if gates is not None:
        gates.reset_stats()
    with torch.no_grad():
        return float((model(x_test).argmax(1) == y_test).float().mean())


def gated_digits_run(epochs: int = 12, target: float = 1.0, partitions: int = 4, loss_weight: float = 1e-2,
                     seed: int = 0, progress: bool = True) -> dict:
    """The digits CNN trained without and with gating (same seed); accuracy of both, the gated model, its handle
    (stats from the test images) and the workload with the test images' measured masks (first 64 images)."""
    import torch

    from qsim.hw.extract import workload
    from qsim.nn.gating import gate_model

    data = load_digits_tensors(16)
    torch.manual_seed(seed)
    dense = digits_cnn()
    dense_accuracy = train_and_evaluate(dense, data, epochs, seed=seed, progress=progress, desc="digits, dense")
    torch.manual_seed(seed)
    model = digits_cnn()
    # Thresholds start at the target; the gate loss holds them near it while the weights learn to live with it.
    gates = gate_model(model, partitions=partitions, target=target, threshold=target, loss_weight=loss_weight)
    gated_accuracy = train_and_evaluate(model, data, epochs, gates, seed=seed, progress=progress,
                                        desc="digits, gated")
    wl = workload(model, data[2][:64], name="digits CNN (gated, 64 test images)")
    return {"dense_accuracy": dense_accuracy, "gated_accuracy": gated_accuracy, "model": model, "gates": gates,
            "workload": wl}


def resnet18_gated_workload(steps: int = 20, target: float = 1.0, partitions: int = 4, loss_weight: float = 1e-2,
                            size: int = 224, seed: int = 0, progress: bool = True):
    """qsim.hw.resnet18 (10 classes) gated like the paper (stem and 1x1 shortcuts dense), trained `steps` SGD
    steps on digits upsampled to 32x32 (3 channels), its gates calibrated on four test digits upsampled to
    size x size, then measured on a fifth."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from qsim.hw.extract import workload
    from qsim.hw.models import resnet18
    from qsim.nn.gating import gate_model

    x_train, y_train, x_test, _ = load_digits_tensors(32, channels=3, seed=seed)
    torch.manual_seed(seed)
    model = resnet18(num_classes=10)
    gates = gate_model(model, partitions=partitions, target=target, threshold=target, loss_weight=loss_weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc="resnet18, gated", unit="step", disable=not progress, leave=False):
        index = torch.randint(len(y_train), (32,), generator=generator)
        loss = F.cross_entropy(model(x_train[index]), y_train[index]) + gates.gate_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    images = F.interpolate(x_test[:5], size=(size, size), mode="bilinear", align_corners=False)
    # Partial sums at size x size are not distributed as at 32x32: the gates' statistics come from four other
    # test digits at the measured size (GateHandle.calibrate), as a converted network's would.
    gates.calibrate(images[1:])
    return workload(model, images[:1], name=f"resnet18 (gated, digits-trained {steps} steps, {size}x{size})")


def schedule_summaries(wl, accelerator="channel_gating_32x32") -> dict:
    """schedule -> (Report, qsim.hw.gating.summary of it)."""
    from . import gating

    if isinstance(accelerator, str):
        accelerator = gating.load(accelerator)
    out = {}
    for schedule in gating.SCHEDULES:
        report = gating.simulate(wl, accelerator, schedule)
        out[schedule] = (report, gating.summary(report))
    return out


def summary_table(title: str, summaries: dict, paper: bool = False):
    from rich.table import Table

    table = Table(title=title)
    for header in ("schedule", "dense Mcycles", "gated Mcycles", "ideal x (MACs)", "achieved x", "achieved/ideal"):
        table.add_column(header, justify="left" if header == "schedule" else "right", overflow="fold")
    for schedule, (_, s) in summaries.items():
        table.add_row(schedule, f"{s['dense_cycles'] / 1e6:,.3f}", f"{s['cycles'] / 1e6:,.3f}",
                      f"{s['ideal_speedup']:.2f}", f"{s['achieved_speedup']:.2f}", f"{s['achieved_over_ideal']:.2f}")
    if paper:
        table.add_row("paper (MICRO'19)", "", "", f"{PAPER['ideal_speedup']:.1f}", f"{PAPER['achieved_speedup']:.1f}",
                      f"{PAPER['achieved_speedup'] / PAPER['ideal_speedup']:.2f}")
    return table


GATING_KEYS = {"target": float, "partitions": int, "grouping": str}


def parse_gating(text: str) -> dict:
    """"target=1.0,partitions=4" -> {"target": 1.0, "partitions": 4}; errors name --gating."""
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in GATING_KEYS:
            raise ValueError(f"--gating {text!r}: expected KEY=VALUE items with KEY one of {', '.join(GATING_KEYS)}")
        try:
            options[key] = GATING_KEYS[key](value)
        except ValueError:
            raise ValueError(f"--gating {text!r}: {key} must be a {GATING_KEYS[key].__name__}, got {value!r}") from None
    return options


def gate_and_calibrate(model, x, text: str):
    """`qsim hw --gating`: gate the model's convs (thresholds at the target) and calibrate the gates on x."""
    from qsim.nn.gating import gate_model

    options = parse_gating(text)
    target = options.pop("target", 1.0)
    handle = gate_model(model, target=target, threshold=target, **options)
    handle.calibrate(x)
    return handle


def is_gating_accelerator(name_or_path) -> bool:
    from . import toml_spec
    try:
        table, _ = toml_spec.resolve(name_or_path)
    except ValueError:
        return False  # load_accelerator reports the missing file
    return "gating" in table


def simulate_hw(args, build_workload, console):
    """`qsim hw` on a channel-gating accelerator: the gated Report (with --device/--node, its FPGA and ASIC
    estimates), after printing its gating table."""
    from . import gating

    if args.model.endswith(".csv") and args.gating:
        raise ValueError("--gating gates a model's convs; a topology file has no model to gate")
    from .cli import simulate_on
    accelerator = gating.load(args.accelerator, dataflow=args.dataflow, rows=args.rows, cols=args.cols,
                              dram_bytes_per_cycle=args.dram_bytes_per_cycle)
    if args.schedule:
        accelerator = accelerator.with_changes(schedule=args.schedule)
    report = simulate_on(build_workload(args), accelerator, args, partial(gating.simulate, accelerator=accelerator))
    console.print(gating.render(report))
    s = gating.summary(report)
    console.print(f"ideal speedup {s['ideal_speedup']:.2f}x (MACs), achieved {s['achieved_speedup']:.2f}x (cycles)")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=12, help="digits training epochs (default 12)")
    parser.add_argument("--target", type=float, default=1.0,
                        help="gate threshold target: higher gates more outputs off (default 1.0)")
    parser.add_argument("--partitions", type=int, default=4, help="input-channel partitions (default 4)")
    parser.add_argument("--loss-weight", type=float, default=1e-2, help="gate loss weight λ (default 1e-2)")
    parser.add_argument("--resnet-steps", type=int, default=20,
                        help="training steps of the gated ResNet-18 on 32x32 digits; 0 skips it (default 20)")
    parser.add_argument("--accelerator", default="channel_gating_32x32",
                        help="hw_models name or path of an accelerator .toml with a [gating] section")
    parser.add_argument("--schedule", choices=("lockstep", "compacted", "ideal"),
                        help="the schedule whose per-layer table is printed (default: the accelerator's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _report(args, accelerator, schedule: str, console) -> None:
    from . import gating

    run_ = gated_digits_run(args.epochs, args.target, args.partitions, args.loss_weight, args.seed,
                            progress=not args.no_progress)
    stats = run_["gates"].stats()
    console.print(f"digits CNN, {args.epochs} epochs: accuracy dense {run_['dense_accuracy']:.1%}, gated "
                  f"{run_['gated_accuracy']:.1%}; gated layers: {stats.loc['total', 'gated_off']:.0%} of outputs "
                  f"gated off, {stats.loc['total', 'ideal_speedup']:.2f}x fewer MACs (test images)")
    digits = schedule_summaries(run_["workload"], accelerator)
    console.print(gating.render(digits[schedule][0]))
    console.print(summary_table("digits CNN on the accelerator", digits))
    if args.resnet_steps:
        wl = resnet18_gated_workload(args.resnet_steps, args.target, args.partitions, args.loss_weight,
                                     seed=args.seed, progress=not args.no_progress)
        resnet = schedule_summaries(wl, accelerator)
        console.print(gating.render(resnet[schedule][0]))
        console.print(summary_table("ResNet-18 (224x224, masks of a briefly trained gated network)", resnet,
                                    paper=True))


def run(args) -> int:
    import torch
    from rich.console import Console

    from . import gating

    for name in ("epochs", "partitions", "resnet_steps"):
        value = getattr(args, name)
        if value < (1 if name != "resnet_steps" else 0):
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {value}")
    accelerator = gating.load(args.accelerator)
    schedule = args.schedule or accelerator.gating.schedule
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is several times faster than two contended ones
    try:
        _report(args, accelerator, schedule, Console())
    finally:
        torch.set_num_threads(threads)
    return 0
