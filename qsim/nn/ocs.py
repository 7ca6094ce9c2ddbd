"""Outlier channel splitting (OCS; Zhao, Hu, Dotzel, De Sa, Zhang, "Improving Neural Network Quantization
without Retraining using Outlier Channel Splitting", ICML 2019): the baseline OverQ is compared with.

    split = qsim.nn.ocs(model, expand_ratio=0.05)                   # weights; a copy, model is left as it was
    split = qsim.nn.ocs(model, expand_ratio=0.05, activations=x)    # activations, outliers found on model(x)

Exports ocs, ChannelSplit, OCSLinear, OCSConv2d. For each Linear / Conv2d, OCS adds
ceil(expand_ratio · in_channels) input channels (and as many more multiply-accumulates), one at a time,
each by the paper's greedy rule: the channel holding the largest value is duplicated and halved, and a
channel split once is split again while it still holds the largest value.
- Weights (the paper's weight OCS): the value is a weight; its input column is halved and duplicated and
  the input channel is read twice, w·x = w/2·x + w/2·x, so the weight range shrinks.
- Activations (the paper's activation OCS): the value is the largest |input| the layer saw on calibration
  inputs, per input channel; the input channel is halved and duplicated and its weight column duplicated,
  w·x = w·x/2 + w·x/2, so the range of the activation the layer multiplies shrinks. The paper splits the
  activation by duplicating the producing neuron; here the consuming layer does it (a `ChannelSplit` gathers
  and halves its input), so the layer before is unchanged and any model of Linear / Conv2d layers can be
  split. Quantize the split activation with a rule on ChannelSplit, e.g.
  `quantize_model(split, [(ChannelSplit, QuantSpec(output=...))])`.
In both the layer computes the same function up to float summation order (and, for activations, a
halving, exact in binary floating point). The paper's quantization-aware split (moving the halves onto the
grid) is not modelled.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F


# The input-channel axis each layer type reads, counted from the end (batched or not).
_CHANNEL_DIM = {nn.Linear: -1, nn.Conv2d: -3}


class ChannelSplit(nn.Module):
    """The input a split layer multiplies: x's channels (along `dim`, counted from the end so that batched
    and unbatched inputs agree) gathered by `source` (duplicates of split channels) and multiplied by
    `gain` (1/2^k for an activation split k times; None: no gain)."""

    def __init__(self, source: torch.Tensor, gain: torch.Tensor | None, dim: int):
        super().__init__()
        self.dim = dim
        self.register_buffer("source", source)
        self.register_buffer("gain", gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.index_select(self.dim, self.source)
        if self.gain is None:
            return x
        return x * self.gain.to(x.dtype).view([-1] + [1] * (-1 - self.dim))


class OCSLinear(nn.Linear):
    """A Linear whose input features first pass through `split` (a ChannelSplit)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, source: torch.Tensor,
                 gain: torch.Tensor | None = None):
        super().__init__(weight.shape[1], weight.shape[0], bias is not None, weight.device, weight.dtype)
        with torch.no_grad():
            self.weight.copy_(weight)
            if bias is not None:
                self.bias.copy_(bias)
        self.split = ChannelSplit(source, gain, _CHANNEL_DIM[nn.Linear])

    @property
    def source(self) -> torch.Tensor:
        return self.split.source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.split(x), self.weight, self.bias)


class OCSConv2d(nn.Conv2d):
    """A Conv2d whose input channels first pass through `split` (a ChannelSplit)."""

    def __init__(self, conv: nn.Conv2d, weight: torch.Tensor, source: torch.Tensor,
                 gain: torch.Tensor | None = None):
        super().__init__(weight.shape[1], conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, 1, conv.bias is not None, conv.padding_mode, weight.device, weight.dtype)
        with torch.no_grad():
            self.weight.copy_(weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        self.split = ChannelSplit(source, gain, _CHANNEL_DIM[nn.Conv2d])

    @property
    def source(self) -> torch.Tensor:
        return self.split.source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.split(x))


def greedy_splits(peaks: list[float], splits: int) -> list[int]:
    """The channel split at each of `splits` steps: the one with the largest peak (the first on ties), whose
    peak is then halved and appended as the new channel's (the paper's greedy rule)."""
    peaks = list(peaks)
    picks = []
    for _ in range(splits):
        k = max(range(len(peaks)), key=peaks.__getitem__)
        peaks[k] /= 2
        peaks.append(peaks[k])
        picks.append(k)
    return picks


