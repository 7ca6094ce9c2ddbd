"""Outlier channel splitting (OCS; Zhao, Hu, Dotzel, De Sa, Zhang, "Improving Neural Network Quantization
without Retraining using Outlier Channel Splitting", ICML 2019): the baseline OverQ is compared with.

    split = qsim.nn.ocs(model, expand_ratio=0.05)   # a copy; model is left as it was

Exports ocs, OCSLinear, OCSConv2d. For each Linear / Conv2d, OCS repeatedly takes the input channel
holding the weight of largest magnitude, duplicates it and halves both copies (w·x = w/2·x + w/2·x), so
the layer computes the same function with a smaller weight range and ceil(expand_ratio · in_channels)
more input channels (and as many more multiply-accumulates). A channel split once can be split again
when it still holds the largest weight (the paper's greedy rule). The duplicated inputs are gathered by
an index (`source`), so the layer before is unchanged. Weights only: the paper also splits activations
(duplicating the producing layer's channel), which qsim leaves to OverQ, the mechanism under study; and
its quantization-aware variant (moving the halves onto the grid) is not modelled.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F


class OCSLinear(nn.Linear):
    """A Linear whose input features are first gathered by `source` (duplicates of split channels)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, source: torch.Tensor):
        super().__init__(weight.shape[1], weight.shape[0], bias is not None, weight.device, weight.dtype)
        with torch.no_grad():
            self.weight.copy_(weight)
            if bias is not None:
                self.bias.copy_(bias)
        self.register_buffer("source", source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.index_select(-1, self.source), self.weight, self.bias)


class OCSConv2d(nn.Conv2d):
    """A Conv2d whose input channels are first gathered by `source` (duplicates of split channels)."""

    def __init__(self, conv: nn.Conv2d, weight: torch.Tensor, source: torch.Tensor):
        super().__init__(weight.shape[1], conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, 1, conv.bias is not None, conv.padding_mode, weight.device, weight.dtype)
        with torch.no_grad():
            self.weight.copy_(weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        self.register_buffer("source", source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.index_select(1, self.source))


def split_channels(weight: torch.Tensor, splits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(split weight, source): `splits` times, the input channel (dim 1) holding the largest |w| is
    halved and appended again; source[k] is the original input channel that expanded channel k reads."""
    columns = list(weight.detach().movedim(1, 0).clone())  # in_channels tensors of shape (out, *kernel)
    source = list(range(len(columns)))
    peaks = [float(c.abs().max()) for c in columns]
    for _ in range(splits):
        k = max(range(len(columns)), key=peaks.__getitem__)  # the first channel on ties
        columns[k] = columns[k] / 2
        columns.append(columns[k].clone())
        source.append(source[k])
        peaks[k] /= 2
        peaks.append(peaks[k])
    return torch.stack(columns).movedim(0, 1).contiguous(), torch.tensor(source, dtype=torch.long,
                                                                         device=weight.device)


def ocs(model: nn.Module, expand_ratio: float = 0.05, types=(nn.Linear, nn.Conv2d)) -> nn.Module:
    """A copy of `model` with every Linear / Conv2d (of `types`) replaced by its channel-split equivalent:
    ceil(expand_ratio · in_channels) splits each. expand_ratio 0 returns an unsplit copy."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module; got {type(model).__name__}")
    if isinstance(expand_ratio, bool) or not isinstance(expand_ratio, (int, float)) or not 0 <= expand_ratio <= 1:
        raise ValueError(f"expand_ratio: expected a number in [0, 1] (extra input channels per channel); "
                         f"got {expand_ratio!r}")
    types = types if isinstance(types, tuple) else (types,)
    if not all(t in (nn.Linear, nn.Conv2d) for t in types):
        raise TypeError(f"types: OCS splits nn.Linear and nn.Conv2d; got {types!r}")
    split = copy.deepcopy(model)
    for name, module in list(split.named_modules()):
        if type(module) not in types:
            continue  # exact types: an OCS layer already split is not split again
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ValueError(f"module {name!r}: OCS needs groups=1 (a split channel must feed every output); "
                             f"got groups={module.groups}")
        in_channels = module.weight.shape[1]
        weight, source = split_channels(module.weight, math.ceil(expand_ratio * in_channels))
        replacement = (OCSLinear(weight, module.bias, source) if isinstance(module, nn.Linear)
                       else OCSConv2d(module, weight, source))
        replacement.train(module.training)
        parent_name, _, leaf = name.rpartition(".")
        setattr(split.get_submodule(parent_name) if parent_name else split, leaf, replacement)
    return split
