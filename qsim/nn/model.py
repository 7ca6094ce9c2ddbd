"""quantize_model: per-module quantization of an ordinary torch model, attached by rules and removable.

Exports quantize_model, QuantHandle (remove, summary, disabled, error_report), remove_quantization,
is_quantized, register_module_type and SUPPORTED_TYPES.

How it works, per hooked module:
  forward pre-hook  rounds the floating-point inputs (and marks their gradient for rounding), and swaps
                    each parameter for a copy quantized on the fly; the float32 master stays the
                    Parameter the optimizer holds (store_weights=True instead rounds the master in place).
  forward hook      (always called, also when forward raises) puts the Parameters back and rounds the
                    outputs and, through qsim.nn.quantizer, the gradient flowing back into them.
  forward           replaced only where the spec asks for a low-precision accumulator (Linear, Conv).
Weight, bias and their gradients are quantized inside autograd here, unlike QPyTorch where W and G are
quantized by the optimizer wrapper (qsim.optim.LowPrecision does that too, for recipes that store them).
The hooks are found from the modules themselves (they are qsim's functions), so a deep copy or a pickled
copy of a quantized model, which carries them along, can be cleaned with remove_quantization(copy).
Each place a tensor is rounded checks its first tensor for values flushed to zero (FlushWarning).
"""
from __future__ import annotations

import contextlib
import functools
import re
import warnings
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from qsim.quant import quantize_
from qsim.nn import functional as qF
from qsim.nn.quantizer import FlushCheck, quantize_fb, round_gradient
from qsim.nn.spec import QuantSpec

# Module types whose forward reads its own parameters as attributes, so swapping them works.
SUPPORTED_TYPES: list[type] = [
    nn.Linear, nn.Bilinear, _ConvNd, nn.Embedding, nn.EmbeddingBag, nn.RNNBase, nn.RNNCellBase,
    nn.MultiheadAttention, _NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.PReLU,
]
_ACC_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Types with parameters but no matrix product: an accumulator format does not apply to them.
_NO_GEMM_TYPES = (_NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.Embedding, nn.EmbeddingBag, nn.PReLU)
# Activations among the arguments (leading positional ones, keywords by name) and the outputs (leading ones);
# the rest (attention masks, the attention weights returned for inspection) are left alone. None: all.
_ACTIVATION_ARGS = {nn.MultiheadAttention: 3}
_ACTIVATION_KWARGS = {nn.MultiheadAttention: ("query", "key", "value")}
_ACTIVATION_OUTPUTS = {nn.MultiheadAttention: 1}
_PARAM_FIELDS = ("weight", "bias", "grad_weight", "grad_bias", "acc", "chunk", "store_weights")
_UNREACHABLE_IN_MHA = ("input", "grad_input")  # out_proj's input is internal to MultiheadAttention's forward
_PLAIN = (torch.Tensor, nn.Parameter)  # tensors taken without the walk of _map_floats (subclasses take it)


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
    checks: tuple[FlushCheck, FlushCheck]

    def value(self) -> torch.Tensor:
        """What forward should see: the master rounded (in place when stored) and its gradient hook."""
        if self.store:
            with torch.no_grad():
                quantize_(self.master, self.fmt, self.rounding)
            return quantize_fb(self.master, None, self.grad_fmt, self.rounding, self.backward_rounding,
                               checks=self.checks)
        return quantize_fb(self.master, self.fmt, self.grad_fmt, self.rounding, self.backward_rounding, self.scaling,
                           self.checks)

    @property
    def swaps(self) -> bool:
        return not self.store or self.grad_fmt is not None


