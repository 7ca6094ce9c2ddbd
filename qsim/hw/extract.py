"""Workload extraction: the GEMM-shaped layers of a torch model, found by running it once.

Exports `workload(model, example_input, rules=None, precision=None, name=None) -> Workload`.

torch.fx traces the model and propagates shapes, which also finds functional calls (F.conv2d,
F.linear, torch.matmul / bmm / @). A model fx cannot trace (data-dependent control flow) falls back
to forward hooks on its Conv1d / Conv2d / Linear / MultiheadAttention modules, and the workload's
notes say so. nn.MultiheadAttention becomes its six GEMMs (projections, scores, context, output). Shapes
come from the tensors of the run, so padding="same", dilation and odd strides need no formulas.
"""
from __future__ import annotations

import dataclasses
import math
import operator

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from . import gate_masks
from .layers import Layer, Workload
from .precision import assign_precision

CONV_TYPES = (nn.Conv1d, nn.Conv2d)
MATMUL_FUNCTIONS = {torch.matmul, operator.matmul, torch.bmm, torch.mm}
SKIPPED_NOTE = "not modelled (no GEMM on the array): {}"


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _conv_layer(name: str, x_shape, y_shape, weight_shape, stride, padding, groups) -> Layer:
    """A Layer from the shapes of one conv call; Conv1d becomes a 1-row Conv2d."""
    if len(x_shape) == 3:  # (N, C, L) -> (N, C, 1, L)
        x_shape, y_shape = (*x_shape[:2], 1, x_shape[2]), (*y_shape[:2], 1, y_shape[2])
        weight_shape = (*weight_shape[:2], 1, weight_shape[2])
        stride, padding = (1, _pair(stride)[0]), (0, _pair(padding)[0] if not isinstance(padding, str) else 0)
    N, C, H, W = x_shape
    K, _, R, S = weight_shape
    padding = (0, 0) if isinstance(padding, str) else _pair(padding)
    return Layer(name=name, N=N, C=C, H=H, W=W, K=K, R=R, S=S, P=y_shape[2], Q=y_shape[3],
                 stride=_pair(stride), padding=padding, groups=groups, op="conv")


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


def _attention_layers(name: str, module: nn.MultiheadAttention, q_shape, k_shape) -> list[Layer]:
    """nn.MultiheadAttention as its six GEMMs: q/k/v projections, scores, context, output projection."""
    if len(q_shape) == 2:  # unbatched (L, E)
        q_shape, k_shape = (q_shape[0], 1, q_shape[1]), (k_shape[0], 1, k_shape[1])
    elif module.batch_first:
        q_shape, k_shape = (q_shape[1], q_shape[0], q_shape[2]), (k_shape[1], k_shape[0], k_shape[2])
    (L, B, E), (S, _, _) = q_shape, k_shape
    heads, d = module.num_heads, module.head_dim
    return [Layer.gemm(f"{name}.q_proj", L * B, E, E, op="linear"),
            Layer.gemm(f"{name}.k_proj", S * B, module.kdim, E, op="linear"),
            Layer.gemm(f"{name}.v_proj", S * B, module.vdim, E, op="linear"),
            Layer.gemm(f"{name}.scores", L, d, S, batch=B * heads, op="matmul"),
            Layer.gemm(f"{name}.context", L, S, d, batch=B * heads, op="matmul"),
            Layer.gemm(f"{name}.out_proj", L * B, E, E, op="linear")]


def _meta_shape(node):
    meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _arg(node, index: int, key: str, default):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(key, default)


