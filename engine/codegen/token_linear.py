"""Linear layers over many rows (a transformer's tokens) as 1x1 convs over those rows.

A linear y = x @ W^T with x (N, K) is the 1x1 conv of the (1, K, 1, N) image x^T: features
become channels, rows become pixels. The conv kernels (the native SpMM and packed dense GEMM
through the bridge, the generated flat SpMM) vectorise over pixels and stream each weight once
for all N rows; the row-at-a-time linear kernel (spmm_tir.linear_kernel, a GEMV per row) streams
the whole weight once per row: BERT-base's 768 -> 3072 layer at 128 tokens ran 21 GFLOP/s
that way. So a linear with at least MIN_TOKENS rows compiles as

    x (N, K) -> permute_dims -> reshape (1, K, 1, N) -> 1x1 conv kernel -> (1, O, 1, N)
             -> reshape (O, N) -> permute_dims -> y (N, O)

(a fused residual goes through the same transpose as x), the way engine.runtime.modules'
ConvLinear runs it in the host runtime. Fewer rows keep the row-at-a-time kernel.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ._tvm import relax

MIN_TOKENS = 8   # rows from which a linear runs as a 1x1 conv over them


def token_rows(m) -> int:
    """N for a linear match (rewrite.LayerMatch) over (N, K) with N >= MIN_TOKENS, else 0."""
    if m.op != "linear" or len(m.in_shape) != 2 or int(m.in_shape[0]) < MIN_TOKENS:
        return 0
    return int(m.in_shape[0])


def as_pixel_conv(m):
    """The 1x1 conv over (1, K, 1, N) that computes linear match m (same layer, relax vars,
    bias, activation and residual: the rewrite transposes them, see `wrap_call`)."""
    n, k = (int(d) for d in m.in_shape)
    o = int(m.weight.shape[0])
    return dataclasses.replace(
        m, op="conv2d", weight=np.ascontiguousarray(m.weight.reshape(o, k, 1, 1)),
        in_shape=(1, k, 1, n), out_shape=(1, o, 1, n), stride=(1, 1), padding=(0, 0, 0, 0),
        dilation=(1, 1), groups=1)


def to_pixels(bb, pre: list, expr, n: int, c: int):
    """(N, C) -> (1, C, 1, N): the steps appended to `pre` as (var, value) bindings (Relax
    calls take leaf arguments), the last var returned."""
    return _step(bb, pre, relax.op.reshape(
        _step(bb, pre, relax.op.permute_dims(expr, [1, 0])), (1, c, 1, n)))


def to_rows(bb, pre: list, expr, n: int, c: int):
    """(1, C, 1, N) -> (N, C): `expr` (the kernel call) and the reshape bound in `pre`, the
    transpose returned for the binding that replaces the linear's."""
    return relax.op.permute_dims(_step(bb, pre, relax.op.reshape(_step(bb, pre, expr), (c, n))),
                                 [1, 0])


def _step(bb, pre: list, expr):
    """A new var bound to `expr` (a DataflowVar: the rewritten bindings sit in main's dataflow
    block), appended to pre."""
    value = bb.normalize(expr)
    var = relax.DataflowVar(f"tok{len(pre)}", value.ty)
    pre.append((var, value))
    return var
