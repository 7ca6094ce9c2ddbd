"""quantize_model: per-module quantization of an ordinary torch model, attached by rules and removable.

Exports quantize_model, QuantHandle (remove, summary, disabled, error_report), register_module_type and SUPPORTED_TYPES.

How it works, per hooked module:
  forward pre-hook  rounds the floating-point inputs (and marks their gradient for rounding), and swaps
                    each parameter for a copy quantized on the fly; the float32 master stays the
                    Parameter the optimizer holds (store_weights=True instead rounds the master in place).
  forward hook      (always called, also when forward raises) puts the Parameters back and rounds the
                    outputs and, through qsim.nn.quantizer, the gradient flowing back into them.
  forward           replaced only where the spec asks for a low-precision accumulator (Linear, Conv).
Weight, bias and their gradients are quantized inside autograd here, unlike QPyTorch where W and G are
quantized by the optimizer wrapper (qsim.optim.LowPrecision does that too, for recipes that store them).
"""
from __future__ import annotations

import contextlib
import functools
import re
import weakref
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from qsim.quant import quantize_
from qsim.nn import functional as qF
from qsim.nn.quantizer import quantize_fb
from qsim.nn.spec import QuantSpec

# Module types whose forward reads its own parameters as attributes, so swapping them works.
SUPPORTED_TYPES: list[type] = [
    nn.Linear, nn.Bilinear, _ConvNd, nn.Embedding, nn.EmbeddingBag, nn.RNNBase, nn.RNNCellBase,
    nn.MultiheadAttention, _NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.PReLU,
]
_ACC_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Types with parameters but no matrix product: an accumulator format does not apply to them.
_NO_GEMM_TYPES = (_NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.Embedding, nn.EmbeddingBag, nn.PReLU)
# Leading positional arguments that are activations; the rest (attention masks) are left alone.
_ACTIVATION_ARGS = {nn.MultiheadAttention: 3}
_PARAM_FIELDS = ("weight", "bias", "grad_weight", "grad_bias", "acc", "chunk", "store_weights")

_hooked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> the handle that hooked it


