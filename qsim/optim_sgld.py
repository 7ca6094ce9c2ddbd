"""Low-precision SGLD (Zhang, Wilson, De Sa, "Low-Precision Stochastic Gradient Langevin Dynamics", ICML 2022).

Exports SGLD (the sampler as a torch optimizer), variance_corrected_quantize (the paper's Q^vc),
grid_gap (the spacing of a format's grid around each value) and CyclicalSchedule (cyclical SGLD's step
sizes and exploration/sampling stages, Zhang et al., "Cyclical Stochastic Gradient MCMC", ICLR 2020).

SGLD samples exp(-U(θ)/T) with θ ← θ − α ∇U(θ) + sqrt(2αT) ξ, ξ ~ N(0, I). Written for a loss that is the
mean over N data points, U/N, and step size lr = αN (the convention of the paper's code), the update is
    θ ← θ − lr ∇(U/N) + sqrt(2 lr T / N) ξ                                                        (1)
The three low-precision variants the paper compares (qsim.nn.recipes.sgld builds each):
  SGLDLP-F: weights and gradients quantized, (1) accumulated in float32 (LowPrecision with acc="fp32");
  SGLDLP-L: the result of (1) stochastically rounded to the low-precision format (naive; LowPrecision
            without acc), which adds the rounding variance, up to Δ²/4 per step, to the 2 lr T/N of (1);
  VC:       θ ← Q^vc(θ − lr ∇(U/N), 2 lr T/N) (SGLD.correct_variance): the rounding itself supplies
            part of the noise, so the update's variance is 2 lr T/N again.
"""
from __future__ import annotations

import math

import torch

from qsim.nn.spec import resolve_format
from qsim.quant import quantize


def grid_gap(x: torch.Tensor, fmt) -> torch.Tensor:
    """Δ(x): the spacing of `fmt`'s grid around each element of x: the larger of the gaps above and below
    q = Q^d(x), x rounded to nearest (saturating, so values beyond the range get the gap at its end).
    For fixed point Δ is the constant 2^-fl; for floating and block formats it is the local ulp, as the
    paper's code takes for its float and block variants."""
    q = quantize(x, fmt, "nearest")
    above = quantize(torch.nextafter(q, torch.tensor(math.inf, dtype=q.dtype)), fmt, "up") - q
    below = q - quantize(torch.nextafter(q, torch.tensor(-math.inf, dtype=q.dtype)), fmt, "down")
    return torch.maximum(above, below)


def _seed(generator: torch.Generator | None) -> int | None:
    """A stochastic-rounding seed drawn from `generator` on its own device (None: from torch's default)."""
    return None if generator is None else int(torch.randint(0, 2**62, (), generator=generator,
                                                            device=generator.device))


def _signed_step(probability_up, probability_down, gap, generator) -> torch.Tensor:
    """c ∈ {+Δ, −Δ, 0} with P(+Δ) = probability_up, P(−Δ) = probability_down (one uniform per element)."""
    u = torch.rand(gap.shape, generator=generator, dtype=gap.dtype, device=gap.device)
    up = u < probability_up
    down = ~up & (u < probability_up + probability_down)
    return gap * (up.to(gap.dtype) - down.to(gap.dtype))


