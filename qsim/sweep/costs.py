"""Costs of a precision configuration, computed from the model's shapes and the formats' bit widths.

Exports `LayerProfile` / `ModelProfile` (what a cost needs to know about a model: parameters, the
activations each weight layer keeps, MACs), `profile_model` (measures them with forward hooks),
`Cost` (a named cost with its unit) and the memory and bit-operation costs below, plus
`DEFAULT_COSTS`. Costs are pure functions of (profile, config), so a sweep knows the cost of every
configuration before training any of them; the budgeted search relies on that.

How one training step is counted (batch size B, per weight layer l with group g(l)):
    weights          sum_l params_l * bits(weight, g(l)); parameters outside weight layers stay fp32
    master weights   sum_l params_l * bits(master_weight)  (0 when there is no separate master copy)
    activations      B * sum_l input_elements_l * bits(activation, g(l)): the input of each weight
                     layer, which autograd keeps to compute that layer's weight gradient. Outputs of
                     element-wise layers (ReLU, pooling) and the errors of the backward pass are
                     transient in this count; the input batch of the first layer is counted.
    gradients        sum_l params_l * bits(gradient)
    optimizer state  n_states * sum_l params_l * bits(optimizer_state) (SGD with momentum: 1, Adam: 2)
    bit operations   sum_l MACs_l * bits(weight) * bits(activation) per inference sample (the
                     bit-ops measure of AIMET and HAWQ). The accumulator format does not change it.
    energy           `energy_per_inference_uj`: qsim.hw's systolic-array simulation of one inference
                     with the configuration's operand widths and the accelerator's energy table.
A role missing from the configuration is fp32 (32 bits).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from .space import FULL_PRECISION_BITS, Config

BITS_PER_KIB = 8 * 1024


@functools.lru_cache(maxsize=None)
def format_bits(spec: str | None) -> float:
    """Storage bits per element of a format spec (qsim.formats.get(spec).bits_per_element); None is fp32."""
    if spec is None:
        return FULL_PRECISION_BITS
    from qsim import formats
    return float(formats.get(spec).bits_per_element)


@dataclass(frozen=True)
class LayerProfile:
    """One weight layer (a Conv or Linear module): sizes per inference sample; `kind` is the type name."""

    name: str
    kind: str
    params: int
    input_elements: int
    macs: int


@dataclass(frozen=True)
class ModelProfile:
    """The shapes a cost needs; `other_params` counts parameters outside weight layers (kept in fp32)."""

    layers: tuple[LayerProfile, ...]
    batch_size: int
    optimizer_states: int = 1
    other_params: int = 0

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers) + self.other_params


def profile_model(model, example_input, batch_size: int, optimizer_states: int = 1) -> ModelProfile:
    """Run one forward pass on `example_input` (a batch of one sample) and record every Conv/Linear layer.

    MACs per sample: Linear out_elements * in_features; ConvNd out_elements * (in_channels/groups * kernel)."""
    import torch

    if example_input.shape[0] != 1:
        raise ValueError(f"example_input: expected a batch of one sample, got shape {tuple(example_input.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
    weight_types = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    records, handles = [], []

    def hook(name, module, inputs, output):
        macs_per_output = module.in_features if isinstance(module, torch.nn.Linear) else module.weight[0].numel()
        params = sum(p.numel() for p in module.parameters(recurse=False))
        records.append(LayerProfile(name, type(module).__name__, params, inputs[0].numel(),
                                    output.numel() * macs_per_output))

    for name, module in model.named_modules():
        if isinstance(module, weight_types):
            handles.append(module.register_forward_hook(functools.partial(hook, name)))
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    layer_params = sum(r.params for r in records)
    total = sum(p.numel() for p in model.parameters())
    return ModelProfile(tuple(records), batch_size, optimizer_states, total - layer_params)


@dataclass(frozen=True)
class Cost:
    """A named cost: fn(profile, config) -> float in `unit`; `label` names it on a plot axis and
    `doc` says what it counts."""

    name: str
    unit: str
    fn: Callable[[ModelProfile, Config], float]
    label: str
    doc: str

    def __call__(self, profile: ModelProfile, config: Config) -> float:
        return float(self.fn(profile, config))


def _layer_bits(config: Config, role: str, layer: LayerProfile) -> float:
    return format_bits(config.get(role, config.group_of(layer.name, layer.kind)))


def _per_parameter_bits(profile: ModelProfile, config: Config, role: str) -> float:
    """Sum over parameters of the role's bits: weight layers in their group's format, the rest global."""
    return (sum(layer.params * _layer_bits(config, role, layer) for layer in profile.layers)
            + profile.other_params * format_bits(config.get(role)))


def weight_memory_bits(profile: ModelProfile, config: Config) -> float:
    """Bits of all parameters: weight layers in their group's weight format, others in fp32."""
    return (sum(layer.params * _layer_bits(config, "weight", layer) for layer in profile.layers)
            + profile.other_params * FULL_PRECISION_BITS)


def master_weight_memory_bits(profile: ModelProfile, config: Config) -> float:
    """Bits of the separate master copy of the weights; 0 for the parameters that have none."""
    return sum(layer.params * _layer_bits(config, "master_weight", layer) for layer in profile.layers
               if config.get("master_weight", config.group_of(layer.name, layer.kind)) is not None)


def activation_memory_bits(profile: ModelProfile, config: Config) -> float:
    """Bits of the inputs that the weight layers keep for the backward pass, for one batch."""
    return profile.batch_size * sum(layer.input_elements * _layer_bits(config, "activation", layer)
                                    for layer in profile.layers)


