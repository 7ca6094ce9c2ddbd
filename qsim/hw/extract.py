"""Workload extraction: the GEMM-shaped layers of a torch model, found by running it once.

Exports `workload(model, example_input, rules=None, precision=None, name=None) -> Workload`.

One run of the model does it all. Forward hooks on every module that computes a GEMM (Conv1d/2d,
Linear, MultiheadAttention, RNN/LSTM/GRU and their cells) record each call, also inside modules that
torch.fx keeps whole (nn.TransformerEncoder) and for keyword calls; torch.fx runs the model node by node
and adds the functional calls (F.conv1d/2d, F.linear, matmul/bmm/@, F.scaled_dot_product_attention,
torch.einsum), named under the module that makes them ("blocks.3.matmul"). A model fx cannot trace
(data-dependent control flow) runs plainly, with the hooks alone, and its notes say so. Shapes come
from the tensors of the run, so padding="same", dilation and odd strides need no formulas.

Decompositions: nn.MultiheadAttention is its six GEMMs (projections, scores, context, output); an
attention call its two (scores, context); an RNN per layer and direction one input GEMM over all time
steps and one recurrent GEMM per step (plus LSTM's projection); einsum its pairwise contractions, left
to right as torch evaluates them. torch's fused transformer fast path is switched off for the run, so
its modules are seen. torch.utils.flop_counter counts the same run: where it sees FLOPs the workload
does not hold, the notes say how many and in which ops ("not modelled"), never silently.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import operator
import string

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode

from . import gate_masks
from .layers import Layer, Workload
from .precision import assign_precision

CONV_TYPES = (nn.Conv1d, nn.Conv2d)
GEMM_MODULES = (*CONV_TYPES, nn.Linear, nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase)
UNMODELLED_MODULES = (nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
MATMUL_FUNCTIONS = {torch.matmul, operator.matmul, torch.bmm, torch.mm}
MATMUL_METHODS = {"matmul", "__matmul__", "bmm", "mm"}
SKIPPED_NOTE = "not modelled (no GEMM on the array): {}"
GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1, nn.LSTMCell: 4, nn.GRUCell: 3, nn.RNNCell: 1}
COUNTER_TOLERANCE = 0.01  # relative gap between torch's FLOP counter and the workload that earns a note


def _join(prefix: str, name: str) -> str:
    """A qualified name under `prefix` (the root module's name is '')."""
    return f"{prefix}.{name}" if prefix else name


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _conv_layer(name: str, x_shape, y_shape, weight_shape, stride, padding, groups, dilation=1) -> Layer:
    """A Layer from the shapes of one conv call; Conv1d becomes a 1-row Conv2d. padding='same' is
    recovered from the shapes (the total padding split as torch splits it, the smaller half first)."""
    if len(x_shape) == 3:  # (N, C, L) -> (N, C, 1, L)
        x_shape, y_shape = (*x_shape[:2], 1, x_shape[2]), (*y_shape[:2], 1, y_shape[2])
        weight_shape = (*weight_shape[:2], 1, weight_shape[2])
        stride, dilation = (1, _pair(stride)[0]), (1, _pair(dilation)[0])
        padding = padding if isinstance(padding, str) else (0, _pair(padding)[0])
    N, C, H, W = x_shape
    K, _, R, S = weight_shape
    stride, dilation = _pair(stride), _pair(dilation)
    if padding == "same":
        padding = tuple((d * (k - 1)) // 2 for d, k in zip(dilation, (R, S)))
    elif isinstance(padding, str):  # 'valid'
        padding = (0, 0)
    return Layer(name=name, N=N, C=C, H=H, W=W, K=K, R=R, S=S, P=y_shape[2], Q=y_shape[3],
                 stride=stride, padding=_pair(padding), groups=groups, dilation=dilation, op="conv")


def _linear_layer(name: str, x_shape, out_features: int) -> Layer:
    rows = math.prod(x_shape[:-1])
    return Layer.gemm(name, rows, x_shape[-1], out_features, op="linear")


def _matmul_layer(name: str, a_shape, b_shape) -> Layer:
    """(..., m, k) @ (..., k, n): broadcast leading dims become independent GEMMs (groups)."""
    a_shape, b_shape = list(a_shape), list(b_shape)
    if len(a_shape) == 1:
        a_shape = [1, *a_shape]
    if len(b_shape) == 1:
        b_shape = [*b_shape, 1]
    m, k, n = a_shape[-2], a_shape[-1], b_shape[-1]
    batch_a, batch_b = a_shape[:-2], b_shape[:-2]
    if not batch_b:  # a shared right operand: the leading dims of a are just more rows
        return Layer.gemm(name, m * math.prod(batch_a), k, n, op="matmul")
    batch = math.prod(torch.broadcast_shapes(tuple(batch_a), tuple(batch_b)))
    return Layer.gemm(name, m, k, n, batch=batch, op="matmul")


def _sdpa_layers(name: str, q_shape, k_shape, v_shape) -> list[Layer]:
    """scaled_dot_product_attention: scores (L x E @ E x S) and context (L x S @ S x Ev) per batch and head
    (q's leading dims: grouped-query attention shares k and v across q's heads)."""
    batch, (L, E), S, Ev = math.prod(q_shape[:-2]), q_shape[-2:], k_shape[-2], v_shape[-1]
    return [Layer.gemm(_join(name, "scores"), L, E, S, batch=batch, op="matmul"),
            Layer.gemm(_join(name, "context"), L, S, Ev, batch=batch, op="matmul")]


def _einsum_subscripts(equation: str, shapes) -> tuple[list[str], str]:
    """Each operand's subscripts and the output's, with '...' spelled out as letters the equation does not use."""
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum {equation!r}: {len(terms)} operand subscripts for {len(shapes)} operands")
    spare = "".join(c for c in string.ascii_letters if c not in equation)
    # Each operand's '...' stands for its dims beyond its letters, aligned to the right as broadcasting aligns them.
    spans = [len(shape) - len(term.replace("...", "")) for term, shape in zip(terms, shapes)]
    fill = spare[:max(spans, default=0)]
    terms = [term.replace("...", fill[len(fill) - span:]) for term, span in zip(terms, spans)]
    if not arrow:  # implicit output: the broadcast dims, then the letters used once, in alphabetical order
        counts = {c: "".join(terms).count(c) for c in "".join(terms)}
        output = "..." + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in fill))
    return terms, output.replace("...", fill)


