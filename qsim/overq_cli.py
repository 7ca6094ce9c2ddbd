"""`qsim overq`: post-training quantization of a small CNN trained on scikit-learn's digits, with the
outliers of its post-ReLU activations clipped, split (OCS) or overwritten (OverQ), and OverQ's hardware
cost beside the bits- and 2·bits-wide baselines (qsim.hw.overq). examples/overq.py runs the same study.

Configurations (weights per-tensor, power-of-two scaled, rounded to nearest; activations unsigned):
  fp32                    no quantization;
  W4A4 best clip          4-bit weights; 4-bit activations clipped at the step of least squared error;
  W4A4 OCS (weights)      the same on a copy whose weights are channel-split (qsim.nn.ocs);
  W4A4 OCS (activations)  the layers after the first split their input channels instead (qsim.nn.ocs(...,
                          activations=...)), and the split inputs are clipped at their best step; the
                          activation error adds each channel's halves back;
  W4A4 OverQ range        4-bit activations with range overwrite (OverQ format, step calibrated "mse");
  W4A4 OverQ range+prec.  ... and precision overwrite;
  W8A8 best clip          8-bit weights and activations.
"""
from __future__ import annotations

import math

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from qsim.formats.overq import OverQ
from qsim.nn import QuantSpec, quantize_model
from qsim.nn.ocs import ChannelSplit, ocs
from qsim.nn.overq import calibrate
from qsim.overq import MSE_CANDIDATES, overq_quantize
from qsim.quant import quantize

_WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


def digits():
    """scikit-learn's 1797 8x8 digits in [0, 1] as (N, 1, 8, 8), split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.long)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return x_train, y_train, x_test, y_test


def cnn() -> nn.Sequential:
    """Three 3x3 convolutions and two linear layers; every ReLU output is an activation OverQ sees."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),                        # (N, 16, 8, 8)
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # (N, 32, 4, 4)
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),         # (N, 512)
        nn.Linear(512, 64), nn.ReLU(),                                    # (N, 64)
        nn.Linear(64, 10))


def train(x, y, epochs: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def clip_quantize(x: torch.Tensor, bits: int, step: float) -> torch.Tensor:
    """Unsigned `bits`-bit rounding (half to even) with step `step`, clipped at (2^bits - 1)·step."""
    return quantize(x / step, f"fixed<{bits},0,unsigned>") * step


def best_clip_step(x: torch.Tensor, bits: int) -> float:
    """Of the steps max·k/(64·(2^bits - 1)), k = 1..64 (the grid OverQ's "mse" strategy searches), the
    one whose clipped rounding of x has the least squared error."""
    top = float(x.max()) / (2**bits - 1)
    if top == 0:
        return 1.0
    steps = [top * k / MSE_CANDIDATES for k in range(1, MSE_CANDIDATES + 1)]
    return min(steps, key=lambda s: float((clip_quantize(x, bits, s) - x).square_().sum(dtype=torch.float64)))


def unsplit(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x as the original channels: a ChannelSplit's output with each channel's halves added back."""
    if not isinstance(module, ChannelSplit):
        return x
    shape = list(x.shape)
    shape[module.dim] = int(module.source.max()) + 1
    return x.new_zeros(shape).index_add_(module.dim, module.source, x)


class ActivationProbe:
    """Records, at every module of `kind` (the quantized activations: ReLU outputs, or the inputs split
    layers multiply), the float activation (before any quantizer hook) and what the model then used
    (after it), to measure the activation error of a configuration."""

    def __init__(self, model: nn.Module, kind: type = nn.ReLU):
        self.pairs: dict[str, list] = {}
        self.hooks = []
        self.kind = kind
        for name, module in model.named_modules():
            if isinstance(module, kind):
                self.hooks.append(module.register_forward_hook(self._before(name), prepend=True))

    def _before(self, name):
        def hook(module, args, output):
            self.pairs[name] = [unsplit(module, output.detach()), None]
            return None
        return hook

    def attach_after(self, model: nn.Module) -> None:
        """Registered after the quantizer's hooks, so it sees the activation they produced."""
        for name, module in model.named_modules():
            if isinstance(module, self.kind):
                self.hooks.append(module.register_forward_hook(
                    lambda m, a, out, name=name: self.pairs[name].__setitem__(1, unsplit(m, out.detach()))))

    def mse(self) -> float:
        """Mean over the probed modules of the mean squared activation error."""
        errors = [float(((after - before) ** 2).mean()) for before, after in self.pairs.values()]
        return sum(errors) / len(errors)

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def _clip_hooks(model: nn.Module, x_calibration: torch.Tensor, bits: int, kind: type = nn.ReLU) -> list:
    """Forward hooks that clip every output of a module of `kind` at its best step, calibrated on x_calibration."""
    relus = [(name, m) for name, m in model.named_modules() if isinstance(m, kind)]
    seen = {}
    hooks = [m.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, out.detach()))
             for name, m in relus]
    with torch.no_grad():
        model(x_calibration)
    for hook in hooks:
        hook.remove()
    steps = {name: best_clip_step(seen[name], bits) for name, _ in relus}
    return [m.register_forward_hook(lambda m, a, out, name=name: clip_quantize(out, bits, steps[name]))
            for name, m in relus]


