"""Layer and Workload: the shapes and operand precisions that every hardware model consumes.

Exports `Layer` (one convolution or matrix product, with its GEMM view) and `Workload` (an ordered,
named tuple of layers). Both are frozen values so a workload can be cached, hashed and swept over.

Letters follow the accelerator literature (Timeloop, SCALE-Sim): N batch, C input channels, H x W
input, K output channels (filters), R x S kernel, P x Q output. A convolution with `groups` = g is
g independent GEMMs of (N*P*Q) x (C/g*R*S) x (K/g); a plain matrix product is the 1x1 case.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

ARITHMETICS = ("int", "float")


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def _touched(size: int, outputs: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """How many of `size` input positions along one axis the windows of `outputs` outputs cover: output p
    reads p·stride − padding + r·dilation for r < kernel (positions in the padding read nothing)."""
    taps = (np.arange(outputs)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation).ravel()
    return int(np.unique(taps[(taps >= 0) & (taps < size)]).size)


@dataclass(frozen=True)
class Layer:
    """One layer as the accelerator sees it: shapes, output size and operand bit widths.

    P and Q are stored rather than derived so that a layer read from a trace (the real output
    shape) or from a SCALE-Sim topology (its own output-size rule) is represented exactly.
    `weight_bits` is the width of the second GEMM operand (for an activation-activation matmul it
    is an activation width); `out_bits` is what the layer writes back.
    """

    name: str
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    P: int
    Q: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    dilation: tuple[int, int] = (1, 1)
    weight_bits: float = 8.0
    act_bits: float = 8.0
    out_bits: float = 8.0
    arith: str = "int"
    op: str = "conv"
    gating: object = None  # a qsim.hw.gate_masks.GateMasks: measured gate decisions of a channel-gated conv

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"layer name must be a non-empty string, got {self.name!r}")
        for field in ("N", "C", "H", "W", "K", "R", "S", "P", "Q", "groups"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"layer {self.name!r}: {field} must be a positive integer, got {value!r}")
        object.__setattr__(self, "stride", _pair(self.stride, f"layer {self.name!r}: stride"))
        object.__setattr__(self, "padding", _pair(self.padding, f"layer {self.name!r}: padding"))
        object.__setattr__(self, "dilation", _pair(self.dilation, f"layer {self.name!r}: dilation"))
        if min(self.stride) < 1:
            raise ValueError(f"layer {self.name!r}: stride must be >= 1, got {self.stride}")
        if min(self.dilation) < 1:
            raise ValueError(f"layer {self.name!r}: dilation must be >= 1, got {self.dilation}")
        if min(self.padding) < 0:
            raise ValueError(f"layer {self.name!r}: padding must be >= 0, got {self.padding}")
        if self.C % self.groups or self.K % self.groups:
            raise ValueError(f"layer {self.name!r}: groups={self.groups} must divide C={self.C} and K={self.K}")
        for field in ("weight_bits", "act_bits", "out_bits"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"layer {self.name!r}: {field} must be a positive number, got {value!r}")
            object.__setattr__(self, field, float(value))
        if self.arith not in ARITHMETICS:
            raise ValueError(f"layer {self.name!r}: arith must be one of {ARITHMETICS}, got {self.arith!r}")
        if self.gating is not None:
            from .gate_masks import GateMasks
            if not isinstance(self.gating, GateMasks):
                raise TypeError(f"layer {self.name!r}: gating must be a GateMasks, got {type(self.gating).__name__}")
            self.gating.check(self)

    @classmethod
    def conv(cls, name: str, N: int, C: int, H: int, W: int, K: int, R: int, S: int,
             stride=1, padding=0, groups: int = 1, dilation=1, **fields) -> "Layer":
        """A convolution, output size by PyTorch's rule: P = floor((H + 2p - d(R-1) - 1) / s) + 1."""
        (sh, sw), (ph, pw), (dh, dw) = (_pair(stride, "stride"), _pair(padding, "padding"),
                                        _pair(dilation, "dilation"))
        if min(sh, sw, dh, dw) < 1:
            raise ValueError(f"layer {name!r}: stride and dilation must be >= 1, got {stride}, {dilation}")
        P = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1
        Q = (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
        if P < 1 or Q < 1:
            raise ValueError(f"layer {name!r}: a {R}x{S} kernel does not fit a {H}x{W} input "
                             f"with padding {padding} (output {P}x{Q})")
        return cls(name=name, N=N, C=C, H=H, W=W, K=K, R=R, S=S, P=P, Q=Q, stride=(sh, sw),
                   padding=(ph, pw), groups=groups, dilation=(dh, dw), **fields)

    @classmethod
    def gemm(cls, name: str, m: int, k: int, n: int, batch: int = 1, **fields) -> "Layer":
        """An (m x k) @ (k x n) product, `batch` independent times (as `batch` groups)."""
        for arg, value in (("m", m), ("k", k), ("n", n), ("batch", batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"layer {name!r}: {arg} must be a positive integer, got {value!r}")
        fields.setdefault("op", "gemm")
        return cls(name=name, N=m, C=k * batch, H=1, W=1, K=n * batch, R=1, S=1, P=1, Q=1,
                   groups=batch, **fields)

    # GEMM view of one group: (gemm_m x gemm_k) @ (gemm_k x gemm_n), repeated `groups` times.
    @property
    def gemm_m(self) -> int:
        return self.N * self.P * self.Q

    @property
    def gemm_k(self) -> int:
        return self.C // self.groups * self.R * self.S

    @property
    def gemm_n(self) -> int:
        return self.K // self.groups

    @property
    def macs(self) -> int:
        return self.groups * self.gemm_m * self.gemm_k * self.gemm_n

    @property
    def ifmap_elems(self) -> int:
        """Distinct input elements that some output reads (the tensor, not its im2col expansion): a kernel
        smaller than its stride, or dilated, skips input rows and columns that are never fetched."""
        rows = _touched(self.H, self.P, self.R, self.stride[0], self.padding[0], self.dilation[0])
        cols = _touched(self.W, self.Q, self.S, self.stride[1], self.padding[1], self.dilation[1])
        return self.N * self.C * rows * cols

    @property
    def filter_elems(self) -> int:
        return self.K * (self.C // self.groups) * self.R * self.S

    @property
    def ofmap_elems(self) -> int:
        return self.N * self.K * self.P * self.Q

    def with_bits(self, weight_bits=None, act_bits=None, out_bits=None, arith=None) -> "Layer":
        """A copy with new operand widths; unspecified ones are kept."""
        changes = {k: v for k, v in (("weight_bits", weight_bits), ("act_bits", act_bits),
                                     ("out_bits", out_bits), ("arith", arith)) if v is not None}
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        row = dataclasses.asdict(self)
        row.pop("gating")  # masks are data for the accelerator model, not a column
        for key in ("stride", "padding", "dilation"):
            row[key] = "x".join(map(str, getattr(self, key)))
        row["macs"] = self.macs
        return row


@dataclass(frozen=True)
class Workload:
    """An ordered tuple of layers with a name, the batch it processes, and notes on its origin."""

    name: str
    layers: tuple[Layer, ...]
    notes: tuple[str, ...] = ()
    batch: int = 1

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "notes", tuple(self.notes))
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"workload {self.name!r}: batch must be a positive integer, got {self.batch!r}")
        if not self.layers:
            raise ValueError(f"workload {self.name!r} has no layers to map (no conv/linear/matmul found)")
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"workload {self.name!r}: layers must be Layer values, got {type(layer).__name__}")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"workload {self.name!r}: layer names must be unique")

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def select(self, op: str) -> "Workload":
        """Only the layers of one kind ("conv", "linear", "gemm")."""
        return dataclasses.replace(self, name=f"{self.name}[{op}]", layers=tuple(l for l in self.layers if l.op == op))

    def to_dataframe(self) -> pd.DataFrame:
        return pd.DataFrame([layer.as_dict() for layer in self.layers]).set_index("name")