def _einsum_layers(name: str, equation: str, shapes) -> list[Layer]:
    """torch.einsum as the pairwise contractions it evaluates, left to right: for operands a and b,
    batch = indices in both that survive, k = indices in both that are summed, m / n = indices only in
    a / only in b that survive (an index only in one operand and summed away is reduced before the GEMM)."""
    terms, output = _einsum_subscripts(equation, shapes)
    sizes = {}
    for term, shape in zip(terms, shapes):
        for c, n in zip(term, shape):
            sizes[c] = max(sizes.get(c, 1), n)
    size = lambda letters: math.prod(sizes[c] for c in letters)  # noqa: E731
    layers, left = [], terms[0]
    for i, right in enumerate(terms[1:], start=1):
        later = set(output).union(*terms[i + 1:])
        keep = lambda c: c in later  # noqa: E731
        batch = [c for c in left if c in right and keep(c)]
        k = [c for c in left if c in right and not keep(c)]
        m = [c for c in left if c not in right and keep(c)]
        n = [c for c in right if c not in left and keep(c)]
        layers.append(Layer.gemm(name if len(terms) == 2 else _join(name, str(i)), size(m), size(k), size(n),
                                 batch=size(batch), op="matmul"))
        left = "".join(batch + m + n)
    return layers


def _attention_layers(name: str, module: nn.MultiheadAttention, q_shape, k_shape) -> list[tuple[Layer, str | None]]:
    """nn.MultiheadAttention as its six GEMMs, each with the module whose quantization rule governs its
    operands: the projections read the attention's inputs and weights, out_proj its own weight, and the
    scores and context multiply tensors made inside the attention's forward (no rule reaches them)."""
    if len(q_shape) == 2:  # unbatched (L, E)
        q_shape, k_shape = (q_shape[0], 1, q_shape[1]), (k_shape[0], 1, k_shape[1])
    elif module.batch_first:
        q_shape, k_shape = (q_shape[1], q_shape[0], q_shape[2]), (k_shape[1], k_shape[0], k_shape[2])
    (L, B, E), (S, _, _) = q_shape, k_shape
    heads, d = module.num_heads, module.head_dim
    return [(Layer.gemm(_join(name, "q_proj"), L * B, E, E, op="linear"), name),
            (Layer.gemm(_join(name, "k_proj"), S * B, module.kdim, E, op="linear"), name),
            (Layer.gemm(_join(name, "v_proj"), S * B, module.vdim, E, op="linear"), name),
            (Layer.gemm(_join(name, "scores"), L, d, S, batch=B * heads, op="matmul"), None),
            (Layer.gemm(_join(name, "context"), L, S, d, batch=B * heads, op="matmul"), None),
            (Layer.gemm(_join(name, "out_proj"), L * B, E, E, op="linear"), _join(name, "out_proj"))]