def _trace_fx(model: nn.Module, inputs: tuple):
    """[(Layer, module or None)] in execution order, plus names of skipped leaf modules."""
    graph_module = gate_masks.symbolic_trace(model)
    with torch.no_grad():
        ShapeProp(graph_module).propagate(*inputs)
    found, skipped = [], []
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            module = graph_module.get_submodule(node.target)
            x, y = _meta_shape(node.args[0]) if node.args else None, _meta_shape(node)
            if isinstance(module, CONV_TYPES):
                found.append((_conv_layer(node.target, x, y, tuple(module.weight.shape), module.stride,
                                          module.padding, module.groups), module))
            elif isinstance(module, nn.Linear):
                found.append((_linear_layer(node.target, x, module.out_features), module))
            elif isinstance(module, nn.MultiheadAttention):
                q, k = _meta_shape(node.args[0]), _meta_shape(node.args[1] if len(node.args) > 1 else node.kwargs["key"])
                found += [(layer, module) for layer in _attention_layers(node.target, module, q, k)]
            elif isinstance(module, (nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose1d)):
                skipped.append(f"{node.target} ({type(module).__name__})")
        elif node.op == "call_function":
            if node.target in (F.conv1d, F.conv2d):
                x, w, y = _meta_shape(node.args[0]), _meta_shape(node.args[1]), _meta_shape(node)
                found.append((_conv_layer(node.name, x, y, w, _arg(node, 3, "stride", 1),
                                          _arg(node, 4, "padding", 0), _arg(node, 6, "groups", 1)), None))
            elif node.target is F.linear:
                x, w = _meta_shape(node.args[0]), _meta_shape(node.args[1])
                found.append((_linear_layer(node.name, x, w[0]), None))
            elif node.target in MATMUL_FUNCTIONS:
                found.append((_matmul_layer(node.name, _meta_shape(node.args[0]), _meta_shape(node.args[1])), None))
    return found, skipped


def _trace_hooks(model: nn.Module, inputs: tuple):
    found, handles = [], []

    def hook(name):
        def record(module, args, output):
            x = tuple(args[0].shape)
            if isinstance(module, nn.MultiheadAttention):
                found.extend((layer, module) for layer in _attention_layers(name, module, x, tuple(args[1].shape)))
                return
            if isinstance(module, CONV_TYPES):
                layer = _conv_layer(name, x, tuple(output.shape), tuple(module.weight.shape), module.stride,
                                    module.padding, module.groups)
            else:
                layer = _linear_layer(name, x, module.out_features)
            found.append((layer, module))
        return record

    attention_parts = {f"{name}.out_proj" for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}
    for name, module in model.named_modules():
        if isinstance(module, (*CONV_TYPES, nn.Linear, nn.MultiheadAttention)) and name not in attention_parts:
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return found


def _unique_names(found):
    """A module called more than once gives one layer per call: name, name#1, name#2, ..."""
    seen, out = {}, []
    for layer, module in found:
        count = seen.get(layer.name, 0)
        seen[layer.name] = count + 1
        out.append((dataclasses.replace(layer, name=f"{layer.name}#{count}") if count else layer, module))
    return out


def workload(model: nn.Module, example_input, rules=None, precision=None, name: str | None = None) -> Workload:
    """Layers of `model` on `example_input` with their shapes, MACs and operand bit widths.

    example_input: a tensor or a tuple of positional inputs; its first dimension is the batch.
    rules: quantize_model's (matcher, QuantSpec) pairs; precision: see qsim.hw.precision.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise TypeError("example_input must be a tensor or a tuple of tensors")
    was_training = model.training
    model.eval()
    notes = []
    recorder = gate_masks.Recorder(model)  # channel-gated convs: their measured masks ride on their layers
    try:
        try:
            found, skipped = _trace_fx(model, inputs)
            notes.append("traced with torch.fx (modules and functional conv/linear/matmul calls)")
        except Exception as err:  # fx cannot trace data-dependent control flow: fall back to hooks
            found, skipped = _trace_hooks(model, inputs), []
            notes.append(f"torch.fx could not trace the model ({type(err).__name__}); forward hooks on "
                         "Conv1d/Conv2d/Linear/MultiheadAttention modules were used, functional matmuls are not counted")
    finally:
        model.train(was_training)
        recorder.close()
    if skipped:
        notes.append(SKIPPED_NOTE.format(", ".join(skipped)))
    found = recorder.attach(_unique_names(found))
    layers = [layer for layer, _ in found]
    modules = {layer.name: module for layer, module in found if module is not None}
    layers = assign_precision(layers, precision=precision, rules=rules, modules=modules)
    batch = int(inputs[0].shape[0]) if inputs[0].dim() > 0 else 1
    return Workload(name or type(model).__name__, layers, tuple(notes), batch=batch)