def register_module_type(cls: type) -> type:
    """Declare that `cls` (a module with its own parameters) reads them as attributes in forward,
    so quantize_model may swap them; usable as a class decorator."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"cls: expected an nn.Module subclass; got {cls!r}")
    if cls not in SUPPORTED_TYPES:
        SUPPORTED_TYPES.append(cls)
    return cls


@dataclass
class _Slot:
    """One parameter of `owner` and the formats its hook applies."""

    owner: nn.Module
    name: str
    master: nn.Parameter
    fmt: object
    grad_fmt: object
    rounding: str
    backward_rounding: str
    store: bool
    scaling: str | None

    def value(self) -> torch.Tensor:
        """What forward should see: the master rounded (in place when stored) and its gradient hook."""
        if self.store:
            with torch.no_grad():
                quantize_(self.master, self.fmt, self.rounding)
            return quantize_fb(self.master, None, self.grad_fmt, self.rounding, self.backward_rounding)
        return quantize_fb(self.master, self.fmt, self.grad_fmt, self.rounding, self.backward_rounding, self.scaling)

    @property
    def swaps(self) -> bool:
        return not self.store or self.grad_fmt is not None


@dataclass
class _Plan:
    """Everything the hooks of one module need; holds no reference to the hooked module itself."""

    spec: QuantSpec
    n_inputs: int | None
    slots: list[_Slot] = field(default_factory=list)
    enabled: bool = True  # False: the module computes in float32 (error reports compare the two)

    def quantize_inputs(self, args: tuple) -> tuple:
        s = self.spec
        if s.input is None and s.grad_input is None:
            return args
        n = len(args) if self.n_inputs is None else self.n_inputs
        fn = functools.partial(quantize_fb, forward=s.input, backward=s.grad_input, forward_rounding=s.rounding,
                               backward_rounding=s.backward_rounding, scaling=s.scaling)
        return tuple(_map_floats(a, fn) for a in args[:n]) + tuple(args[n:])

    def quantize_outputs(self, output):
        s = self.spec
        if s.output is None and s.grad_output is None:
            return output
        fn = functools.partial(quantize_fb, forward=s.output, backward=s.grad_output, forward_rounding=s.rounding,
                               backward_rounding=s.backward_rounding, scaling=s.scaling)
        return _map_floats(output, fn)

    def swap_in(self) -> None:
        for slot in self.slots:
            value = slot.value()
            if slot.swaps:
                slot.owner._parameters[slot.name] = value
        _refresh_flat_weights(self.slots)

    def swap_out(self) -> None:
        for slot in self.slots:
            slot.owner._parameters[slot.name] = slot.master
        _refresh_flat_weights(self.slots)


def _refresh_flat_weights(slots) -> None:
    # RNNs cache their parameters in _flat_weights; rebuild the cache from the current attributes.
    for owner in {id(s.owner): s.owner for s in slots if isinstance(s.owner, nn.RNNBase)}.values():
        owner._init_flat_weights()


def _map_floats(obj, fn):
    """fn applied to every floating-point tensor in a nest of tuples (named too), lists and dicts."""
    if isinstance(obj, torch.Tensor):
        return fn(obj) if obj.is_floating_point() else obj
    if isinstance(obj, tuple):
        mapped = [_map_floats(o, fn) for o in obj]
        return type(obj)(*mapped) if hasattr(obj, "_fields") else tuple(mapped)
    if isinstance(obj, list):
        return [_map_floats(o, fn) for o in obj]
    if isinstance(obj, dict):
        return {k: _map_floats(v, fn) for k, v in obj.items()}
    return obj


def _pre_hook(plan: _Plan, module, args):
    if not plan.enabled:
        return None
    args = plan.quantize_inputs(args)
    plan.swap_in()
    return args


def _post_hook(plan: _Plan, module, args, output):
    if not plan.enabled:
        return None
    plan.swap_out()
    return None if output is None else plan.quantize_outputs(output)


def _acc_forward(module: nn.Module, plan: _Plan, x: torch.Tensor) -> torch.Tensor:
    """The forward of a Linear/Conv module with its GEMM accumulated in spec.acc."""
    if not plan.enabled:
        return type(module).forward(module, x)
    spec = plan.spec
    options = dict(acc=spec.acc, chunk=spec.chunk or 1, rounding=spec.acc_rounding)
    if isinstance(module, nn.Linear):
        return qF.linear(x, module.weight, module.bias, **options)
    conv = {nn.Conv1d: qF.conv1d, nn.Conv2d: qF.conv2d, nn.Conv3d: qF.conv3d}[type(module)]
    return conv(x, module.weight, module.bias, module.stride, module.padding, module.dilation, module.groups, **options)


def _is_container(module: nn.Module) -> bool:
    return next(module.children(), None) is not None and not module._parameters


def matches_rule(matcher, name: str, module: nn.Module) -> bool:
    """Does a rule's matcher (a module type, a tuple of types, or a name glob) select this module?"""
    if isinstance(matcher, str):
        # A wildcard pattern means layers; a block (children, no own parameters) is matched by its exact name.
        return fnmatchcase(name, matcher) and (not _is_container(module) or not re.search(r"[*?\[]", matcher))
    return isinstance(module, matcher)


def check_matcher(matcher, where: str) -> None:
    """Raises unless `matcher` is an nn.Module subclass, a tuple of them, or a glob on qualified names."""
    types = matcher if isinstance(matcher, tuple) else (matcher,)
    if not (isinstance(matcher, str) or all(isinstance(t, type) and issubclass(t, nn.Module) for t in types)):
        raise TypeError(f"{where}: the matcher must be an nn.Module subclass, a tuple of them or a glob "
                        f"string on qualified module names; got {matcher!r}")


def check_rules(rules) -> list[tuple[object, QuantSpec]]:
    """The rules as validated (matcher, QuantSpec) pairs; shared with qsim.hw so both read rules alike."""
    pairs = list(rules.items()) if isinstance(rules, dict) else list(rules)
    checked = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"rules[{i}]: expected a (matcher, QuantSpec) pair; got {pair!r}")
        matcher, spec = pair
        check_matcher(matcher, f"rules[{i}]")
        if not isinstance(spec, QuantSpec):
            raise TypeError(f"rules[{i}]: expected a QuantSpec; got {type(spec).__name__}")
        checked.append((matcher, spec))
    return checked


