"""Decentralized SGD with quantized communication, and Moniqua (Lu, De Sa, "Moniqua: Modulo Quantized
Communication in Decentralized SGD", ICML 2020).

Exports GRAPHS, gossip_matrix, centered_mod, Communication (what a worker sends: full precision, naive
quantized or Moniqua), moniqua_bits (the b-bit modular grid), bits_per_iteration and decentralized_sgd
(W workers simulated in one process, every operation vectorised over the worker axis).

D-PSGD (Lian et al., 2017), worker i of W, gossip matrix W_ij (symmetric, doubly stochastic):
    x_i ← Σ_j W_ij x_j − α g_i(x_i)                                                           (1)
written as x_i + Σ_j W_ij (x_j − x_i) − α g_i so that a worker can mix estimates x̂ of the parameters:
    x_i ← x_i + Σ_j W_ij (x̂_ij − x̂_ii) − α g_i                                                (2)
where x̂_ij is worker i's estimate of x_j (x̂_ii of itself, from its own message: the quantization error of
x_i enters as for its neighbours, so Σ_i Σ_j W_ij (x̂_ij − x̂_ii) = 0 for symmetric W and the average
parameter moves by exactly the average gradient step).
  naive:   the message is Q(x_j / R) and x̂_ij = R Q(x_j / R), R the range the values must fit in:
           the error is R times the format's, however close the workers are to each other.
  Moniqua: the message is q_j = Q((x_j / θ) mod 1) (mod centered into [−1/2, 1/2)) and worker i
           recovers x̂_ij = ((θ q_j − x_i) mod θ) + x_i. Without quantization θ q_j = x_j − mθ for an
           integer m, so x̂_ij = ((x_j − x_i) mod θ) + x_i = x_j whenever |x_j − x_i| < θ/2: the modulus
           need only bound how far apart the workers are, not the values, and a b-bit grid on the
           residue has error θ 2^-b. With quantization error ε (|ε| <= δ in units of θ) recovery is
           exact up to θε while |x_j − x_i| < θ (1/2 − δ) (the paper's B_θ = 2θ/(1 − 2δ) bound, read
           the other way round).
On the b-bit grid the modulo and the quantization are one qsim rounding: fixed<b,b,unsigned,wrap> keeps
the code modulo 2^b, i.e. the value modulo 1 (moniqua_bits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qsim.formats import FixedPoint
from qsim.nn.spec import resolve_format
from qsim.quant import draw_seed, quantize

GRAPHS = ("ring", "torus", "complete")
METHODS = ("full", "naive", "moniqua")
FULL_PRECISION_BITS = 32  # a float32 parameter on the wire


def _torus_shape(workers: int) -> tuple[int, int]:
    """r × c = workers with r <= c as close to square as possible; both >= 3 so each worker has 4 neighbours."""
    rows = max(r for r in range(1, math.isqrt(workers) + 1) if workers % r == 0)
    if rows < 3:
        raise ValueError(f"workers: a torus needs rows x columns with both >= 3; {workers} workers factor as "
                         f"{rows} x {workers // rows}")
    return rows, workers // rows


def _adjacency(graph: str, workers: int) -> torch.Tensor:
    """0/1 symmetric adjacency matrix (no self-loops), shape (W, W)."""
    if graph not in GRAPHS:
        raise ValueError(f"graph: expected one of {', '.join(GRAPHS)}; got {graph!r}")
    minimum = {"ring": 3, "torus": 9, "complete": 2}[graph]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < minimum:
        raise ValueError(f"workers: a {graph} needs an int >= {minimum}; got {workers!r}")
    adjacency = torch.zeros(workers, workers, dtype=torch.float64)
    if graph == "complete":
        return torch.ones_like(adjacency) - torch.eye(workers, dtype=torch.float64)
    if graph == "ring":
        neighbours = [((i + 1) % workers,) for i in range(workers)]
    else:
        rows, cols = _torus_shape(workers)
        neighbours = [((r * cols + (c + 1) % cols), (((r + 1) % rows) * cols + c))
                      for r in range(rows) for c in range(cols)]
    for i, js in enumerate(neighbours):
        for j in js:
            adjacency[i, j] = adjacency[j, i] = 1.0
    return adjacency


def gossip_matrix(graph: str, workers: int, self_weight: float | None = None) -> torch.Tensor:
    """The mixing matrix W (float64, shape (W, W)): W_ii = s, W_ij = (1 − s)/deg for each of the deg
    neighbours j of i, 0 otherwise. All three graphs are regular, so W is symmetric and doubly stochastic.
      ring:     worker i talks to i ± 1 (mod W); default s = 1/2, so W_i,i±1 = 1/4 (the lazy walk)
      torus:    a 2-d r × c grid wrapped in both directions (4 neighbours); default s = 1/2, W_ij = 1/8
      complete: everyone talks to everyone; default s = 1/W, so W = 11ᵀ/W (exact averaging in one step)"""
    adjacency = _adjacency(graph, workers)
    if self_weight is None:
        self_weight = 1 / workers if graph == "complete" else 0.5
    if isinstance(self_weight, bool) or not isinstance(self_weight, (int, float)) or not 0 <= self_weight < 1:
        raise ValueError(f"self_weight: expected a number in [0, 1); got {self_weight!r}")
    degree = adjacency.sum(1, keepdim=True)
    return self_weight * torch.eye(workers, dtype=torch.float64) + (1 - self_weight) * adjacency / degree


def centered_mod(a: torch.Tensor, modulus: float) -> torch.Tensor:
    """a mod m, centered into [−m/2, m/2)."""
    return a - modulus * torch.floor(a / modulus + 0.5)


def moniqua_bits(bits: int) -> FixedPoint:
    """The b-bit grid of the residue: k/2^b for k in [0, 2^b), wrapping modulo 1 (fixed<b,b,unsigned,wrap>:
    the code is kept modulo 2^b, so −1/4 is stored as 3/4 and a residue that rounds up to 1 becomes 0);
    centered_mod(., 1) reads it back into [−1/2, 1/2)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ValueError(f"bits: expected an int in [1, 32]; got {bits!r}")
    return FixedPoint(bits, bits, signed=False, overflow="wrap")