def gradient_memory_bits(profile: ModelProfile, config: Config) -> float:
    """Bits of one gradient per parameter."""
    return _per_parameter_bits(profile, config, "gradient")


def optimizer_state_memory_bits(profile: ModelProfile, config: Config) -> float:
    """Bits of the optimizer's per-parameter state tensors (momentum; Adam's two moments)."""
    return profile.optimizer_states * _per_parameter_bits(profile, config, "optimizer_state")


def training_memory_bits(profile: ModelProfile, config: Config) -> float:
    """Weights + master weights + activations + gradients + optimizer state for one training step."""
    return sum(f(profile, config) for f in (weight_memory_bits, master_weight_memory_bits, activation_memory_bits,
                                            gradient_memory_bits, optimizer_state_memory_bits))


def bit_operations(profile: ModelProfile, config: Config) -> float:
    """MACs x weight bits x activation bits, per inference sample."""
    return sum(layer.macs * _layer_bits(config, "weight", layer) * _layer_bits(config, "activation", layer)
               for layer in profile.layers)


def energy_per_inference_uj(build_model: Callable, input_shape: tuple, rules_of: Callable, accelerator: str,
                            profile: ModelProfile, config: Config) -> float:
    """Energy (µJ) of one inference on a qsim.hw accelerator description (hw_models/<accelerator>.toml):
    the model's layers with the operand widths that quantize_model's rules give them, simulated on the
    array with its energy table. Bind the first four arguments with functools.partial to make a Cost."""
    import torch

    from qsim.hw import load_accelerator, simulate
    from qsim.hw.extract import workload

    work = workload(build_model(), torch.zeros(input_shape), rules=rules_of(config))
    return float(simulate(work, load_accelerator(accelerator)).totals()["energy_per_inference_uj"])


def _in_kib(fn, profile: ModelProfile, config: Config) -> float:
    return fn(profile, config) / BITS_PER_KIB


def _kib(fn):
    return functools.partial(_in_kib, fn)


MEMORY_KIB = Cost("memory_kib", "KiB", _kib(training_memory_bits), "memory of one training step",
                  "weights, master weights, activations kept for backward, gradients and optimizer state")
WEIGHT_KIB = Cost("weight_kib", "KiB", _kib(weight_memory_bits), "weight memory", "the model's parameters")
ACTIVATION_KIB = Cost("activation_kib", "KiB", _kib(activation_memory_bits), "activation memory",
                      "the inputs of the weight layers kept for the backward pass, one batch")
BIT_OPS = Cost("bit_ops", "bit-ops/sample", bit_operations, "bit operations per inference",
               "MACs x weight bits x activation bits per sample")
DEFAULT_COSTS = (MEMORY_KIB, WEIGHT_KIB, ACTIVATION_KIB, BIT_OPS)


def _hardware_layers(profile: ModelProfile, config: Config):
    """The profile's layers as qsim.hw layers with the configuration's weight/activation widths and arithmetic."""
    from qsim.hw.layers import Layer
    from qsim.hw.precision import FLOAT32_BITS, _format_bits

    def bits(role, layer):
        spec = config.get(role, config.group_of(layer.name, layer.kind))
        return (FLOAT32_BITS, "float") if spec is None else _format_bits(spec, f"{role} of {layer.name}")
    layers = []
    for layer in profile.layers:
        (w, wa), (a, aa) = bits("weight", layer), bits("activation", layer)
        layers.append(Layer.gemm(layer.name, 1, 1, 1, weight_bits=w, act_bits=a, out_bits=a,
                                 arith="float" if "float" in (wa, aa) else "int"))
    return layers


def fpga_resource(resource: str, accelerator: str, device: str, profile: ModelProfile, config: Config) -> float:
    """One resource (`luts`, `ffs`, `dsps`, `bram36`, `uram`) of qsim.hw.fpga's estimate of `accelerator` on
    `device`, built for the widest weight and activation formats of the configuration."""
    from qsim.hw import fpga
    return float(fpga.estimate(accelerator, device, workload=_hardware_layers(profile, config)).resources[resource])


def asic_area_mm2(accelerator: str, node_nm: float, profile: ModelProfile, config: Config) -> float:
    """qsim.hw.area's mm² of `accelerator` at `node_nm` for the configuration's widest formats."""
    from qsim.hw import area
    return area.estimate(accelerator, node_nm, workload=_hardware_layers(profile, config)).total_mm2


def hardware_costs(accelerator: str = "systolic_32x32", device: str = "zcu102", node_nm: float = 45) -> tuple[Cost, ...]:
    """`luts`, `dsps`, `brams` (36 Kb blocks) on an FPGA device and `area_mm2` at an ASIC node, as sweep costs."""
    on = f"{accelerator} on {device}"
    return (
        Cost("luts", "LUTs", functools.partial(fpga_resource, "luts", accelerator, device), f"LUTs ({on})",
             "qsim.hw.fpga LUT estimate at the configuration's widest formats"),
        Cost("dsps", "DSP slices", functools.partial(fpga_resource, "dsps", accelerator, device),
             f"DSP slices ({on})", "qsim.hw.fpga DSP estimate at the configuration's widest formats"),
        Cost("brams", "BRAM36", functools.partial(fpga_resource, "bram36", accelerator, device),
             f"block RAM ({on})", "qsim.hw.fpga block RAM (36 Kb blocks) at the configuration's widest formats"),
        Cost("area_mm2", "mm²", functools.partial(asic_area_mm2, accelerator, node_nm),
             f"ASIC area of {accelerator} at {node_nm:g} nm", "qsim.hw.area estimate at the widest formats"),
    )
