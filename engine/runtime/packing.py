"""Packing: a (masked) dense weight -> the row-group format the C++ kernels run (spe.h).

Rows are grouped `rows` at a time (a block's output channels share one sparsity pattern, so they
share one list of columns); a group holds every column that is non-zero in any of its rows, so the
format is exact for any mask, and compact when the mask is block-structured. Groups larger than the
kernels' 8-row maximum are split; a partial last group keeps the remainder.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_GROUP_ROWS = 8


@dataclass
class PackedWeight:
    """Row-group sparse weight, arrays ready for engine._kernels.SparseConv."""

    out_channels: int
    in_channels: int
    kernel: tuple
    group_row0: np.ndarray   # int32 [G]
    group_rows: np.ndarray   # int32 [G]
    group_ptr: np.ndarray    # int64 [G+1]
    entry_col: np.ndarray    # int32 [E], column c*kh*kw + k
    values: np.ndarray       # float32, per group: entries x rows

    @property
    def stored(self) -> int:
        return int(self.values.size)

    @property
    def density(self) -> float:
        total = self.out_channels * self.in_channels * self.kernel[0] * self.kernel[1]
        return self.stored / total if total else 0.0


def group_rows_for(rows: int) -> int:
    """Kernel group height for a block of `rows` output channels (8 max, dividing `rows`)."""
    if rows <= MAX_GROUP_ROWS:
        return rows
    for r in range(MAX_GROUP_ROWS, 0, -1):
        if rows % r == 0:
            return r
    return 1


# The dense native kernel's group height: 8-row tiles for ordinary layers, one row per output
# for grouped / depthwise convs (the block-diagonal pack; depthwise convs run the direct
# depthwise kernel). Lowering, measurement and compilation all ask here.
DENSE_GROUP_ROWS = 8


# The generated (TIR) kernel's group height for a conv kept dense: 4 rows x 6 vectors (AVX-512 /
# NEON) reuses each input vector 4 times and each weight broadcast 6 times (ResNet-50's stride-2
# 3x3s at 2 threads: 4 rows 7-19% faster than 8). compile_model and the measurement ask here.
DENSE_TIR_ROWS = 4


def dense_rows(groups: int) -> int:
    """Group height of a layer kept dense on the native kernels."""
    return 1 if int(groups) != 1 else DENSE_GROUP_ROWS


def pack(weight: np.ndarray, rows: int, groups: int = 1) -> PackedWeight:
    """Pack a conv weight (O, C/groups, kh, kw) or linear weight (O, C); zeros are pruned.

    Grouped / depthwise convs (groups > 1) are packed one output row per group, each row's
    columns pointing into its own group's input channels (a block-diagonal dense weight)."""
    w = np.ascontiguousarray(weight, dtype=np.float32)
    if w.ndim == 2:
        w = w[:, :, None, None]
    if w.ndim != 4:
        raise ValueError(f"weight must be 2-D or 4-D, got shape {weight.shape}")
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if groups > 1:
        return _pack_grouped(w, groups)
    o, c, kh, kw = w.shape
    r = group_rows_for(rows)
    gemm = w.reshape(o, c * kh * kw)
    row0 = np.arange(0, o, r, dtype=np.int32)
    nrows = np.minimum(r, o - row0).astype(np.int32)
    ptr = np.zeros(len(row0) + 1, dtype=np.int64)
    cols, vals = [], []
    for g, (r0, n) in enumerate(zip(row0, nrows)):
        block = gemm[r0:r0 + n]                      # (n, cols)
        nz = np.flatnonzero(np.any(block != 0, axis=0)).astype(np.int32)
        cols.append(nz)
        vals.append(np.ascontiguousarray(block[:, nz].T).reshape(-1))  # entry-major
        ptr[g + 1] = ptr[g] + nz.size
    entry_col = np.concatenate(cols) if cols else np.zeros(0, np.int32)
    values = np.concatenate(vals).astype(np.float32) if vals else np.zeros(0, np.float32)
    return PackedWeight(o, c, (kh, kw), row0, nrows, ptr, entry_col, values)


def _pack_grouped(w: np.ndarray, groups: int) -> PackedWeight:
    o, cg, kh, kw = w.shape
    if o % groups:
        raise ValueError(f"out channels {o} not divisible by groups {groups}")
    k = kh * kw
    flat = w.reshape(o, cg * k)
    row, local = np.nonzero(flat)                     # row-major: grouped by row, sorted
    base = (row // (o // groups)) * cg * k            # first column of the row's input group
    entry_col = (base + local).astype(np.int32)
    counts = np.bincount(row, minlength=o)
    ptr = np.zeros(o + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return PackedWeight(o, cg * groups, (kh, kw), np.arange(o, dtype=np.int32),
                        np.ones(o, np.int32), ptr, entry_col, flat[row, local].astype(np.float32))