@dataclass
class _Plan:
    """Everything the hooks of one module need; holds no reference to the hooked module itself."""

    name: str
    module_type: type
    spec: QuantSpec
    slots: list[_Slot] = field(default_factory=list)
    enabled: bool = True  # False: the module computes in float32 (error reports compare the two)
    checks: dict[str, FlushCheck] = field(init=False)

    def __post_init__(self):
        where = f"module {self.name!r}"
        self.checks = {role: FlushCheck(f"{where} {role}") for role in ("input", "output", "grad_input", "grad_output")}
        self._built = None

    def _tensor_fns(self) -> tuple:
        """(spec, input fn, output fn): what rounds one input and one output tensor (None: nothing to do),
        built once per spec (a frozen value), not on every call of the hooks."""
        s = self.spec
        if self._built is None or self._built[0] is not s:
            input_fn = output_fn = None
            if s.input is not None or s.grad_input is not None:
                input_fn = functools.partial(
                    quantize_fb, forward=s.input, backward=s.grad_input, forward_rounding=s.rounding,
                    backward_rounding=s.backward_rounding, scaling=s.scaling,
                    checks=(self.checks["input"], self.checks["grad_input"]))
            if s.output is None and s.grad_output is not None:
                output_fn = functools.partial(round_gradient, fmt=s.grad_output, rounding=s.backward_rounding,
                                              scaling=s.scaling, check=self.checks["grad_output"])
            elif s.output is not None:
                output_fn = functools.partial(
                    quantize_fb, forward=s.output, backward=s.grad_output, forward_rounding=s.rounding,
                    backward_rounding=s.backward_rounding, scaling=s.scaling,
                    checks=(self.checks["output"], self.checks["grad_output"]))
            self._built = (s, input_fn, output_fn)
        return self._built

    def quantize_inputs(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        fn = self._tensor_fns()[1]
        if fn is None:
            return args, kwargs
        if len(args) == 1 and not kwargs and type(args[0]) in _PLAIN:  # a layer's one input: no walk of nests
            x = args[0]
            return ((fn(x) if x.is_floating_point() else x),), kwargs
        n = _ACTIVATION_ARGS.get(self.module_type, len(args))
        names = _ACTIVATION_KWARGS.get(self.module_type, kwargs)
        return (tuple(_map_floats(a, fn) for a in args[:n]) + tuple(args[n:]),
                {k: _map_floats(v, fn) if k in names else v for k, v in kwargs.items()})

    def quantize_outputs(self, output):
        fn = self._tensor_fns()[2]
        if fn is None:
            return output
        if type(output) in _PLAIN:
            return fn(output) if output.is_floating_point() else output
        n = _ACTIVATION_OUTPUTS.get(self.module_type)
        if n is not None and isinstance(output, tuple):
            return (*_map_floats(output[:n], fn), *output[n:])
        return _map_floats(output, fn)

    def swap_in(self) -> None:
        if not self.slots:  # activations only (most norm and activation rules)
            return
        for slot in self.slots:
            value = slot.value()
            if slot.swaps:
                slot.owner._parameters[slot.name] = value
        _refresh_flat_weights(self.slots)

    def swap_out(self) -> None:
        if not self.slots:
            return
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


def _pre_hook(plan: _Plan, module, args, kwargs):
    if not plan.enabled:
        return None
    args, kwargs = plan.quantize_inputs(args, kwargs)
    plan.swap_in()
    return args, kwargs


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


def _out_proj_spec(name: str, spec: QuantSpec) -> QuantSpec:
    """The part of a rule that can apply to a MultiheadAttention's out_proj (see quantize_model); an accumulator
    was refused already (out_proj is not a plain Linear)."""
    dropped = [f for f in _UNREACHABLE_IN_MHA if getattr(spec, f) is not None]
    if dropped:
        warnings.warn(f"qsim: module {name!r}: MultiheadAttention feeds out_proj inside its own forward, so "
                      f"out_proj's {' and '.join(dropped)} formats are not applied (its weights and output are)",
                      stacklevel=3)
        spec = spec.replace(**dict.fromkeys(dropped))
    return spec


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


def _slots(owner: nn.Module, owner_name: str, spec: QuantSpec) -> list[_Slot]:
    slots = []
    for pname, param in owner.named_parameters(recurse=False):
        role = "bias" if "bias" in pname else "weight"
        fmt, grad_fmt = getattr(spec, role), getattr(spec, f"grad_{role}")
        if fmt is None and grad_fmt is None:
            continue
        where = f"module {owner_name!r} {pname}"
        slots.append(_Slot(owner, pname, param, fmt, grad_fmt, spec.rounding, spec.backward_rounding,
                           spec.store_weights and fmt is not None, spec.scaling,
                           (FlushCheck(where), FlushCheck(f"{where} gradient"))))
    return slots


def _qsim_hooks(module: nn.Module):
    """(hook dict, key, plan) of each qsim hook on `module`, read from the module itself."""
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        for key, hook in list(hooks.items()):
            if isinstance(hook, functools.partial) and hook.func in (_pre_hook, _post_hook):
                yield hooks, key, hook.args[0]


def is_quantized(model: nn.Module) -> bool:
    """Does any module of `model` carry qsim's quantization hooks?"""
    return any(next(_qsim_hooks(m), None) is not None for m in model.modules())


def remove_quantization(model: nn.Module) -> int:
    """Detach qsim's hooks from every module of `model` and restore what they swapped; returns how many
    modules were quantized. Works without the handle, e.g. on a copy.deepcopy or a torch.save/torch.load
    copy of a quantized model (the copy carries the hooks, but the handle only knows the original)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module; got {type(model).__name__}")
    count = 0
    for module in model.modules():
        found = list(_qsim_hooks(module))
        for hooks, key, plan in found:
            del hooks[key]
            module._forward_hooks_always_called.pop(key, None)
            module._forward_pre_hooks_with_kwargs.pop(key, None)
            plan.swap_out()
        forward = vars(module).get("forward")
        if isinstance(forward, functools.partial) and forward.func is _acc_forward:
            del module.forward
        count += bool(found)
    return count


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
        self._modules.append(module)
        self._plans.append(plan)
        self._hooks.append(module.register_forward_pre_hook(functools.partial(_pre_hook, plan), with_kwargs=True))
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
            table.add_column(column, overflow="fold")
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


def _is_out_proj(name: str, modules: dict) -> bool:
    parent_name, _, leaf = name.rpartition(".")
    return leaf == "out_proj" and bool(name) and isinstance(modules.get(parent_name), nn.MultiheadAttention)


def module_specs(model: nn.Module, rules) -> dict[str, QuantSpec]:
    """What quantize_model applies to each module of `model` under `rules`: the last matching rule's spec,
    restricted to what can apply to the module. Shared with qsim.hw.workload, so both read rules alike."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module; got {type(model).__name__}")
    named = list(model.named_modules())
    chosen: dict[str, QuantSpec] = {}
    for i, (matcher, spec) in enumerate(check_rules(rules)):
        hits = [name for name, module in named if matches_rule(matcher, name, module)]
        if isinstance(matcher, str) and not hits:
            raise ValueError(f"rules[{i}]: the pattern {matcher!r} matches no module of the model")
        for name in hits:
            chosen[name] = spec
    modules = dict(named)
    specs = {}
    for name, spec in chosen.items():
        spec = _effective_spec(name, modules[name], spec)
        specs[name] = _out_proj_spec(name, spec) if _is_out_proj(name, modules) else spec
    return specs


