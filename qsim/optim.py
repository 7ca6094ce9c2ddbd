"""LowPrecision: quantize the numbers any torch optimizer holds, as QPyTorch's OptimLP does.

Exports LowPrecision. Around the wrapped optimizer's step:
  1. each gradient becomes round_grad(grad * grad_scale)                       (G)
  2. with an accumulator format, the parameter is set to its master copy (Acc) so the update lands there
  3. the wrapped optimizer steps (in float32)
  4. the master copy becomes round_acc(parameter); the parameter becomes round_weight(master)   (Acc, W)
     (without acc, the parameter itself is rounded: the weights are stored, and updated, in low precision)
  5. every floating-point state tensor of the parameter's shape (SGD's momentum_buffer, Adam's exp_avg
     and exp_avg_sq, ...) becomes round_momentum(state)                        (M)
W, G and M are rounded here, outside autograd, which is why they have no backward format (QPyTorch's
users asked); activations and errors are the hooks' job (qsim.nn.quantize_model).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from qsim.quant import quantize
from qsim.nn.spec import check_rounding, resolve_format

_ROLES = ("weight", "grad", "momentum", "acc")


class LowPrecision(torch.optim.Optimizer):
    """Wraps `optimizer` (SGD, Adam, AdamW, any torch optimizer) so that its numbers live in low precision.

    weight, grad, acc: None (float32) or a format (name, inline spec or Format).
    momentum: None, a format for every state tensor, or a dict state key -> format ("exp_avg_sq": ...).
    grad_scale: multiplies the gradient before rounding (undo a loss scale: loss * 1000 with 1/1000).
    rounding: one mode for all, or a dict role -> mode for some of weight, grad, momentum, acc
      (the others keep "stochastic").
    Shares param_groups and state with the wrapped optimizer, so LR schedulers work on either.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, weight=None, grad=None, momentum=None, acc=None,
                 grad_scale: float = 1.0, rounding="stochastic"):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer: expected a torch.optim.Optimizer; got {type(optimizer).__name__}")
        if isinstance(optimizer, LowPrecision):
            raise TypeError("optimizer: already a LowPrecision optimizer")
        self.optimizer = optimizer
        self.formats = {"weight": resolve_format(weight, "weight"), "grad": resolve_format(grad, "grad"),
                        "acc": resolve_format(acc, "acc")}
        if isinstance(momentum, Mapping):
            self.momentum_formats = {str(k): resolve_format(v, f"momentum[{k!r}]") for k, v in momentum.items()}
            self.formats["momentum"] = None
        else:
            self.momentum_formats = {}
            self.formats["momentum"] = resolve_format(momentum, "momentum")
        if isinstance(grad_scale, bool) or not isinstance(grad_scale, (int, float)) or not grad_scale > 0:
            raise ValueError(f"grad_scale: expected a positive number; got {grad_scale!r}")
        self.grad_scale = float(grad_scale)
        modes = rounding if isinstance(rounding, Mapping) else dict.fromkeys(_ROLES, rounding)
        unknown = set(modes) - set(_ROLES)
        if unknown:
            raise ValueError(f"rounding: unknown roles {sorted(unknown)}; expected some of {', '.join(_ROLES)}")
        self.rounding = {role: check_rounding(modes.get(role, "stochastic"), f"rounding[{role!r}]") for role in _ROLES}
        self.masters: dict[torch.Tensor, torch.Tensor] = {}
        # The base class's bookkeeping (hooks, profiling names) without copying the groups: they are shared.
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def _state_format(self, key: str):
        return self.momentum_formats.get(key, self.formats["momentum"])

    @torch.no_grad()
    def _round(self, tensor: torch.Tensor, role: str, fmt=None, source: torch.Tensor | None = None) -> None:
        """tensor <- round(source, the role's format); source defaults to tensor itself (in place)."""
        fmt = fmt if fmt is not None else self.formats[role]
        if fmt is not None:
            quantize(tensor if source is None else source, fmt, self.rounding[role], out=tensor)
        elif source is not None:
            tensor.copy_(source)

    def step(self, closure=None):
        """One step of the wrapped optimizer with its numbers rounded (module docstring, steps 1-5)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        acc = self.formats["acc"]
        with torch.no_grad():
            for p in self._params():
                if p.grad is None:
                    continue
                if self.grad_scale != 1.0:
                    p.grad.mul_(self.grad_scale)
                self._round(p.grad, "grad")
                if acc is not None:
                    master = self.masters.get(p)
                    if master is None:
                        master = self.masters[p] = p.detach().clone()
                        self._round(master, "acc")
                    p.copy_(master)
        self.optimizer.step()
        with torch.no_grad():
            for p in self._params():
                if p.grad is None:
                    continue
                if acc is not None:
                    master = self.masters[p]
                    self._round(master, "acc", source=p)
                    self._round(p, "weight", source=master)
                else:
                    self._round(p, "weight")
                for key, value in self.state.get(p, {}).items():
                    if key != "step" and isinstance(value, torch.Tensor) and value.is_floating_point() \
                            and value.shape == p.shape:
                        self._round(value, "momentum", self._state_format(key))
        return loss

    @torch.no_grad()
    def round_weights(self) -> None:
        """Round the parameters to the weight format now, so they are stored in it before the first step."""
        for p in self._params():
            self._round(p, "weight")

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none)

    def add_param_group(self, param_group: dict) -> None:
        # Called by the base __init__ before self.optimizer's groups are shared; afterwards, forward.
        if "optimizer" in self.__dict__ and self.param_groups is self.optimizer.param_groups:
            self.optimizer.add_param_group(param_group)
        else:
            super().add_param_group(param_group)

    def state_dict(self) -> dict:
        """The wrapped optimizer's state dict, plus the accumulator masters by parameter index."""
        index = {id(p): i for i, p in enumerate(self._params())}
        return {"optimizer": self.optimizer.state_dict(),
                "masters": {index[id(p)]: m.clone() for p, m in self.masters.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"optimizer", "masters"}:
            raise ValueError("state_dict: expected a dict from LowPrecision.state_dict() with keys "
                             "'optimizer' and 'masters'")
        self.optimizer.load_state_dict(state_dict["optimizer"])
        params = self._params()
        self.masters = {params[i]: m.to(params[i].device, params[i].dtype).clone()
                        for i, m in state_dict["masters"].items()}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v.name}" for k, v in self.formats.items() if v is not None)
        return f"LowPrecision({type(self.optimizer).__name__}, {shown})"
