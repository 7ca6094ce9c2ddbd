"""SCALE-Sim topology CSV files <-> Workload, so the same layers run on both simulators.

Exports `read_topology(path)` and `write_topology(workload, path)`.

Two formats, told apart by the number of fields per row:
- convolution: ``name, IFMAP H, IFMAP W, filter H, filter W, channels, filters, stride,``
  SCALE-Sim has no padding field and computes the output rows as ceil((H - R + s) / s); a layer read
  from such a file keeps that output size. On writing, the input size is the span the output
  actually reads, (P - 1) * s + R, which makes SCALE-Sim's rule give back our P exactly (a padded
  input such as 224 + 2*3 for ResNet's first layer would give SCALE-Sim one output row too many).
- GEMM: ``name, M, N, K,`` (SCALE-Sim's ``-i gemm`` input), read as an M x K @ K x N product.
SCALE-Sim's rows end with a trailing comma; both forms are accepted on reading.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .layers import Layer, Workload

CONV_HEADER = ["Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
               "Channels", "Num Filter", "Strides"]


def _ints(fields: list[str], where: str, names: list[str]) -> list[int]:
    values = []
    for field, name in zip(fields, names):
        try:
            value = int(field.strip())
        except ValueError:
            raise ValueError(f"{where}: {name} must be an integer, got {field.strip()!r}") from None
        if value < 1:
            raise ValueError(f"{where}: {name} must be >= 1, got {value}")
        values.append(value)
    return values


def scalesim_conv(name: str, H: int, W: int, R: int, S: int, C: int, K: int, stride: int, **fields) -> Layer:
    """The layer SCALE-Sim simulates for one topology row (batch 1, no padding, its output rule)."""
    P, Q = -(-(H - R + stride) // stride), -(-(W - S + stride) // stride)  # ceil((H - R + s) / s)
    return Layer(name=name, N=1, C=C, H=H, W=W, K=K, R=R, S=S, P=P, Q=Q, stride=(stride, stride), **fields)


def read_topology(path, name: str | None = None, weight_bits: float = 8, act_bits: float = 8) -> Workload:
    """Reads a SCALE-Sim convolution or GEMM topology CSV into a Workload (batch 1)."""
    path = Path(path)
    with path.open(newline="") as f:
        rows = [[x for x in row] for row in csv.reader(f)]
    rows = [row[:-1] if row and not row[-1].strip() else row for row in rows]
    rows = [row for row in rows if any(x.strip() for x in row)]
    if len(rows) < 2:
        raise ValueError(f"topology {path}: expected a header row and at least one layer")
    layers = []
    bits = dict(weight_bits=weight_bits, act_bits=act_bits, out_bits=act_bits)
    for line, row in enumerate(rows[1:], start=2):
        where = f"topology {path}, line {line}"
        layer_name = row[0].strip()
        if len(row) in (4, 5):  # name, M, N, K[, sparsity]
            m, n, k = _ints(row[1:4], where, ["M", "N", "K"])
            layers.append(Layer.gemm(layer_name, m, k, n, **bits))
        elif len(row) >= 8:  # name, H, W, R, S, C, K, stride[, sparsity]
            H, W, R, S, C, K, s = _ints(row[1:8], where, CONV_HEADER[1:])
            if R > H or S > W:
                raise ValueError(f"{where}: filter {R}x{S} is larger than the {H}x{W} input")
            layers.append(scalesim_conv(layer_name, H, W, R, S, C, K, s, **bits))
        else:
            raise ValueError(f"{where}: expected 4 fields (name, M, N, K) or 8 (name, H, W, R, S, C, "
                             f"filters, stride), got {len(row)}")
    return Workload(name or path.stem, tuple(layers), (f"read from SCALE-Sim topology {path.name}",))


def topology_rows(workload: Workload) -> list[list]:
    """SCALE-Sim convolution rows for a workload; a layer with g groups becomes g rows.

    Batch N > 1 has no field in SCALE-Sim's format: for 1x1 layers (GEMMs included) it is folded
    into the output rows, which is exact; other layers with N > 1 are refused.
    """
    rows = []
    for layer in workload:
        sh, sw = layer.stride
        if sh != sw:
            raise ValueError(f"layer {layer.name!r}: SCALE-Sim topologies have one stride, got {layer.stride}")
        if layer.N > 1 and not layer.R == layer.S == 1:
            raise ValueError(f"layer {layer.name!r}: batch N={layer.N} cannot be written to a SCALE-Sim topology")
        H, W = (layer.N * layer.P - 1) * sh + layer.R, (layer.Q - 1) * sw + layer.S
        # SCALE-Sim splits a layer whose name contains "DP" into per-channel layers; commas break the CSV.
        name = layer.name.replace("DP", "dp").replace(",", "_")
        per_group = [H, W, layer.R, layer.S, layer.C // layer.groups, layer.K // layer.groups, sh]
        if layer.groups == 1:
            rows.append([name, *per_group])
        else:
            rows.extend([f"{name}_g{g}", *per_group] for g in range(layer.groups))
    return rows


def write_topology(workload: Workload, path, gemm: bool = False) -> Path:
    """Writes a SCALE-Sim topology (trailing commas, as SCALE-Sim's parser expects).

    gemm=True writes SCALE-Sim's GEMM form (name, M, N, K; run it with ``-i gemm``), which only
    1x1, ungrouped layers have.
    """
    path = Path(path)
    if gemm:
        rows = []
        for layer in workload:
            if layer.groups != 1 or layer.R * layer.S * layer.P * layer.Q != 1:
                raise ValueError(f"layer {layer.name!r}: only ungrouped 1x1 layers are GEMMs (name, M, N, K)")
            rows.append([layer.name.replace(",", "_"), layer.gemm_m, layer.gemm_n, layer.gemm_k])
        header = "Layer name, M, N, K,"
    else:
        rows, header = topology_rows(workload), ", ".join(CONV_HEADER) + ","
    lines = [header] + [",".join(str(x) for x in row) + "," for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