def split_channels(weight: torch.Tensor, splits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(split weight, source): `splits` times, the input channel (dim 1) holding the largest |w| is
    halved and appended again; source[k] is the original input channel that expanded channel k reads."""
    columns = list(weight.detach().movedim(1, 0).clone())  # in_channels tensors of shape (out, *kernel)
    source = list(range(len(columns)))
    for k in greedy_splits([float(c.abs().max()) for c in columns], splits):
        columns[k] = columns[k] / 2
        columns.append(columns[k].clone())
        source.append(source[k])
    return torch.stack(columns).movedim(0, 1).contiguous(), torch.tensor(source, dtype=torch.long,
                                                                         device=weight.device)


def split_activation_channels(weight: torch.Tensor, peaks: torch.Tensor,
                              splits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weight, source, gain): `splits` times, the input channel whose activation peak (`peaks`, one per
    input channel of weight's dim 1) is the largest is halved (gain) and appended again with a copy of
    its weight column; expanded channel k reads original channel source[k] times gain[k]."""
    columns = list(weight.detach().movedim(1, 0))
    source = list(range(len(columns)))
    gain = [1.0] * len(columns)
    for k in greedy_splits(peaks.tolist(), splits):
        gain[k] /= 2
        gain.append(gain[k])
        columns.append(columns[k])
        source.append(source[k])
    return (torch.stack(columns).movedim(0, 1).contiguous(),
            torch.tensor(source, dtype=torch.long, device=weight.device),
            torch.tensor(gain, dtype=weight.dtype, device=weight.device))


def activation_peaks(model: nn.Module, activations, layers: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Per layer of `layers`, the largest |input| per input channel over model(*activations), measured on
    a throwaway copy so that no state of `model` (batch-norm statistics) changes."""
    probe = copy.deepcopy(model)
    modules = dict(probe.named_modules())
    peaks: dict[str, torch.Tensor] = {}

    def record(name, module, args):
        x = args[0].detach()
        dim = _CHANNEL_DIM[type(module)]
        peak = x.abs().movedim(dim, 0).reshape(x.shape[dim], -1).amax(1)
        peaks[name] = peak if name not in peaks else torch.maximum(peaks[name], peak)

    hooks = [modules[name].register_forward_pre_hook(lambda m, args, name=name: record(name, m, args))
             for name in layers]
    try:
        with torch.no_grad():
            probe(*activations)
    finally:
        for hook in hooks:
            hook.remove()
    missing = [name for name in layers if name not in peaks]
    if missing:
        raise ValueError(f"activations: model(activations) never called layer(s) {missing}, so their "
                         f"activation outliers are unknown; pass types= to leave them out")
    for name, peak in peaks.items():
        if not torch.isfinite(peak).all():
            raise ValueError(f"activations: the input of layer {name!r} holds a non-finite value "
                             f"(NaN or inf) on the calibration inputs")
    return peaks


def ocs(model: nn.Module, expand_ratio: float = 0.05, types=(nn.Linear, nn.Conv2d), activations=None) -> nn.Module:
    """A copy of `model` with every Linear / Conv2d (of `types`) replaced by its channel-split equivalent:
    ceil(expand_ratio · in_channels) splits each, of the weights, or, given `activations` (calibration
    inputs: a tensor or a tuple of model's positional arguments), of the activations entering the layer.
    expand_ratio 0 returns an unsplit copy."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module; got {type(model).__name__}")
    if isinstance(expand_ratio, bool) or not isinstance(expand_ratio, (int, float)) or not 0 <= expand_ratio <= 1:
        raise ValueError(f"expand_ratio: expected a number in [0, 1] (extra input channels per channel); "
                         f"got {expand_ratio!r}")
    types = types if isinstance(types, tuple) else (types,)
    if not all(t in (nn.Linear, nn.Conv2d) for t in types):
        raise TypeError(f"types: OCS splits nn.Linear and nn.Conv2d; got {types!r}")
    if activations is not None:
        activations = activations if isinstance(activations, tuple) else (activations,)
        if not activations or not all(isinstance(a, torch.Tensor) for a in activations):
            raise TypeError(f"activations: expected a tensor (or a tuple of tensors) of calibration inputs; "
                            f"got {type(activations[0] if activations else activations).__name__}")
        if any(a.numel() == 0 for a in activations):
            raise ValueError("activations: expected a non-empty calibration batch; got an empty tensor")
    layers = {}
    for name, module in model.named_modules():
        if type(module) not in types:
            continue  # exact types: an OCS layer already split is not split again
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ValueError(f"module {name!r}: OCS needs groups=1 (a split channel must feed every output); "
                             f"got groups={module.groups}")
        layers[name] = module
    peaks = activation_peaks(model, activations, layers) if activations is not None else None
    split = copy.deepcopy(model)
    for name in layers:
        module = split.get_submodule(name)
        splits = math.ceil(expand_ratio * module.weight.shape[1])
        if peaks is None:
            weight, source = split_channels(module.weight, splits)
            gain = None
        else:
            weight, source, gain = split_activation_channels(module.weight, peaks[name], splits)
        replacement = (OCSLinear(weight, module.bias, source, gain) if isinstance(module, nn.Linear)
                       else OCSConv2d(module, weight, source, gain))
        replacement.train(module.training)
        if not name:
            return replacement  # model is itself the one layer
        parent_name, _, leaf = name.rpartition(".")
        setattr(split.get_submodule(parent_name) if parent_name else split, leaf, replacement)
    return split
