"""Published low-precision training methods as presets of quantize_model rules plus optimizer formats.

Exports Recipe and the recipe functions float8_qpytorch, bfloat16_qpytorch, fp8, swalp, mx, and
sgld (low-precision SGLD, an SGLDRecipe), and
COMPUTE_LAYERS / NORM_LAYERS (the module types the presets address). A Recipe is a frozen value:

    recipe = qsim.nn.recipes.fp8()
    handle, optimizer = recipe.apply(model, torch.optim.SGD(model.parameters(), lr=0.1))
    (loss * recipe.loss_scale).backward(); optimizer.step()

Activations (A) and errors (E) are quantized by hooks; weights (W), gradients (G), momentum (M) and
the accumulator (Acc) by qsim.optim.LowPrecision, except where a method keeps float32 master weights
and casts them on the fly (fp8, mx), which the hooks do.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from qsim.nn.model import QuantHandle, quantize_model
from qsim.nn.spec import QuantSpec, resolve_format
from qsim.optim import LowPrecision

COMPUTE_LAYERS = (nn.Linear, _ConvNd)
NORM_LAYERS = (_NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class Recipe:
    """A training method: hook rules, optimizer formats, a loss scale, weight averaging, and its source."""

    name: str
    source: str
    rules: tuple = ()
    optimizer: dict = field(default_factory=dict)  # LowPrecision keyword arguments
    loss_scale: float = 1.0
    average_weights: bool = False

    def apply(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[QuantHandle, LowPrecision]:
        """Hook `model` and wrap `optimizer`; remove the hooks with the returned handle."""
        handle = quantize_model(model, list(self.rules))
        wrapped = LowPrecision(optimizer, **self.optimizer)
        wrapped.round_weights()  # stored in low precision from the first forward on, as after every step
        return handle, wrapped

    def averaged(self, model: nn.Module) -> torch.optim.swa_utils.AveragedModel:
        """A full-precision running average of the model's weights (SWA/SWALP); call
        update_parameters(model) once per epoch from the averaging start, then
        torch.optim.swa_utils.update_bn(loader, averaged) before evaluating."""
        return torch.optim.swa_utils.AveragedModel(model)


def _activation_error_rules(a, e, rounding: str) -> tuple:
    """A on the input of every conv, linear and norm layer and E on the gradient arriving at its output:
    every operand of every forward and backward product is in low precision, each rounded once (QPyTorch's
    Quantizer modules in front of and behind each layer). Rounding is idempotent, so the data flowing
    through ReLU, pooling and reshapes between two layers stays representable."""
    return ((COMPUTE_LAYERS + NORM_LAYERS,
             QuantSpec(input=a, grad_output=e, rounding=rounding, backward_rounding=rounding)),)


def float8_qpytorch() -> Recipe:
    """QPyTorch's 8-bit floating-point training example (Zhang et al., "QPyTorch: A Low-Precision
    Arithmetic Simulation Framework", 2019; the repository's CIFAR-10 PreResNet tutorial):
    W, G, A, E in float e5m2 with round-to-nearest; M and the weight accumulator in float e6m9 with
    stochastic rounding; the loss is scaled by 1000 and the gradient by 1/1000 before rounding."""
    bit8, bit16 = "float<e5m2>", "float<e6m9>"
    return Recipe(
        name="float8_qpytorch", source="QPyTorch (Zhang et al., 2019), 8-bit float training tutorial",
        rules=_activation_error_rules(bit8, bit8, "nearest"),
        optimizer=dict(weight=bit8, grad=bit8, momentum=bit16, acc=bit16, grad_scale=1 / 1000,
                       rounding=dict(weight="nearest", grad="nearest", momentum="stochastic", acc="stochastic")),
        loss_scale=1000.0)


def bfloat16_qpytorch() -> Recipe:
    """QPyTorch's bfloat16 training script: W, A, E, G and M all in float(8, 7) with stochastic rounding."""
    bf16 = "float<e8m7>"
    return Recipe(
        name="bfloat16_qpytorch", source="QPyTorch (Zhang et al., 2019), bfloat16 training example",
        rules=_activation_error_rules(bf16, bf16, "stochastic"),
        optimizer=dict(weight=bf16, grad=bf16, momentum=bf16, rounding="stochastic"))


def fp8(forward="fp8_e4m3", backward="fp8_e5m2", scaling: str | None = "tensor") -> Recipe:
    """FP8 training as in NVIDIA TransformerEngine's HYBRID recipe (Micikevicius et al., "FP8 Formats
    for Deep Learning", 2022): the operands of every GEMM in float8, e4m3 forward (weights cast on the
    fly from float32 masters, inputs) and e5m2 backward (errors), each tensor scaled per tensor to the
    format's range ("current" scaling); outputs, master weights and the optimizer stay in float32."""
    return Recipe(
        name="fp8", source="Micikevicius et al., FP8 Formats for Deep Learning (2022); TransformerEngine HYBRID",
        rules=((COMPUTE_LAYERS, QuantSpec(weight=forward, input=forward, grad_output=backward, scaling=scaling)),))