def _effective_spec(name: str, module: nn.Module, spec: QuantSpec) -> QuantSpec:
    """The spec restricted to what applies to `module`; raises where a requested format cannot apply."""
    own = dict(module.named_parameters(recurse=False))
    if not own:
        # Nothing to weight or accumulate: only the activation formats apply.
        return spec.replace(weight=None, bias=None, grad_weight=None, grad_bias=None, acc=None, chunk=None,
                            store_weights=False)
    if not isinstance(module, tuple(SUPPORTED_TYPES)):
        raise TypeError(f"module {name!r}: qsim does not know how {type(module).__name__} uses its parameters "
                        f"({', '.join(own)}); if its forward reads them as attributes, declare it with "
                        f"qsim.nn.register_module_type({type(module).__name__})")
    if spec.acc is not None and isinstance(module, _NO_GEMM_TYPES):
        spec = spec.replace(acc=None, chunk=None)
    if spec.acc is not None:
        if type(module) not in _ACC_TYPES:
            raise TypeError(f"module {name!r}: a low-precision accumulator (acc) is simulated for "
                            f"{', '.join(t.__name__ for t in _ACC_TYPES)}; got {type(module).__name__}")
        if isinstance(module, _ConvNd) and module.padding_mode != "zeros":
            raise ValueError(f"module {name!r}: acc needs padding_mode='zeros'; got {module.padding_mode!r}")
    return spec


def _slots(owner: nn.Module, spec: QuantSpec) -> list[_Slot]:
    slots = []
    for pname, param in owner.named_parameters(recurse=False):
        role = "bias" if "bias" in pname else "weight"
        fmt, grad_fmt = getattr(spec, role), getattr(spec, f"grad_{role}")
        if fmt is None and grad_fmt is None:
            continue
        slots.append(_Slot(owner, pname, param, fmt, grad_fmt, spec.rounding, spec.backward_rounding,
                           spec.store_weights and fmt is not None, spec.scaling))
    return slots