@dataclass(frozen=True)
class Communication:
    """What each worker sends each iteration.

    method: "full" (parameters in full precision: D-PSGD), "naive" (Q(x / scale)) or "moniqua"
      (Q((x / theta) mod 1)). fmt: the qsim format of the message (a Format, name or spec); None sends
      the exact value (with "moniqua": the modulo alone). rounding: the message's rounding mode
      (stochastic: unbiased, as both papers assume). theta: Moniqua's modulus, > 0, larger than twice
      the workers' largest disagreement |x_j − x_i|. scale: naive's range R, > 0, larger than every |x|.
    """

    method: str = "full"
    fmt: object = None
    rounding: str = "stochastic"
    theta: float | None = None
    scale: float | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {', '.join(METHODS)}; got {self.method!r}")
        object.__setattr__(self, "fmt", resolve_format(self.fmt, "fmt"))
        if self.method == "full" and self.fmt is not None:
            raise ValueError("fmt: full-precision communication takes no format; use method='naive' or 'moniqua'")
        for name, needed in (("theta", self.method == "moniqua"), ("scale", self.method == "naive")):
            value = getattr(self, name)
            if needed and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ValueError(f"{name}: the {self.method} method needs a number > 0; got {value!r}")
            if not needed and value is not None:
                raise ValueError(f"{name}: only applies to method={'moniqua' if name == 'theta' else 'naive'}")

    @property
    def bits_per_element(self) -> float:
        return FULL_PRECISION_BITS if self.fmt is None else self.fmt.bits_per_element

    def _round(self, y: torch.Tensor, seed: int) -> torch.Tensor:
        return y if self.fmt is None else quantize(y, self.fmt, self.rounding, seed=seed if self.rounding ==
                                                   "stochastic" else None)

    def estimates(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """x̂[i, j] = worker i's estimate of x_j from x_j's message; x: (W, d) -> (W, W, d)."""
        workers = x.shape[0]
        if self.method == "full":
            return x.unsqueeze(0).expand(workers, -1, -1)
        if self.method == "naive":
            return (self.scale * self._round(x / self.scale, seed)).unsqueeze(0).expand(workers, -1, -1)
        # Moniqua: q_j in [−1/2, 1/2); recovery relative to each receiver's own x_i.
        q = centered_mod(self._round(centered_mod(x / self.theta, 1.0), seed), 1.0)  # (W, d)
        local = x.unsqueeze(1)  # (W, 1, d): receiver i
        return centered_mod(self.theta * q.unsqueeze(0) - local, self.theta) + local  # (W, W, d)


def bits_per_iteration(mixing: torch.Tensor, dim: int, communication: Communication) -> float:
    """Bits sent in one iteration: every worker sends its d parameters to each neighbour (each nonzero
    off-diagonal W_ij is one message of d elements)."""
    messages = int((mixing != 0).sum() - (mixing.diagonal() != 0).sum())
    return messages * dim * communication.bits_per_element


def decentralized_sgd(gradients, x0: torch.Tensor, mixing: torch.Tensor, steps: int, lr: float,
                      communication: Communication, loss=None, every: int = 1, seed: int = 0,
                      dtype: torch.dtype = torch.float64, consensus_step: float = 1.0) -> dict:
    """Runs update (2) of the module docstring for `steps` iterations from x_i = x0 on every worker.

    gradients(X, step) -> G: the workers' stochastic gradients at their parameters, X and G of shape (W, d).
    mixing: the gossip matrix (gossip_matrix). loss(X) -> float, given every worker's parameters (W, d)
    (the mean of each worker's own loss, or the loss at their average x̄ = X.mean(0)), evaluated every
    `every` iterations and at the start. Returns {"x": final X, "iteration": [...], "bits": [...] (bits
    communicated so far), "loss": [...], "disagreement": [...] (max |x_j − x_i|, what θ must exceed twice)}.
    consensus_step: γ in (0, 1], scaling the mixing term of (2): x_i + γ Σ_j W_ij (x̂_ij − x̂_ii) − α g_i.
    γ = 1 is D-PSGD; a smaller γ damps the quantization noise the neighbours' messages inject. Whether and
    how the paper's Algorithm 1 sets such a step is an assumption here (its text was not available), so
    it is a parameter with D-PSGD's value as the default.
    """
    if not isinstance(communication, Communication):
        raise TypeError(f"communication: expected a Communication; got {type(communication).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected an int >= 0; got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr: expected a number > 0; got {lr!r}")
    if mixing.dim() != 2 or mixing.shape[0] != mixing.shape[1]:
        raise ValueError(f"mixing: expected a square (W, W) matrix; got shape {tuple(mixing.shape)}")
    if isinstance(consensus_step, bool) or not isinstance(consensus_step, (int, float)) \
            or not 0 < consensus_step <= 1:
        raise ValueError(f"consensus_step: expected a number in (0, 1]; got {consensus_step!r}")
    workers = mixing.shape[0]
    mixing = consensus_step * mixing.to(x0.device, dtype)
    x = x0.to(dtype).reshape(1, -1).repeat(workers, 1)  # (W, d)
    per_iteration = bits_per_iteration(mixing, x.shape[1], communication)
    generator = torch.Generator().manual_seed(draw_seed(seed))
    history = {"iteration": [], "bits": [], "loss": [], "disagreement": []}

    def record(k):
        history["iteration"].append(k)
        history["bits"].append(k * per_iteration)
        history["loss"].append(float(loss(x)) if loss is not None else math.nan)
        history["disagreement"].append(float((x.max(0).values - x.min(0).values).max()))

    record(0)
    for k in range(steps):
        g = gradients(x, k).to(dtype)  # (W, d)
        estimates = communication.estimates(x, draw_seed(generator))  # (W, W, d)
        own = estimates.diagonal(dim1=0, dim2=1).T  # (W, d): x̂_ii
        x = x + torch.einsum("ij,ijd->id", mixing, estimates - own.unsqueeze(1)) - lr * g
        if (k + 1) % every == 0 or k + 1 == steps:
            record(k + 1)
    history["x"] = x
    return history