def quantize_model(model: nn.Module, rules, *, replace: bool = False) -> QuantHandle:
    """Attach quantization to `model` by rules and return the handle that removes it.

    rules: (matcher, QuantSpec) pairs or a dict of them. A matcher is an nn.Module subclass (or a tuple of
    them; isinstance), or a glob on qualified module names ("features.*.conv"; '*' crosses dots). A
    wildcard pattern matches layers, not blocks: a module with children and no parameters of its own
    (Sequential, a transformer block) is matched by its type or its exact name. When several rules match
    a module, the last one wins, whole. A name pattern that matches nothing raises (it is a typo).
    A matched module with parameters of a type qsim does not know raises TypeError.
    nn.MultiheadAttention reads out_proj's parameters without calling out_proj: a rule on out_proj applies its
    weight/bias formats where the attention reads them and its output formats to the attention's output
    (with the attention's own rule, if it has one, deciding rounding and scaling);
    its input formats cannot reach the attention's internal context and are dropped with a warning.
    A model that is already quantized (also a copy of one) raises, unless replace=True removes the old hooks.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module; got {type(model).__name__}")
    if is_quantized(model):
        if not replace:
            raise ValueError("model: already quantized by qsim (its modules carry qsim hooks, perhaps copied from "
                             "a quantized model); call remove() on its handle or qsim.nn.remove_quantization(model) "
                             "first, or pass replace=True")
        remove_quantization(model)
    named = list(model.named_modules())
    modules = dict(named)
    handle = QuantHandle(model)
    plans: dict[str, _Plan] = {}
    delegated: dict[str, tuple[list[_Slot], QuantSpec]] = {}
    for name, spec in module_specs(model, rules).items():
        module = modules[name]
        if _is_out_proj(name, modules):
            delegated[name.rpartition(".")[0]] = (_slots(module, name, spec), spec)
        else:
            plan = _Plan(name, type(module), spec, _slots(module, name, spec))
            if not plan.slots and spec.formats().keys() <= set(_PARAM_FIELDS):
                continue  # e.g. a weight-only rule on a ReLU: nothing applies
            plans[name] = plan
        if not spec.is_empty:
            handle.specs[name] = spec
    order = {name: i for i, (name, _) in enumerate(named)}
    handle.specs = dict(sorted(handle.specs.items(), key=lambda item: order[item[0]]))
    for parent_name, (slots, spec) in delegated.items():
        # The attention's output is out_proj's output: out_proj's output formats apply to it unless the
        # attention's own rule gives some.
        outputs = dict(output=spec.output, grad_output=spec.grad_output)
        plan = plans.get(parent_name)
        if plan is None:
            plan = plans[parent_name] = _Plan(parent_name, nn.MultiheadAttention, QuantSpec(
                **outputs, rounding=spec.rounding, backward_rounding=spec.backward_rounding, scaling=spec.scaling))
        elif plan.spec.output is None and plan.spec.grad_output is None:
            plan.spec = plan.spec.replace(**outputs)
        plan.slots.extend(slots)
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
