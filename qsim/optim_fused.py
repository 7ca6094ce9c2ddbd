"""LowPrecision around torch.optim.SGD in one C++ call per parameter (csrc/cpu/sgd_step.cpp).

Unfused, a step of LowPrecision(SGD) makes about eight passes over each parameter (scale and round the
gradient, copy the master in, SGD's three in-place ops, round master, weight and momentum) and as many
Python-level calls; for the small tensors of a training step the calls cost more than the arithmetic.
The fused step does the same arithmetic (torch's: a multiply for mul_, a fused multiply-add for each add
with alpha) and rounds each span of the tensor with qsim.quantize's kernel and the random words of its
place in the tensor, and draws its seeds from torch's generator in the unfused order: its results are
the unfused path's, bit for bit (tests/test_optim_fused.py). Where that cannot be promised (another
optimizer, SGD options it does not model, hooks on the wrapped optimizer, non-CPU or non-float32
tensors, formats other than fixed or floating point) LowPrecision takes the unfused path.
"""
from __future__ import annotations

import torch

from qsim import _C
from qsim.backends import elementwise
from qsim.quant import _STOCHASTIC, draw_seed
from qsim.rounding import rounding_code

_FLAGS_OFF = ("maximize", "foreach", "fused", "differentiable")  # SGD options the fused step does not model


def _tensor_fits(t: torch.Tensor) -> bool:
    return type(t) in (torch.Tensor, torch.nn.Parameter) and t.is_cpu and t.dtype == torch.float32 \
        and t.layout == torch.strided and t.is_contiguous()


def applies(lp) -> bool:
    """Can LowPrecision `lp` take the fused step now (every parameter with a gradient, every state tensor)?"""
    inner = lp.optimizer
    if type(inner) is not torch.optim.SGD or "step" in inner.__dict__ or inner._optimizer_step_pre_hooks \
            or inner._optimizer_step_post_hooks or role_formats(lp) is None:
        return False
    for group in lp.param_groups:
        if any(group.get(flag) for flag in _FLAGS_OFF) or isinstance(group["lr"], torch.Tensor) \
                or isinstance(group["weight_decay"], torch.Tensor):
            return False
        for p in group["params"]:
            if p.grad is None:
                continue
            if not (_tensor_fits(p) and _tensor_fits(p.grad)):
                return False
            state = lp.state.get(p)
            # (a buffer left from steps with momentum, now 0, is still rounded by the unfused path)
            if state and (set(state) != {"momentum_buffer"} or group["momentum"] == 0
                          or not _tensor_fits(state["momentum_buffer"])):
                return False
    return True


def role_formats(lp):
    """(params, rounding code) of G, M, Acc and W as the kernel takes them, or None if a format is not
    elementwise (or the momentum has per-key formats other than SGD's buffer)."""
    momentum = lp._state_format("momentum_buffer")
    if set(lp.momentum_formats) - {"momentum_buffer"}:
        return None
    roles = {"grad": lp.formats["grad"], "momentum": momentum, "acc": lp.formats["acc"], "weight": lp.formats["weight"]}
    if any(fmt is not None and type(fmt) not in elementwise.FORMATS for fmt in roles.values()):
        return None
    return {role: (None if fmt is None else elementwise.format_params(fmt), rounding_code(lp.rounding[role]))
            for role, fmt in roles.items()}


def _seed(role: tuple) -> int:
    """A seed for a role that rounds stochastically (drawn as qsim.quantize draws it), else 0."""
    params, code = role
    return draw_seed(None) if params is not None and code == _STOCHASTIC else 0


def step(lp) -> None:
    """LowPrecision.step's steps 1-5 (qsim/optim.py) with the wrapped SGD's step, fused."""
    roles = role_formats(lp)
    grad_role, momentum_role, acc_role, weight_role = roles["grad"], roles["momentum"], roles["acc"], roles["weight"]
    work = []
    with torch.no_grad():
        for group in lp.param_groups:  # the unfused path's first loop: gradient seeds, then new masters
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad_seed = _seed(grad_role)
                master = None
                if acc_role[0] is not None:
                    master = lp.masters.get(p)
                    if master is None:
                        master = lp.masters[p] = p.detach().clone()
                        lp._round(master, "acc")
                work.append((group, p, master, grad_seed))
        written = []
        for group, p, master, grad_seed in work:  # its second loop: the step, the accumulator, weight, momentum
            momentum, buffer, new_buffer = group["momentum"], None, False
            if momentum != 0:  # SGD keeps a buffer only with momentum; its first step makes it
                state = lp.state[p]
                buffer = state.get("momentum_buffer")
                new_buffer = buffer is None
                if new_buffer:
                    buffer = state["momentum_buffer"] = torch.empty_like(p, memory_format=torch.contiguous_format)
            acc_seed = _seed(acc_role) if master is not None else 0
            weight_seed = _seed(weight_role)
            momentum_seed = _seed(momentum_role) if momentum != 0 else 0
            _C.sgd_step_f32(
                p.data_ptr(), p.grad.data_ptr(), 0 if buffer is None else buffer.data_ptr(),
                0 if master is None else master.data_ptr(), p.numel(), group["lr"], momentum,
                1 - group["dampening"], group["weight_decay"], lp.grad_scale, lp.grad_scale != 1.0,
                group["weight_decay"] != 0, momentum != 0, group["nesterov"], new_buffer,
                grad_role[0], grad_role[1], grad_seed, momentum_role[0], momentum_role[1], momentum_seed,
                acc_role[0], acc_role[1], acc_seed, weight_role[0], weight_role[1], weight_seed, 32)
            written += [t for t in (p, p.grad, buffer, master) if t is not None]
        torch.autograd.graph.increment_version(written)  # as torch's in-place ops would