class QuantHandle:
    """What quantize_model attached: `specs` (qualified name -> the QuantSpec applied), `remove()`, `summary()`."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.specs: dict[str, QuantSpec] = {}
        self._hooks = []
        self._forwards: list[nn.Module] = []
        self._plans: list[_Plan] = []
        self._modules: list[nn.Module] = []

    def _attach(self, module: nn.Module, plan: _Plan) -> None:
        if module in _hooked:
            raise ValueError(f"{type(module).__name__} is already hooked by qsim; call remove() on its handle first")
        _hooked[module] = self
        self._modules.append(module)
        self._plans.append(plan)
        self._hooks.append(module.register_forward_pre_hook(functools.partial(_pre_hook, plan)))
        self._hooks.append(module.register_forward_hook(functools.partial(_post_hook, plan), always_call=True))
        if plan.spec.acc is not None:
            module.forward = functools.partial(_acc_forward, module, plan)
            self._forwards.append(module)

    def remove(self) -> None:
        """Detach every hook and restore every swapped parameter and forward; the model computes as before."""
        for hook in self._hooks:
            hook.remove()
        for plan in self._plans:
            plan.swap_out()
        for module in self._forwards:
            vars(module).pop("forward", None)
        for module in self._modules:
            _hooked.pop(module, None)
        self._hooks, self._plans, self._forwards, self._modules = [], [], [], []

    @contextlib.contextmanager
    def disabled(self, keep: nn.Module | None = None):
        """Within the block the model computes in float32 (hooks stay attached but pass through),
        except the module `keep`, if given, which stays quantized."""
        for plan, module in zip(self._plans, self._modules):
            plan.enabled = module is keep
        try:
            yield self
        finally:
            for plan in self._plans:
                plan.enabled = True

    def error_report(self, *args, **kwargs):
        """Per-module SQNR of the quantized model against float32 on one batch (qsim.nn.report)."""
        from qsim.nn.report import error_report

        return error_report(self, *args, **kwargs)

    def summary(self, console=None):
        """Print (and return) a rich table of which module got which formats."""
        from rich.console import Console
        from rich.table import Table

        specs = self.specs.values()
        shown = [f for f in ("weight", "bias", "input", "output", "grad_weight", "grad_bias", "grad_input",
                             "grad_output", "acc") if any(getattr(s, f) is not None for s in specs)]
        table = Table(title=f"qsim: {len(self.specs)} quantized modules")
        for column in ("module", "type", *shown, "rounding (fwd/bwd)"):
            table.add_column(column)
        modules = dict(self.model.named_modules())
        for name, spec in self.specs.items():
            cells = []
            for f in shown:
                fmt = getattr(spec, f)
                text = "" if fmt is None else fmt.name
                if f == "acc" and fmt is not None:
                    text += f" /{spec.chunk or 1}"
                if f == "weight" and spec.store_weights and fmt is not None:
                    text += " (stored)"
                cells.append(text)
            table.add_row(name, type(modules[name]).__name__, *cells, f"{spec.rounding}/{spec.backward_rounding}")
        (console or Console()).print(table)
        return table

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def __repr__(self) -> str:
        return f"QuantHandle({len(self.specs)} modules)"


def quantize_model(model: nn.Module, rules) -> QuantHandle:
    """Attach quantization to `model` by rules and return the handle that removes it.

    rules: (matcher, QuantSpec) pairs or a dict of them. A matcher is an nn.Module subclass (or a tuple of
    them; isinstance), or a glob on qualified module names ("features.*.conv"; '*' crosses dots). A
    wildcard pattern matches layers, not blocks: a module with children and no parameters of its own
    (Sequential, a transformer block) is matched by its type or its exact name. When several rules match
    a module, the last one wins, whole. A name pattern that matches nothing raises (it is a typo).
    A matched module with parameters of a type qsim does not know raises TypeError.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module; got {type(model).__name__}")
    rules = check_rules(rules)
    named = list(model.named_modules())
    chosen: dict[str, QuantSpec] = {}
    for i, (matcher, spec) in enumerate(rules):
        hits = [name for name, module in named if matches_rule(matcher, name, module)]
        if isinstance(matcher, str) and not hits:
            raise ValueError(f"rules[{i}]: the pattern {matcher!r} matches no module of the model")
        for name in hits:
            chosen[name] = spec

    modules = dict(named)
    handle = QuantHandle(model)
    plans: dict[str, _Plan] = {}
    delegated: dict[str, list[_Slot]] = {}
    for name, spec in chosen.items():
        module = modules[name]
        spec = _effective_spec(name, module, spec)
        parent_name, _, leaf = name.rpartition(".")
        parent = modules.get(parent_name) if name else None
        if isinstance(parent, nn.MultiheadAttention) and leaf == "out_proj":
            # MultiheadAttention uses out_proj's parameters without calling it: its hooks swap them.
            active = [f for f in ("input", "output", "grad_input", "grad_output", "acc") if getattr(spec, f) is not None]
            if active:
                raise ValueError(f"module {name!r}: MultiheadAttention reads out_proj's parameters without calling "
                                 f"out_proj, so its {', '.join(active)} cannot be quantized; give activation formats "
                                 f"to {parent_name!r} and only weight/bias formats to out_proj (a later rule "
                                 f"'*.out_proj' with those fields cleared overrides)")
            delegated.setdefault(parent_name, []).extend(_slots(module, spec))
        else:
            plan = _Plan(spec, _ACTIVATION_ARGS.get(type(module)), _slots(module, spec))
            if not plan.slots and spec.formats().keys() <= set(_PARAM_FIELDS):
                continue  # e.g. a weight-only rule on a ReLU: nothing applies
            plans[name] = plan
        if not spec.is_empty:
            handle.specs[name] = spec
    order = {name: i for i, (name, _) in enumerate(named)}
    handle.specs = dict(sorted(handle.specs.items(), key=lambda item: order[item[0]]))
    for parent_name, slots in delegated.items():
        plans.setdefault(parent_name, _Plan(QuantSpec(), _ACTIVATION_ARGS.get(nn.MultiheadAttention))).slots.extend(slots)
    try:
        for name, plan in plans.items():
            if plan.spec.store_weights:
                with torch.no_grad():  # round the stored weights now, so the model holds them from the start
                    plan.swap_in()
                plan.swap_out()
            handle._attach(modules[name], plan)
    except Exception:
        handle.remove()
        raise
    return handle