def swalp(fmt="bfp8_dim0", average: bool = True) -> Recipe:
    """SWALP (Yang, Zhang, Gu, De Sa, Sa, Wilson, "SWALP: Stochastic Weight Averaging in Low-Precision
    Training", ICML 2019): W, A, G, E and M in 8-bit block floating point (8-bit shared exponent, one
    per first-dimension slice: the format bfp8_dim0) with stochastic rounding, SGD, and a full-precision
    running average of the weights taken once per epoch from a late epoch on (Recipe.averaged).
    QPyTorch's reproduction: CIFAR-10 VGG16 test error SGD-FP 6.81 / SGD-LP 7.61 / SWALP 6.70 %."""
    fmt = resolve_format(fmt, "fmt")
    return Recipe(
        name="swalp", source="Yang et al., SWALP, ICML 2019",
        rules=_activation_error_rules(fmt, fmt, "stochastic"),
        optimizer=dict(weight=fmt, grad=fmt, momentum=fmt, rounding="stochastic"),
        average_weights=average)


def _along(fmt, dim: int):
    """`fmt` with its blocks along `dim` (block formats); elementwise formats unchanged."""
    return replace(fmt, dim=dim) if "dim" in {f.name for f in fields(fmt)} else fmt


def mx(forward="mxfp8_e4m3", backward="mxfp8_e5m2") -> Recipe:
    """MX training (OCP Microscaling Formats v1.0; Rouhani et al., "Microscaling Data Formats for Deep
    Learning", 2023): weights and activations of every GEMM in an MX format (MXFP8 or MXFP6, blocks of
    32 with an E8M0 scale), errors in the backward MX format, float32 master weights and optimizer.
    Blocks run along the reduction dimension, as the MX GEMMs need: the last dim for linear layers,
    the channel dim (1) for convolutions' weights, inputs and output errors."""
    forward, backward = resolve_format(forward, "forward"), resolve_format(backward, "backward")
    return Recipe(
        name="mx", source="OCP Microscaling Formats (MX) v1.0; Rouhani et al., 2023",
        rules=((nn.Linear, QuantSpec(weight=forward, input=forward, grad_output=backward)),
               (_ConvNd, QuantSpec(weight=_along(forward, 1), input=_along(forward, 1),
                                   grad_output=_along(backward, 1)))))


SGLD_ACCUMULATORS = ("full", "low", "vc")


@dataclass(frozen=True)
class SGLDRecipe(Recipe):
    """A Recipe for qsim.optim_sgld.SGLD: apply() also switches on variance-corrected quantization (VC)."""

    variance_corrected: object = None  # the format Q^vc stores the parameters in, or None

    def apply(self, model: nn.Module, optimizer) -> tuple[QuantHandle, LowPrecision]:
        from qsim.optim_sgld import SGLD
        if not isinstance(optimizer, SGLD):
            raise TypeError(f"optimizer: the {self.name} recipe expects a qsim.optim_sgld.SGLD; "
                            f"got {type(optimizer).__name__}")
        optimizer.correct_variance(self.variance_corrected)
        return super().apply(model, optimizer)


def sgld(fmt="fixed<8,6>", accumulator: str = "vc", activations: bool = True) -> SGLDRecipe:
    """Low-precision SGLD (Zhang, Wilson, De Sa, "Low-Precision Stochastic Gradient Langevin Dynamics",
    ICML 2022): W and G in `fmt` with stochastic rounding (and A, E by hooks when `activations`), and
    the accumulator the paper's variants differ in:
      "full": SGLDLP-F, the update accumulated in float32 and the weights rounded from it;
      "low":  SGLDLP-L, the noisy update stochastically rounded to `fmt` (naive: its variance grows by
              the rounding's, up to Δ²/4 a step); with SGLD(temperature=0) this is SGD-LP;
      "vc":   SGLDLP-L with variance-corrected quantization, the weights updated by Q^vc in `fmt`.
    Use with qsim.optim_sgld.SGLD (and its CyclicalSchedule for cyclical SGLD)."""
    fmt = resolve_format(fmt, "fmt")
    if fmt is None:
        raise ValueError("fmt: expected a format; for full-precision SGLD use qsim.optim_sgld.SGLD alone")
    if accumulator not in SGLD_ACCUMULATORS:
        raise ValueError(f"accumulator: expected one of {', '.join(SGLD_ACCUMULATORS)}; got {accumulator!r}")
    names = {"full": "sgldlp_f", "low": "sgldlp_l", "vc": "sgldlp_vc"}
    return SGLDRecipe(
        name=names[accumulator], source="Zhang, Wilson, De Sa, Low-Precision SGLD, ICML 2022",
        rules=_activation_error_rules(fmt, fmt, "stochastic") if activations else (),
        optimizer=dict(weight=fmt, grad=fmt, acc="fp32" if accumulator == "full" else None, rounding="stochastic"),
        variance_corrected=fmt if accumulator == "vc" else None)
