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

Between two such linears (a transformer's FFN: linear -> GELU -> linear) the second one's input
is the first one's output through reshapes and elementwise ops: TokenLayout takes it from the
first one's (1, O, 1, N) result with those ops applied there, so no transpose runs between them
(the pair of transposes around the GELU, fused with it by TVM into one strided pass, was 17% of
BERT-base's compiled run).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ._tvm import relax
from .act_match import op_name

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


def _step(bb, pre: list, expr):
    """A new var bound to `expr` (a DataflowVar: the rewritten bindings sit in main's dataflow
    block), appended to pre."""
    value = bb.normalize(expr)
    var = relax.DataflowVar(f"tok{len(pre)}", value.ty)
    pre.append((var, value))
    return var


# ops that act on each element alone: they commute with any layout change
ELEMENTWISE = {"relax.nn.gelu", "relax.nn.gelu_tanh", "relax.nn.relu", "relax.nn.silu",
               "relax.sigmoid", "relax.tanh", "relax.erf", "relax.clip", "relax.negative"}


class TokenLayout:
    """The transposes of the linears rewrite_layers runs as 1x1 convs over their rows, for one
    function: `inputs` / `output` add them to a replacement's pre-bindings, and keep each
    replaced linear's (1, O, 1, N) result so a later one can read it in that layout."""

    def __init__(self, bb, func):
        self.bb = bb
        self.defs = {b.var: b.value for block in func.body.blocks for b in block.bindings}
        self.pixels: dict = {}        # replaced linear's var -> its (1, O, 1, N) var

    def inputs(self, pre: list, m, n: int, residual: bool) -> tuple:
        """(x, residual, output shape) of linear match m in the pixel layout."""
        k, o = int(m.in_shape[1]), int(m.out_shape[1])
        x = self._from_pixels(pre, m.x, (n, k))
        if x is None:
            x = to_pixels(self.bb, pre, m.x, n, k)
        res = to_pixels(self.bb, pre, m.residual, n, o) if residual else None
        return x, res, [1, o, 1, n]

    def output(self, pre: list, m, n: int, call):
        """The (N, O) value that replaces m's binding; its (1, O, 1, N) var is kept."""
        px = _step(self.bb, pre, call)
        self.pixels[m.anchor] = px
        return relax.op.permute_dims(
            _step(self.bb, pre, relax.op.reshape(px, (int(m.out_shape[1]), n))), [1, 0])

    def _from_pixels(self, pre: list, x, shape: tuple):
        """x as (1, K, 1, N) from an earlier replaced linear's pixel result when x is that
        linear's output through reshapes and elementwise ops only (same (N, K) shape), the ops
        re-applied in the pixel layout; else None."""
        ops, cur = [], x
        while cur not in self.pixels:
            v = self.defs.get(cur)
            name = op_name(v) if v is not None else None
            if name == "relax.reshape":
                cur = v.args[0]
            elif name in ELEMENTWISE and len(v.args) >= 1:
                ops.append(v)
                cur = v.args[0]
            else:
                return None
        if tuple(int(d) for d in cur.ty.shape.values) != shape:
            return None
        e = self.pixels[cur]
        for call in reversed(ops):
            e = _step(self.bb, pre, relax.Call(call.op, [e] + list(call.args[1:]), call.attrs))
        return e