def _rnn_layers(name: str, module: nn.RNNBase, x) -> list[Layer]:
    """Per layer and direction: the input GEMM over all time steps at once (as torch computes it), the
    recurrent GEMM once per step (`batch` = steps), and LSTM's projection per step; named after the weights
    (ih_l0, hh_l0_reverse, hr_l0)."""
    if isinstance(x, PackedSequence):  # steps of varying batch: the exact rows, one GEMM per kind
        rows, steps, batch = x.data.shape[0], 1, x.data.shape[0]
    else:
        shape = x.shape if x.dim() == 3 else (x.shape[0], 1, x.shape[1])
        steps, batch = (shape[1], shape[0]) if module.batch_first and x.dim() == 3 else (shape[0], shape[1])
        rows = steps * batch
    gates, H, proj = GATES[module.mode] * module.hidden_size, module.hidden_size, module.proj_size
    out_h, directions = proj or H, 1 + module.bidirectional
    layers = []
    for level in range(module.num_layers):
        for direction in range(directions):
            suffix = f"l{level}" + ("_reverse" if direction else "")
            in_features = module.input_size if level == 0 else out_h * directions
            layers.append(Layer.gemm(_join(name, f"ih_{suffix}"), rows, in_features, gates, op="linear"))
            layers.append(Layer.gemm(_join(name, f"hh_{suffix}"), batch, out_h, gates, batch=steps, op="linear"))
            if proj:
                layers.append(Layer.gemm(_join(name, f"hr_{suffix}"), batch, H, proj, batch=steps, op="linear"))
    return layers


def _cell_layers(name: str, module: nn.RNNCellBase, x) -> list[Layer]:
    rows, gates = (x.shape[0] if x.dim() == 2 else 1), GATES[type(module)] * module.hidden_size
    return [Layer.gemm(_join(name, "ih"), rows, module.input_size, gates, op="linear"),
            Layer.gemm(_join(name, "hh"), rows, module.hidden_size, gates, op="linear")]


