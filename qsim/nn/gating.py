"""Channel gating (Hua et al., "Channel Gating Neural Networks", NeurIPS 2019): convolutions that compute a
cheap partial sum everywhere and the rest of their reduction only where that partial sum says it matters.

Exports ChannelGatedConv2d, ChannelGate, gate_model, GateHandle and GROUPINGS.

Per output channel k and output pixel, as the authors' reference code computes it:
    Yp = conv(x, W restricted to the base part of the input channels) + bias     base path
    d  = 1[BN(Yp) > Δ_k]          BN without affine parameters, Δ a learnable threshold per channel
    out = Y·d + Yp·(1 − d)        Y the dense conv: the conditional path adds the rest of the reduction
                                  where d = 1 (the reference code's form, exact at d in {0, 1})
The input channels of each conv group are split into `partitions` equal parts. grouping="first": every output
channel's base part is the first one; grouping="interleaved" (the paper's channel grouping): output channel k
(counted within its conv group) uses part k mod partitions, so the base paths together read every input channel.

Training: the step has no gradient, so d is differentiated with a straight-through surrogate, the derivative of
sigmoid(slope·(BN(Yp) − Δ)) (the reference code's GreaterThan applied to a sigmoid with alpha = 2: slope/4 at the
threshold, decaying away from it). GateHandle.gate_loss() = λ·Σ(Δ − target)² pulls thresholds toward a target
that sets the sparsity (λ = 1e-4 and target 1.0 in the reference training script).

Every forward computes the dense and the base conv and selects; the MAC counts that stats() reports are those of
the gated computation (base MACs for every output, conditional MACs only where d = 1), from eval-mode forwards.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from qsim.nn.model import check_matcher, matches_rule, register_module_type

GROUPINGS = ("first", "interleaved")
GATE_OPTIONS = ("partitions", "threshold", "grouping", "slope")


@register_module_type  # quantize_model may round its threshold like a weight when a rule selects the gate
class ChannelGate(nn.Module):
    """d = 1[BN(Yp) > Δ] per output channel and pixel, with the straight-through sigmoid surrogate gradient."""

    def __init__(self, channels: int, threshold: float = 0.0, slope: float = 2.0):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.threshold = nn.Parameter(torch.full((channels,), float(threshold)))
        self.slope = slope

    def forward(self, y_base: torch.Tensor) -> torch.Tensor:
        z = self.norm(y_base) - self.threshold.view(1, -1, 1, 1)  # (N, K, P, Q)
        soft = torch.sigmoid(self.slope * z)
        # Forward value: exactly the step (soft - soft.detach() is exactly 0); gradient: that of the sigmoid.
        return (z > 0).to(z.dtype) + (soft - soft.detach())

    def extra_repr(self) -> str:
        return f"slope={self.slope:g}"


def _positive_int(value, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{argument}: expected a positive integer; got {value!r}")
    return value


class ChannelGatedConv2d(nn.Conv2d):
    """An nn.Conv2d that gates its conditional path; shares the wrapped conv's weight and bias Parameters.

    A subclass of nn.Conv2d, so rules written for convs (quantize_model's, qsim.hw's precision rules) select it,
    and quantize_model's hooks round the weight and input that both paths read. `last_gate` holds the latest
    decisions (bool, (N, K, P, Q)); eval-mode forwards add to `outputs_seen` / `outputs_on`.
    """

    def __init__(self, conv: nn.Conv2d, partitions: int = 4, threshold: float = 0.0, grouping: str = "first",
                 slope: float = 2.0):
        if not isinstance(conv, nn.Conv2d) or isinstance(conv, ChannelGatedConv2d):
            raise TypeError(f"conv: expected an nn.Conv2d (not already gated); got {type(conv).__name__}")
        partitions = _positive_int(partitions, "partitions")
        per_group = conv.in_channels // conv.groups
        if per_group < partitions:
            raise ValueError(f"partitions={partitions}: the conv has {per_group} input channel(s) per group "
                             f"(in_channels={conv.in_channels}, groups={conv.groups}), fewer than partitions")
        if per_group % partitions:
            raise ValueError(f"partitions={partitions} must divide the conv's {per_group} input channels per group "
                             f"(in_channels={conv.in_channels}, groups={conv.groups})")
        if grouping not in GROUPINGS:
            raise ValueError(f"grouping: expected one of {', '.join(GROUPINGS)}; got {grouping!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
            raise ValueError(f"threshold: expected a number (±inf allowed); got {threshold!r}")
        if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not slope > 0:
            raise ValueError(f"slope: expected a positive number; got {slope!r}")
        # The constructor sets every conv attribute; meta tensors avoid initialising weights replaced below.
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode, device="meta")
        self.weight, self.bias = conv.weight, conv.bias
        self.partitions, self.grouping = partitions, grouping
        self.gate = ChannelGate(conv.out_channels, threshold, slope).to(conv.weight.device)
        self.register_buffer("base_mask", self._base_mask().to(conv.weight.device, conv.weight.dtype),
                             persistent=False)
        self.last_gate: torch.Tensor | None = None
        self.outputs_seen = 0
        self.outputs_on = 0

    def _base_mask(self) -> torch.Tensor:
        """(K, C/groups, 1, 1): 1 where the input channel is in output channel k's base part."""
        K, per_group = self.out_channels, self.in_channels // self.groups
        part = per_group // self.partitions
        local_k = torch.arange(K) % (K // self.groups)  # output channel index within its conv group
        first = torch.zeros(K, dtype=torch.long) if self.grouping == "first" else (local_k % self.partitions) * part
        channel = torch.arange(per_group)
        mask = (channel >= first[:, None]) & (channel < first[:, None] + part)
        return mask[:, :, None, None]

    @property
    def macs_per_output(self) -> tuple[int, int]:
        """(base, conditional) MACs of one output element: C/groups/partitions and the rest, times R·S."""
        per_group = self.in_channels // self.groups
        taps = math.prod(self.kernel_size)
        base = per_group // self.partitions
        return base * taps, (per_group - base) * taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y_base = self._conv_forward(x, self.weight * self.base_mask, self.bias)  # (N, K, P, Q)
        y = self._conv_forward(x, self.weight, self.bias)  # (N, K, P, Q): the dense conv, bit for bit
        d = self.gate(y_base)
        gate = d.detach() > 0.5
        self.last_gate = gate
        if not self.training:
            self.outputs_seen += gate.numel()
            self.outputs_on += int(gate.sum())
        return y * d + y_base * (1 - d)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, partitions={self.partitions}, grouping={self.grouping}"


def _conv_options(defaults: dict, options, where: str) -> dict | None:
    if options is None:
        return None
    if not isinstance(options, dict):
        raise TypeError(f"{where}: expected a dict of {', '.join(GATE_OPTIONS)} or None (leave ungated); "
                        f"got {type(options).__name__}")
    unknown = sorted(set(options) - set(GATE_OPTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)}; expected some of {', '.join(GATE_OPTIONS)}")
    return {**defaults, **options}


def _is_matcher(value) -> bool:
    return isinstance(value, (str, type)) or (isinstance(value, tuple) and all(isinstance(t, type) for t in value))


def _check_gate_rules(rules) -> list[tuple[object, object]]:
    """(matcher, options) pairs from one matcher, a dict, or a list of matchers and (matcher, options) pairs."""
    if _is_matcher(rules):
        pairs = [(rules, {})]
    elif isinstance(rules, dict):
        pairs = list(rules.items())
    elif isinstance(rules, (list, tuple)):
        pairs = [item if isinstance(item, tuple) and len(item) == 2 and (item[1] is None or isinstance(item[1], dict))
                 else (item, {}) for item in rules]
    else:
        raise TypeError(f"rules: expected a matcher, a dict or a list of rules; got {type(rules).__name__}")
    for i, (matcher, _) in enumerate(pairs):
        check_matcher(matcher, f"rules[{i}]")
    return pairs


class GateHandle:
    """What gate_model converted: `modules` (qualified name -> ChannelGatedConv2d), gate_loss(), calibrate(),
    stats(), remove()."""

    def __init__(self, model: nn.Module, target: float, loss_weight: float):
        self.model, self.target, self.loss_weight = model, target, loss_weight
        self.modules: dict[str, ChannelGatedConv2d] = {}
        self._originals: dict[str, nn.Conv2d] = {}

    def _replace(self, name: str, conv: nn.Conv2d, options: dict) -> None:
        gated = ChannelGatedConv2d(conv, **options)
        parent_name, _, leaf = name.rpartition(".")
        setattr(self.model.get_submodule(parent_name), leaf, gated)
        self.modules[name], self._originals[name] = gated, conv

    def gate_loss(self) -> torch.Tensor:
        """λ·Σ over gated layers and output channels of (Δ − target)²; add it to the task loss."""
        terms = [((m.gate.threshold - self.target) ** 2).sum() for m in self.modules.values()]
        return self.loss_weight * torch.stack(terms).sum()

    @torch.no_grad()
    def calibrate(self, *batches) -> None:
        """Set every gate's batch-norm statistics to the mean and variance of its base partial sums over `batches`
        (inputs of the model, a cumulative average), without training: converts a trained dense model into a gated
        one whose thresholds Δ compare normalised partial sums. Weights and thresholds are left alone."""
        if not batches:
            raise ValueError("batches: expected at least one input batch of the model")
        was_training = self.model.training
        norms = [m.gate.norm for m in self.modules.values()]
        momenta = [norm.momentum for norm in norms]
        self.model.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative moving average: every batch counts alike
            norm.train()
        try:
            for batch in batches:
                self.model(*(batch if isinstance(batch, tuple) else (batch,)))
        finally:
            for norm, momentum in zip(norms, momenta):
                norm.momentum = momentum
            self.model.train(was_training)

    def reset_stats(self) -> None:
        for module in self.modules.values():
            module.outputs_seen = module.outputs_on = 0

    def stats(self) -> "pd.DataFrame":
        """Per gated layer, over the eval-mode forwards since the last reset_stats(): the fraction of gated-off
        (channel, pixel) outputs, MACs of the base path, the executed conditional path and the dense conv, and
        ideal speedup = dense / (base + conditional); a last row "total" sums the gated layers."""
        rows = []
        for name, m in self.modules.items():
            base, conditional = m.macs_per_output
            rows.append({"layer": name, "partitions": m.partitions, "outputs": m.outputs_seen,
                         "outputs_on": m.outputs_on, "base_macs": base * m.outputs_seen,
                         "conditional_macs": conditional * m.outputs_on,
                         "dense_macs": (base + conditional) * m.outputs_seen})
        import pandas as pd  # imported here: `import qsim` should not pay for pandas (~0.7 s)

        frame = pd.DataFrame(rows, columns=["layer", "partitions", "outputs", "outputs_on", "base_macs",
                                            "conditional_macs", "dense_macs"]).set_index("layer")
        if not frame.empty:
            frame.loc["total"] = frame.sum()
            frame.loc["total", "partitions"] = float("nan")
        frame["gated_off"] = 1 - frame["outputs_on"] / frame["outputs"]
        frame["ideal_speedup"] = frame["dense_macs"] / (frame["base_macs"] + frame["conditional_macs"])
        return frame

    def remove(self) -> None:
        """Put every original conv back; the model then computes exactly what it computed before gating
        (the convs share their Parameters with the gated ones, so training in between is kept)."""
        for name, gated in self.modules.items():
            if gated._forward_hooks or gated._forward_pre_hooks:
                raise ValueError(f"module {name!r} has forward hooks (quantize_model?); remove them first")
        for name, conv in self._originals.items():
            parent_name, _, leaf = name.rpartition(".")
            setattr(self.model.get_submodule(parent_name), leaf, conv)
        self.modules, self._originals = {}, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def __len__(self) -> int:
        return len(self.modules)

    def __repr__(self) -> str:
        return f"GateHandle({len(self.modules)} gated convs, target={self.target:g})"


def gate_model(model: nn.Module, rules=nn.Conv2d, partitions: int = 4, target: float = 1.0, *,
               threshold: float = 0.0, grouping: str = "first", slope: float = 2.0, loss_weight: float = 1e-4,
               skip_first: bool = True, skip_pointwise: bool = True) -> GateHandle:
    """Replace the matching nn.Conv2d modules of `model` by ChannelGatedConv2d; returns the handle.

    rules: a matcher, or a list (or dict) of matchers and (matcher, options) pairs, matched as quantize_model
    matches (a module type or tuple of types; a glob on qualified names). `options` is a dict of
    ChannelGatedConv2d keywords (partitions, threshold, grouping, slope) overriding the defaults given here, or
    None to leave the convs it matches ungated; the last matching rule wins. Only nn.Conv2d modules are
    candidates; a rule that matches none raises. skip_first leaves the model's first conv (the stem that sees
    the image, as the paper does) and skip_pointwise its 1x1 convs (residual shortcuts) ungated.
    target, loss_weight: the gate loss loss_weight·Σ(Δ − target)²; a higher target gates more outputs off.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module; got {type(model).__name__}")
    for argument, value in (("target", target), ("loss_weight", loss_weight)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{argument}: expected a finite number; got {value!r}")
    if loss_weight < 0:
        raise ValueError(f"loss_weight: expected >= 0; got {loss_weight!r}")
    defaults = dict(partitions=partitions, threshold=threshold, grouping=grouping, slope=slope)
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    chosen: dict[str, dict | None] = {}
    for i, (matcher, options) in enumerate(_check_gate_rules(rules)):
        options = _conv_options(defaults, options, f"rules[{i}] options")
        hits = [name for name, m in convs if matches_rule(matcher, name, m)]
        if not hits:
            raise ValueError(f"rules[{i}]: {matcher!r} matches no nn.Conv2d of the model")
        for name in hits:
            chosen[name] = options
    if skip_first and convs:
        chosen.pop(convs[0][0], None)
    modules = dict(convs)
    if skip_pointwise:
        chosen = {name: o for name, o in chosen.items() if modules[name].kernel_size != (1, 1)}
    handle = GateHandle(model, float(target), float(loss_weight))
    try:
        for name, options in chosen.items():
            conv = modules[name]
            if options is None:
                continue
            if not name:
                raise ValueError("model: the model itself is a conv; wrap it in a container to gate it")
            if isinstance(conv, ChannelGatedConv2d):
                raise ValueError(f"module {name!r} is already gated; call remove() on its handle first")
            if conv._forward_hooks or conv._forward_pre_hooks:
                raise ValueError(f"module {name!r} has forward hooks (quantize_model?): gate the model first, "
                                 "then quantize it, or the hooks would stay on the replaced conv")
            try:
                handle._replace(name, conv, options)
            except (TypeError, ValueError) as err:
                raise type(err)(f"module {name!r}: {err}") from None
    except Exception:
        handle.remove()
        raise
    return handle
