"""Low-precision optimizers: LowPrecision wraps any torch optimizer (QPyTorch's OptimLP); HALP is
SVRG with bit centering.

Exports LowPrecision and HALP. LowPrecision, around the wrapped optimizer's step:
  1. each gradient becomes round_grad(grad * grad_scale)                       (G)
  2. with an accumulator format, the parameter is set to its master copy (Acc) so the update lands there
  3. the wrapped optimizer steps (in float32)
  4. the master copy becomes round_acc(parameter); the parameter becomes round_weight(master)   (Acc, W)
     (without acc, the parameter itself is rounded: the weights are stored, and updated, in low precision)
  5. every floating-point state tensor of the parameter's shape (SGD's momentum_buffer, Adam's exp_avg
     and exp_avg_sq, ...) becomes round_momentum(state)                        (M)
W, G and M are rounded here, outside autograd, which is why they have no backward format (QPyTorch's
users asked); activations and errors are the hooks' job (qsim.nn.quantize_model).
Around torch.optim.SGD, on float32 CPU tensors with fixed- or floating-point formats, steps 1-5 and SGD's
own run in one C++ call per parameter with the same results (qsim/optim_fused.py).
"""
from __future__ import annotations

from collections.abc import Mapping

import math

import torch

from qsim import optim_fused
from qsim.formats import FixedPoint
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
        if optim_fused.applies(self):  # SGD on float32 CPU tensors: the same bits in one call per parameter
            optim_fused.step(self)
            return loss
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
        # torch's load_state_dict replaces the groups and the state with new objects: share those instead.
        self.param_groups, self.state = self.optimizer.param_groups, self.optimizer.state
        params = self._params()
        self.masters = {params[i]: m.to(params[i].device, params[i].dtype).clone()
                        for i, m in state_dict["masters"].items()}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v.name}" for k, v in self.formats.items() if v is not None)
        return f"LowPrecision({type(self.optimizer).__name__}, {shown})"


class HALP(torch.optim.Optimizer):
    """HALP: SVRG with bit centering (De Sa, Leszczynski, Zhang, Marzoev, Aberger, Olukotun, Ré,
    "High-Accuracy Low-Precision Training", 2018, Algorithm 2).

    The parameters are w = anchor + z. Each epoch, recenter(full_closure) computes the full-precision
    gradient g at the anchor and rescales the offset grid: z is a `bits`-bit fixed-point number with
    step delta = ||g|| / (mu (2^(bits-1) - 1)), so the grid shrinks as the gradient does and the
    low-precision iterate still converges linearly to the exact optimum (for a mu-strongly convex
    objective). Each step(closure) evaluates the minibatch gradient at w and at the anchor (the closure
    is called twice: it must compute the same minibatch loss and call backward), and updates
        z <- round_stochastic(z - lr (grad(w) - grad(anchor) + g)),  on the delta grid.
    """

    def __init__(self, params, lr: float, bits: int = 8, mu: float = 1.0):
        if not lr > 0:
            raise ValueError(f"lr: expected a positive step size; got {lr!r}")
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 32:
            raise ValueError(f"bits: expected an int in [2, 32]; got {bits!r}")
        if not mu > 0:
            raise ValueError(f"mu: expected a positive strong-convexity constant; got {mu!r}")
        super().__init__(params, dict(lr=lr))
        self.bits, self.mu = bits, mu
        self.grid = FixedPoint(bits, 0)  # the integer codes of z; z = delta * code
        self.delta = None

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def recenter(self, full_closure) -> float:
        """Start an epoch: anchor <- w, full gradient at the anchor (full_closure computes the loss on
        all the data and calls backward), z <- 0 on the rescaled grid. Returns the full loss."""
        for p in self._params():
            p.grad = None
        with torch.enable_grad():
            loss = full_closure()
        norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in self._params() if p.grad is not None))
        self.delta = norm / (self.mu * (2 ** (self.bits - 1) - 1))
        for p in self._params():
            state = self.state[p]
            state["anchor"] = p.detach().clone()
            state["full_grad"] = torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
            state["codes"] = torch.zeros_like(p)  # the offset's integer codes: z = delta * codes
        return float(loss)

    def _grads(self, closure) -> list:
        for p in self._params():
            p.grad = None
        with torch.enable_grad():
            loss = closure()
        return loss, [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in self._params()]

    def step(self, closure):
        """One inner step; closure computes one minibatch's loss and calls backward (called twice)."""
        if self.delta is None:
            raise RuntimeError("HALP.step: call recenter(full_closure) first, once per epoch")
        params = self._params()
        loss, at_w = self._grads(closure)
        with torch.no_grad():
            for p in params:
                p.copy_(self.state[p]["anchor"])
        _, at_anchor = self._grads(closure)
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    i = params.index(p)
                    state = self.state[p]
                    update = at_w[i] - at_anchor[i] + state["full_grad"]
                    if self.delta > 0:  # at the optimum (zero full gradient) there is nothing to update
                        codes = state["codes"] - group["lr"] * update / self.delta
                        state["codes"] = quantize(codes, self.grid, "stochastic")
                    p.copy_(state["anchor"] + self.delta * state["codes"])
        return loss