def _module_layers(name: str, module: nn.Module, args, kwargs, output) -> list[tuple[Layer, str | None]]:
    """The layers of one call of a GEMM module, each with the name of the module that governs its operands."""
    if isinstance(module, nn.MultiheadAttention):
        query = args[0] if args else kwargs["query"]
        key = args[1] if len(args) > 1 else kwargs["key"]
        return _attention_layers(name, module, tuple(query.shape), tuple(key.shape))
    x = args[0] if args else next(iter(kwargs.values()))
    if isinstance(module, CONV_TYPES):
        layers = [_conv_layer(name, tuple(x.shape), tuple(output.shape), tuple(module.weight.shape), module.stride,
                              module.padding, module.groups, module.dilation)]
    elif isinstance(module, nn.Linear):
        layers = [_linear_layer(name, tuple(x.shape), module.out_features)]
    elif isinstance(module, nn.RNNBase):
        layers = _rnn_layers(name, module, x)
    else:
        layers = _cell_layers(name, module, x)
    return [(layer, name) for layer in layers]


@contextlib.contextmanager
def _module_hooks(model: nn.Module, found: list, skipped: list):
    """Records every call of a GEMM module of `model` into `found` (and of an unmodelled one into `skipped`)."""
    def hook(name):
        def record(module, args, kwargs, output):
            if isinstance(module, UNMODELLED_MODULES):
                skipped.append(f"{name} ({type(module).__name__})")
            else:
                found.extend(_module_layers(name, module, args, kwargs, output))
        return record

    handles = [module.register_forward_hook(hook(name), with_kwargs=True) for name, module in model.named_modules()
               if isinstance(module, (*GEMM_MODULES, *UNMODELLED_MODULES))]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # fused kernels would skip the submodules' hooks
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for handle in handles:
            handle.remove()


def _scope(node) -> str:
    """The qualified name of the module whose forward made this fx node ('' at the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def _function_layers(node, args, kwargs, result) -> list[Layer]:
    """The layers of one functional fx node, from its real arguments and result."""
    scope = _scope(node)
    base = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    name = _join(scope, base)
    arg = lambda i, key, default=None: args[i] if len(args) > i else kwargs.get(key, default)  # noqa: E731
    target = node.target
    if node.op == "call_method":
        return [_matmul_layer(name, tuple(args[0].shape), tuple(args[1].shape))] if target in MATMUL_METHODS else []
    if node.op != "call_function":
        return []
    if target in (F.conv1d, F.conv2d):
        x, w = args[0], args[1]
        return [_conv_layer(name, tuple(x.shape), tuple(result.shape), tuple(w.shape), arg(3, "stride", 1),
                            arg(4, "padding", 0), arg(6, "groups", 1), arg(5, "dilation", 1))]
    if target is F.linear:
        return [_linear_layer(name, tuple(args[0].shape), args[1].shape[0])]
    if target in MATMUL_FUNCTIONS:
        return [_matmul_layer(name, tuple(args[0].shape), tuple(args[1].shape))]
    if target is F.scaled_dot_product_attention:
        q, k, v = (arg(i, key) for i, key in enumerate(("query", "key", "value")))
        return _sdpa_layers(name, tuple(q.shape), tuple(k.shape), tuple(v.shape))
    if target is torch.einsum:
        operands = args[1:] if len(args) > 2 or not isinstance(args[1], (list, tuple)) else args[1]
        return _einsum_layers(name, args[0], [tuple(t.shape) for t in operands])
    return []


class _Recorder(torch.fx.Interpreter):
    """Runs the traced model node by node and records the layers of each functional call as it runs."""

    def __init__(self, graph_module, found: list):
        super().__init__(graph_module)
        self.found = found

    def run_node(self, node):
        result = super().run_node(node)
        if node.op in ("call_function", "call_method"):
            args, kwargs = self.fetch_args_kwargs_from_env(node)
            self.found.extend((layer, None) for layer in _function_layers(node, args, kwargs, result))
        return result


class _Tracer(torch.fx.Tracer):
    """fx's tracer, keeping every GEMM module whole (also subclasses defined outside torch.nn, which fx
    would trace into): the hooks record it, so its inner calls must not be recorded again."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        whole = isinstance(module, (*GEMM_MODULES, *UNMODELLED_MODULES))
        return whole or super().is_leaf_module(module, qualified_name)