def variance_corrected_quantize(mean: torch.Tensor, variance: float, fmt, generator: torch.Generator | None = None
                                ) -> torch.Tensor:
    """Q^vc(μ, v): a sample on `fmt`'s grid with mean μ and variance v, per element (the paper's
    variance-corrected quantization function, as the authors' public code computes it; the equations
    below are derived here).

    With Δ the grid gap and v0 = Δ²/4 (the largest variance stochastic rounding can add):
    v > v0:  x = μ + sqrt(v − v0) ξ                          Gaussian part: variance v − v0
             q = Q^d(x) (nearest), r = x − q, |r| ≤ Δ/2
             θ = q + s c,  s = sign(r) (+1 at r = 0),  c ∈ {+Δ, −Δ, 0} with
             P(c = +Δ) = (v0 + r² + |r|Δ) / (2Δ²),  P(c = −Δ) = (v0 + r² − |r|Δ) / (2Δ²)
             so E[c] = |r| and Var[c] = v0: E[θ | x] = x, Var[θ] = (v − v0) + v0 = v exactly.
             (P(c = −Δ) = (|r| − Δ/2)² / (2Δ²) ≥ 0, and P(±Δ) sum to (v0 + r²)/Δ² ≤ 1/2.)
    v ≤ v0:  q = Q^s(μ) (stochastic), whose variance is v_s = |r|(Δ − |r|) for r = μ − Q^d(μ);
             θ = q + c,  c ∈ {+Δ, −Δ, 0} with P(c = ±Δ) = max(v − v_s, 0) / (2Δ²),
             so Var[θ] = max(v, v_s): exact where v ≥ v_s, the rounding's own variance otherwise.
    The result is rounded to nearest in `fmt` (saturating, as the paper's code clamps to the range);
    on a uniform (fixed-point) grid that changes nothing inside the range. On floating and block grids
    q ± Δ may leave the grid where the spacing changes (at a power of two): there the final rounding
    moves it, an approximation the paper's float and block variants share."""
    fmt = resolve_format(fmt, "fmt")
    if not isinstance(mean, torch.Tensor) or not mean.is_floating_point():
        raise TypeError(f"mean: expected a floating-point torch.Tensor; got {type(mean).__name__}")
    if isinstance(variance, bool) or not isinstance(variance, (int, float)) or not variance >= 0:
        raise ValueError(f"variance: expected a number >= 0; got {variance!r}")
    gap_mean = grid_gap(mean, fmt)
    gaussian = variance > gap_mean ** 2 / 4  # which case of the two, per element
    tiny = torch.finfo(mean.dtype).tiny  # keeps 0/0 out where a format has a single value (Δ = 0)
    cases = []
    if gaussian.any():  # case v > v0
        x = mean + (variance - gap_mean ** 2 / 4).clamp(min=0).sqrt() \
            * torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        gap = grid_gap(x, fmt)
        q = quantize(x, fmt, "nearest")
        r = x - q
        sign = torch.where(r >= 0, 1.0, -1.0).to(mean.dtype)
        v0, scale = gap ** 2 / 4, (2 * gap ** 2).clamp(min=tiny)
        step = _signed_step((v0 + r ** 2 + r.abs() * gap) / scale, (v0 + r ** 2 - r.abs() * gap) / scale, gap,
                            generator)
        cases.append(q + sign * step)
    if not gaussian.all():  # case v <= v0
        residual = (mean - quantize(mean, fmt, "nearest")).abs()
        rounding_variance = residual * (gap_mean - residual)
        p = (variance - rounding_variance).clamp(min=0) / (2 * gap_mean ** 2).clamp(min=tiny)
        cases.append(quantize(mean, fmt, "stochastic", seed=_seed(generator)) + _signed_step(p, p, gap_mean, generator))
    theta = torch.where(gaussian, *cases) if len(cases) == 2 else cases[0]
    return quantize(theta, fmt, "nearest")