def evaluate(model, x_calibration, x_test, y_test, weight_bits: int, act_bits: int, overq: OverQ | None,
             kind: type = nn.ReLU):
    """(accuracy, activation MSE) of one configuration, its activations the outputs of the modules of
    `kind`; the model is left as it was."""
    weights = QuantSpec(weight=f"fixed<{weight_bits},0>", scaling="tensor")  # per-tensor power-of-two scale
    rules = [(_WEIGHT_LAYERS, weights)]
    probe = ActivationProbe(model, kind)
    extra = []
    if overq is not None:
        rules = calibrate(model, rules + [(nn.ReLU, QuantSpec(output=overq))], x_calibration)
    handle = quantize_model(model, rules)
    try:
        if overq is None:
            extra = _clip_hooks(model, x_calibration, act_bits, kind)
        probe.attach_after(model)
        result = accuracy(model, x_test, y_test), probe.mse()
    finally:
        for hook in extra:
            hook.remove()
        probe.remove()
        handle.remove()
    return result


def coverage(model, x, bits: int, cascades, step_strategy: str = "mse") -> list[dict]:
    """Outliers covered by range overwrite, over every ReLU output of model(x), as the cascade grows; the
    steps are calibrated once (at cascade 0) so only the cascade changes."""
    rules = calibrate(model, [(nn.ReLU, QuantSpec(output=OverQ(bits, 0, step_strategy, precision=False)))], x)
    steps = {name: spec.output.scale for name, spec in rules[1:]}
    seen = {}
    modules = dict(model.named_modules())
    hooks = [modules[name].register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, out.detach()))
             for name in steps]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    rows = []
    for cascade in cascades:
        outliers = covered = zeros = elements = 0
        for name, step in steps.items():
            _, info = overq_quantize(seen[name], bits, step, cascade=cascade, dim=1, precision=False)
            outliers, covered = outliers + info.outliers, covered + info.covered
            zeros, elements = zeros + info.zero_slots, elements + seen[name].numel()
        rows.append({"cascade": cascade, "outliers": outliers, "covered": covered,
                     "coverage": covered / outliers if outliers else math.nan, "zero_fraction": zeros / elements})
    return rows


def study(epochs: int = 15, seed: int = 0, bits: int = 4, cascade: int = 2, ocs_ratio: float = 0.1) -> dict:
    """Everything the command prints, as data."""
    x_train, y_train, x_test, y_test = digits()
    model = train(x_train, y_train, epochs, seed)
    x_cal = x_train[:256]
    results = {"fp32": (accuracy(model, x_test, y_test), 0.0)}
    split = ocs(model, expand_ratio=ocs_ratio)
    # Activation OCS splits what the ReLUs produce: the input of every layer after the first (the image
    # entering the first is not quantized in any row), with the outliers found on the calibration images.
    head = model[:2]
    with torch.no_grad():
        act_split = nn.Sequential(*head, *ocs(model[2:], expand_ratio=ocs_ratio, activations=head(x_cal)))
    configs = [
        (f"W{bits}A{bits} best clip", model, bits, bits, None, nn.ReLU),
        (f"W{bits}A{bits} OCS (weights, +{ocs_ratio:.0%})", split, bits, bits, None, nn.ReLU),
        (f"W{bits}A{bits} OCS (activations, +{ocs_ratio:.0%})", act_split, bits, bits, None, ChannelSplit),
        (f"W{bits}A{bits} OverQ range", model, bits, bits, OverQ(bits, cascade, "mse", precision=False), nn.ReLU),
        (f"W{bits}A{bits} OverQ range+precision", model, bits, bits, OverQ(bits, cascade, "mse", precision=True),
         nn.ReLU),
        (f"W{2 * bits}A{2 * bits} best clip", model, 2 * bits, 2 * bits, None, nn.ReLU),
    ]
    for label, net, w_bits, a_bits, overq, kind in configs:
        results[label] = evaluate(net, x_cal, x_test, y_test, w_bits, a_bits, overq, kind)
    return {"model": model, "x_test": x_test, "results": results,
            "coverage": coverage(model, x_test, bits, (0, 1, 2, 4)),
            "labels": {"base": configs[0][0], "overq": configs[4][0], "wide": configs[5][0]}}