def _run(model: nn.Module, inputs: tuple, found: list, skipped: list, counter: FlopCounterMode) -> str:
    """Runs the model once, recording its layers; returns the note that says how."""
    try:
        graph_module = torch.fx.GraphModule(model, _Tracer().trace(model))
    except Exception as err:  # fx cannot trace data-dependent control flow: run the model plainly
        with _module_hooks(model, found, skipped), counter:
            model(*inputs)
        return (f"torch.fx could not trace the model ({type(err).__name__}); GEMM modules were recorded by hooks, "
                "functional matmuls/convs are not counted")
    # The traced copy shares the model's submodules: hooks on the model see their calls.
    with _module_hooks(model, found, skipped), counter:
        _Recorder(graph_module, found).run(*inputs)
    return "traced with torch.fx (GEMM modules, and functional conv/linear/matmul/attention/einsum calls)"


def _counter_note(counter: FlopCounterMode, layers) -> str | None:
    """A "not modelled" note when torch's FLOP counter sees more than the workload's 2·MACs."""
    counted, modelled = counter.get_total_flops(), 2 * sum(layer.macs for layer in layers)
    if counted <= modelled * (1 + COUNTER_TOLERANCE):
        return None
    ops = sorted(counter.get_flop_counts().get("Global", {}).items(), key=lambda item: -item[1])
    listed = ", ".join(f"{getattr(op, '__name__', op)} {flops / 1e6:.3g} MFLOP" for op, flops in ops)
    return (f"not modelled: {(counted - modelled) / 1e6:.4g} MFLOP of the {counted / 1e6:.4g} MFLOP that "
            f"torch.utils.flop_counter counts ({listed})")


def _unique_names(found):
    """A module called more than once gives one layer per call: name, name#1, name#2, ..."""
    seen, out = {}, []
    for layer, owner in found:
        count = seen.get(layer.name, 0)
        seen[layer.name] = count + 1
        out.append((dataclasses.replace(layer, name=f"{layer.name}#{count}") if count else layer, owner))
    return out


def workload(model: nn.Module, example_input, rules=None, precision=None, name: str | None = None) -> Workload:
    """Layers of `model` on `example_input` with their shapes, MACs and operand bit widths.

    example_input: a tensor or a tuple of positional inputs; its first dimension is the batch.
    rules: quantize_model's (matcher, QuantSpec) pairs, read as quantize_model reads them: a layer takes
    the formats of the module that computes it, and operands no hook reaches (functional calls,
    products inside an attention) stay float32. precision: see qsim.hw.precision.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise TypeError("example_input must be a tensor or a tuple of tensors")
    specs = None
    if rules is not None:
        from qsim.nn.model import module_specs  # quantize_model's own reading of the rules
        specs = module_specs(model, rules)
    was_training = model.training
    model.eval()
    found, skipped, counter = [], [], FlopCounterMode(display=False)
    recorder = gate_masks.Recorder(model)  # channel-gated convs: their measured masks ride on their layers
    try:
        with torch.no_grad():
            notes = [_run(model, inputs, found, skipped, counter)]
    finally:
        model.train(was_training)
        recorder.close()
    if skipped:
        notes.append(SKIPPED_NOTE.format(", ".join(dict.fromkeys(skipped))))
    found = recorder.attach(_unique_names(found), dict(model.named_modules()))
    layers = [layer for layer, _ in found]
    note = _counter_note(counter, layers)
    if note:
        notes.append(note)
    layer_specs = None if specs is None else {layer.name: specs.get(owner) for layer, owner in found}
    layers = assign_precision(layers, precision=precision, specs=layer_specs)
    batch = int(inputs[0].shape[0]) if inputs[0].dim() > 0 else 1
    return Workload(name or type(model).__name__, layers, tuple(notes), batch=batch)