def _check_positive(value, argument: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{argument}: expected a number {'>= 0' if allow_zero else '> 0'}; got {value!r}")
    return float(value)


class SGLD(torch.optim.Optimizer):
    """Stochastic gradient Langevin dynamics, update (1) of the module docstring, per parameter group.

    lr: the step size on the mean loss. datasize: N, the number of data points the loss is the mean over
    (1 when the loss is the full U). temperature: T >= 0; T = 1 samples the posterior, T < 1 a sharpened
    (cold) one, T = 0 is plain SGD. weight_decay: adds weight_decay·θ to the gradient (a Gaussian prior
    N(0, 1/(N weight_decay))). generator: the torch.Generator of the noise (on the parameters' device),
    for reproducible chains. A group whose "sampling" entry is False (CyclicalSchedule's exploration
    stage) takes the gradient step without noise. correct_variance(fmt) makes each step Q^vc of the
    update in fmt.
    """

    def __init__(self, params, lr: float, datasize: int = 1, temperature: float = 1.0, weight_decay: float = 0.0,
                 generator: torch.Generator | None = None):
        _check_positive(lr, "lr")
        if isinstance(datasize, bool) or not isinstance(datasize, int) or datasize < 1:
            raise ValueError(f"datasize: expected a positive int (data points the loss averages); got {datasize!r}")
        _check_positive(temperature, "temperature", allow_zero=True)
        _check_positive(weight_decay, "weight_decay", allow_zero=True)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected None or a torch.Generator; got {type(generator).__name__}")
        super().__init__(params, dict(lr=lr, datasize=datasize, temperature=temperature, weight_decay=weight_decay,
                                      sampling=True))
        self.generator = generator
        self.vc_format = None

    def correct_variance(self, fmt) -> None:
        """Store the parameters in `fmt` with the paper's variance-corrected quantization (None: off)."""
        self.vc_format = resolve_format(fmt, "fmt")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            variance = 2 * group["lr"] * group["temperature"] / group["datasize"] if group["sampling"] else 0.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if group["weight_decay"] == 0 else p.grad + group["weight_decay"] * p
                mean = p - group["lr"] * grad
                if self.vc_format is not None:
                    p.copy_(variance_corrected_quantize(mean, variance, self.vc_format, self.generator))
                else:
                    noise = torch.randn(p.shape, generator=self.generator, dtype=p.dtype, device=p.device)
                    p.copy_(mean + math.sqrt(variance) * noise)
        return loss


class CyclicalSchedule:
    """Cyclical SGLD's schedule (Zhang, Li, Zhang, Chen, Wilson, ICLR 2020, eq. 2): K steps in M cycles;
    at step k (0-based), with position r = (k mod ⌈K/M⌉) / ⌈K/M⌉ in its cycle,
        lr_k = lr_0 / 2 · (cos(π r) + 1),
    and the step is an exploration (noise-free SGD) step while r < exploration, a sampling step after.
    Call step() once before each optimizer step; collect a sample when `collect` is True (the last
    `samples_per_cycle` steps of each cycle)."""

    def __init__(self, optimizer: SGLD, total_steps: int, cycles: int = 1, exploration: float = 0.0,
                 samples_per_cycle: int = 1):
        if not isinstance(optimizer, SGLD):
            raise TypeError(f"optimizer: expected a qsim SGLD optimizer; got {type(optimizer).__name__}")
        for name, value in (("total_steps", total_steps), ("cycles", cycles), ("samples_per_cycle", samples_per_cycle)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int; got {value!r}")
        if cycles > total_steps:
            raise ValueError(f"cycles: expected at most total_steps={total_steps}; got {cycles}")
        if isinstance(exploration, bool) or not isinstance(exploration, (int, float)) or not 0 <= exploration < 1:
            raise ValueError(f"exploration: expected a fraction in [0, 1); got {exploration!r}")
        self.optimizer, self.exploration = optimizer, float(exploration)
        self.cycle_length = math.ceil(total_steps / cycles)
        if samples_per_cycle > self.cycle_length:
            raise ValueError(f"samples_per_cycle: expected at most the cycle length {self.cycle_length}; "
                             f"got {samples_per_cycle}")
        self.samples_per_cycle = samples_per_cycle
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps = 0
        self.collect = False

    def step(self) -> None:
        position = (self.steps % self.cycle_length) / self.cycle_length
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base / 2 * (math.cos(math.pi * position) + 1)
            group["sampling"] = position >= self.exploration
        self.collect = position >= self.exploration and \
            self.steps % self.cycle_length >= self.cycle_length - self.samples_per_cycle
        self.steps += 1