def hardware(model, x, accuracy_by_row: dict, name: str = "overq_ws_32x32", include_resnet18: bool = True):
    """compare() tables for the trained CNN and, optionally, the built-in ResNet-18 workload."""
    from qsim.hw import resnet18, workload
    from qsim.hw.overq import compare, load_overq

    spec, accel = load_overq(name)
    tables = {"digits CNN": compare(workload(model, x[:1]), spec, accel, accuracy_by_row)}
    if include_resnet18:
        tables["ResNet-18 (224x224)"] = compare(workload(resnet18(), torch.zeros(1, 3, 224, 224)), spec, accel)
    return spec, tables


def add_arguments(parser) -> None:
    parser.add_argument("--epochs", type=int, default=15, help="training epochs of the digits CNN")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the CNN is small, more threads mostly add overhead)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--bits", type=int, default=4, help="activation (and weight) bits of the low-precision rows")
    parser.add_argument("--cascade", type=int, default=2, help="OverQ cascade of the accuracy rows")
    parser.add_argument("--ocs-ratio", type=float, default=0.1, help="OCS expand ratio")
    parser.add_argument("--no-hw", action="store_true", help="skip the hardware comparison")
    parser.add_argument("--accelerator", default="overq_ws_32x32", help="hw_models/overq_*.toml name or path")


def run(args) -> int:
    console = Console(width=max(Console().width, 150))  # the hardware tables are wide
    wrong = [text for text, bad in ((f"--epochs {args.epochs}: expected >= 1", args.epochs < 1),
                                     (f"--threads {args.threads}: expected >= 1", args.threads < 1),
                                     (f"--bits {args.bits}: expected 2 to 8", not 2 <= args.bits <= 8),
                                     (f"--cascade {args.cascade}: expected >= 0", args.cascade < 0),
                                     (f"--ocs-ratio {args.ocs_ratio:g}: expected 0 to 1", not 0 <= args.ocs_ratio <= 1))
             if bad]
    if wrong:
        raise ValueError("; ".join(wrong))
    if not args.no_hw:
        from qsim.hw.overq import load_overq
        load_overq(args.accelerator)  # a wrong name fails now, not after the training
    torch.set_num_threads(args.threads)
    out = study(args.epochs, args.seed, args.bits, args.cascade, args.ocs_ratio)
    table = Table(title=f"PTQ on scikit-learn digits (test set {len(out['x_test'])}), OverQ cascade {args.cascade}")
    for column in ("configuration", "accuracy", "activation MSE"):
        table.add_column(column, justify="left" if column == "configuration" else "right", overflow="fold")
    for label, (acc, mse) in out["results"].items():
        table.add_row(label, f"{acc:.2%}", f"{mse:.2e}")
    console.print(table)
    cov = Table(title=f"Range-overwrite coverage of {args.bits}-bit outliers (test set, steps calibrated 'mse')")
    for column in ("cascade", "outliers", "covered", "coverage", "zero slots"):
        cov.add_column(column, justify="right", overflow="fold")
    for row in out["coverage"]:
        cov.add_row(str(row["cascade"]), str(row["outliers"]), str(row["covered"]), f"{row['coverage']:.1%}",
                    f"{row['zero_fraction']:.1%}")
    console.print(cov)
    if not args.no_hw:
        labels, results = out["labels"], out["results"]
        b = args.bits
        acc = {f"{b}-bit baseline": results[labels["base"]][0], f"OverQ {b}-bit": results[labels["overq"]][0],
               f"{2 * b}-bit baseline": results[labels["wide"]][0]}
        spec, tables = hardware(out["model"], out["x_test"], acc, args.accelerator)
        if spec.bits != b:
            console.print(f"note: {args.accelerator} models {spec.bits}-bit OverQ; the accuracy column is for {b} bits")
        for title, frame in tables.items():
            hw = Table(title=f"{title} on {spec.name}: {spec.bits}-bit OverQ, cascade {spec.cascade}, "
                             f"{spec.tag_bits} tag bits")
            columns = ["cycles", "energy µJ", "mac", "register", "sram", "dram", "PE area GE", "area +", "energy +"]
            columns += ["accuracy"] if "accuracy" in frame else []
            hw.add_column("", overflow="fold")
            for column in columns:
                hw.add_column(column, justify="right", overflow="fold")
            for label, r in frame.iterrows():
                cells = [f"{int(r.total_cycles):,}", f"{r.energy_uj:,.2f}", f"{r.energy_mac_uj:,.2f}",
                         f"{r.energy_register_uj:,.2f}", f"{r.energy_sram_uj:,.2f}", f"{r.energy_dram_uj:,.2f}",
                         f"{r.pe_area_ge:,.0f}", f"{r.pe_area_overhead:+.1%}", f"{r.energy_vs_baseline:+.1%}"]
                if "accuracy" in frame:
                    cells.append("" if r.accuracy is None or r.accuracy != r.accuracy else f"{r.accuracy:.2%}")
                hw.add_row(label, *cells)
            console.print(hw)
    return 0
