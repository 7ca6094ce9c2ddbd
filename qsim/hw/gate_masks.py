"""Measured gate decisions of channel-gated convs, carried by the Workload to the accelerator model.

Exports `GateMasks` (the value a Layer's `gating` field holds) and `Recorder`, which workload() uses to collect
each gated conv's decisions during its run (workload keeps a ChannelGatedConv2d whole, as one conv layer, like
every Conv2d subclass).
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch

from qsim.nn.gating import ChannelGatedConv2d


class GateMasks:
    """on[n, k, p, q]: True where output (pixel, channel) took the conditional path; `partitions` splits the
    reduction (the base path reads C/groups/partitions input channels per output). Immutable and hashable by
    content, so a Layer that carries it stays a value."""

    __slots__ = ("on", "partitions", "_digest")

    def __init__(self, on, partitions: int):
        if isinstance(on, torch.Tensor):
            on = on.detach().cpu().numpy()
        on = np.array(on, copy=True)
        if on.dtype != np.bool_:
            raise TypeError(f"masks: expected a boolean array (True = gate on); got dtype {on.dtype}")
        if on.ndim != 4:
            raise ValueError(f"masks: expected shape (N, K, P, Q); got {on.ndim} dimension(s) {on.shape}")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"partitions: expected a positive integer; got {partitions!r}")
        on.flags.writeable = False
        self.on, self.partitions = on, partitions
        self._digest = hashlib.blake2b(np.packbits(on).tobytes() + repr((on.shape, partitions)).encode(),
                                       digest_size=16).digest()

    def check(self, layer) -> None:
        """Raises unless these masks fit `layer` (a Layer): shape (N, K, P, Q), partitions dividing C/groups."""
        expected = (layer.N, layer.K, layer.P, layer.Q)
        if self.on.shape != expected:
            raise ValueError(f"layer {layer.name!r}: gate masks have shape {self.on.shape}, expected (N, K, P, Q) "
                             f"= {expected}")
        per_group = layer.C // layer.groups
        if per_group % self.partitions:
            raise ValueError(f"layer {layer.name!r}: partitions={self.partitions} must divide the {per_group} input "
                             f"channels per group")

    @property
    def on_fraction(self) -> float:
        return float(self.on.mean())

    def __eq__(self, other):
        return isinstance(other, GateMasks) and self._digest == other._digest

    def __hash__(self):
        return hash(self._digest)

    def __deepcopy__(self, memo):
        return self  # immutable

    def __repr__(self) -> str:
        return f"GateMasks(shape={self.on.shape}, partitions={self.partitions}, on={self.on_fraction:.1%})"


class Recorder:
    """Forward hooks on every gated conv of `model` that keep each call's decisions; close() removes them and
    restores the modules' statistics counters, so extracting a workload does not count as an evaluation."""

    def __init__(self, model: torch.nn.Module):
        self.masks: dict[ChannelGatedConv2d, list[np.ndarray]] = {}
        self._counters = {}
        self._hooks = []
        for module in model.modules():
            if isinstance(module, ChannelGatedConv2d):
                self.masks[module] = []
                self._counters[module] = (module.outputs_seen, module.outputs_on)
                self._hooks.append(module.register_forward_hook(self._record))

    def _record(self, module, args, output):
        self.masks[module].append(module.last_gate.cpu().numpy())

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        for module, (seen, on) in self._counters.items():
            module.outputs_seen, module.outputs_on = seen, on
        self._hooks = []

    def attach(self, found: list, modules: dict) -> list:
        """[(Layer, owner name)] with each gated conv's layer carrying its masks (`modules` maps owner names to
        modules), calls matched in order (the last run's, should a failed trace have run part of the model first)."""
        calls = {}
        for _, owner in found:
            module = modules.get(owner)
            if module in self.masks:
                calls[module] = calls.get(module, 0) + 1
        seen = {}
        out = []
        for layer, owner in found:
            module = modules.get(owner)
            if module in self.masks:
                recorded = self.masks[module][-calls[module]:]
                index = seen.get(module, 0)
                seen[module] = index + 1
                layer = dataclasses.replace(layer, gating=GateMasks(recorded[index], module.partitions))
            out.append((layer, owner))
        return out
