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

Between such linears the tensors stay in that layout. A linear's input that derives from
earlier linears' results through reshapes, elementwise ops (GELU, a residual add, a scale) and
layer norms over the features is recomputed from their (1, O, 1, N) results (TokenLayout), so a
transformer's residual stream never returns to (N, K) between its layers: the residual add is
the kernel's fused residual (a linear's result plus a tensor of its shape, through a reshape
that only adds unit dims: `residual_end`), the layer norm a column norm over the channels
(column_norm.py). Only what leaves the stream (the attention's heads, the model's outputs) is
transposed back, and a tensor transposed into it is transposed once, whatever reads it.
BERT-base at 128 tokens ran 4 strided transposes and 2 of them fused with the residual add per
layer (4.2 of 28 ms); the pair of transposes around the FFN's GELU alone was 17% before that.

Layer norm moves into the stream only when N is a multiple of 16: the column norm over rows
of other lengths (stores split across cache lines) measured 4x slower than over aligned ones.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from ._tvm import relax
from .act_match import op_name, single_activation
from .act_match import static_shape as _dims
from .column_norm import column_layer_norm_kernel

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
BINARY = {"relax.add", "relax.subtract", "relax.multiply", "relax.divide"}
_ALIGN = 16     # tokens: layer norm joins the stream when N is a multiple (module docstring)


def _rows(expr) -> Optional[tuple]:
    """(N, K) of a float32 tensor shaped (1, .., 1, N, K), else None."""
    d = _dims(expr)
    if d is None or len(d) < 2 or any(v != 1 for v in d[:-2]) or \
            str(getattr(expr.ty, "dtype", "")) != "float32":
        return None
    return d[-2], d[-1]


def residual_end(g, m, cur, user):
    """rewrite._absorb_one's case for a linear over MIN_TOKENS or more rows: `cur` (N, O),
    optionally through a reshape that only adds unit dims, added to a tensor of that shape
    (not a constant; it becomes m's residual) or through an activation (BERT's GELU after the
    view back to (1, N, O)). Returns the chain's new end, else None."""
    if not token_rows(m) or m.act != "none":
        return None
    chain = [cur]
    if op_name(g.defs[user]) == "relax.reshape" and _rows(user) == _rows(cur):
        chain.append(user)
        user = g.sole_user(user)
        if user is None:
            return None
    v = g.defs[user]
    act = single_activation(v)
    if act is not None and v.args[0].same_as(chain[-1]):
        m.act = act
        m.fused.append(act)
    elif op_name(v) == "relax.add" and m.residual is None:
        a0, a1 = v.args
        other = a1 if a0.same_as(chain[-1]) else a0
        if other.same_as(chain[-1]) or g.const(other) is not None or \
                _dims(other) != _dims(chain[-1]) or _rows(other) is None:
            return None
        m.residual = other
        m.fused.append("residual")
    else:
        return None
    m.absorbed += chain
    return user


class TokenLayout:
    """The layout changes of the linears rewrite_layers runs as 1x1 convs over their rows, for
    one function: `inputs` / `output` add them to a replacement's pre-bindings. Each tensor's
    (1, K, 1, N) form, once computed (a replaced linear's result, an op recomputed from such
    results, or a transpose), is kept with the position it was bound at, and reused by every
    later replacement that needs it."""

    def __init__(self, bb, func, isa=None):
        self.bb, self.isa = bb, isa
        self.defs, self.position = {}, {}
        for block in func.body.blocks:
            for b in block.bindings:
                self.defs[b.var] = b.value
                self.position[b.var] = len(self.position)
        self.pixels: dict = {}        # var -> (its (1, K, 1, N) var, position bound at)
        self.derived: dict = {}       # var -> whether its pixel form derives from linears'
        self.norms: dict = {}         # column norm kernel name -> global var
        self.anchors: set = set()     # replaced linears' vars (bound to their transpose back)
        self.at = 0                   # position of the replacement being built

    def inputs(self, pre: list, m, n: int, residual: bool) -> tuple:
        """(x, residual, output shape) of linear match m in the pixel layout."""
        k, o = int(m.in_shape[1]), int(m.out_shape[1])
        self.at = self.position.get(m.anchor, len(self.position))
        x = self.pixel_of(pre, m.x, n, k)
        res = self.pixel_of(pre, m.residual, n, o) if residual else None
        return x, res, [1, o, 1, n]

    def output(self, pre: list, m, n: int, call):
        """The value that replaces m's binding ((N, O), or the anchor's shape when the chain
        ends after a reshape); its (1, O, 1, N) var is kept."""
        px = _step(self.bb, pre, call)
        self.pixels[m.anchor] = (px, self.at)
        self.anchors.add(m.anchor)
        o = int(m.out_shape[1])
        y = relax.op.permute_dims(_step(self.bb, pre, relax.op.reshape(px, (o, n))), [1, 0])
        shape = _dims(m.anchor)
        return y if shape == (n, o) else relax.op.reshape(_step(self.bb, pre, y), shape)

    def leave_once(self, mod):
        """mod (main rewritten) with each tensor the stream holds that something outside it
        still reads in rows (a model output, an op the stream does not run) bound to the
        transpose of its pixel form instead, placed after that form, so that its row-form chain
        is dead: no op of the stream runs twice. With every linear rewritten the reader is a
        linear's result (already transposed back); an int8 linear's residual add and a linear
        left to TVM leave the stream at other tensors. Skipped where a reader comes first."""
        dce = relax.transform.DeadCodeElimination()
        mod = dce(mod)
        func = mod["main"]
        if len(func.body.blocks) != 1:
            return mod
        bindings = list(func.body.blocks[0].bindings)
        pos = {b.var: i for i, b in enumerate(bindings)}
        first = {}
        for i, b in enumerate(bindings + [None]):
            for v in relax.analysis.free_vars(b.value if b is not None else func.body.body):
                first.setdefault(v, i)
        after: dict = {}
        for v, (px, _) in self.pixels.items():
            rows, shape = _rows(v), _dims(v)
            if v in self.anchors or v not in pos or px not in pos or rows is None or \
                    first.get(v, len(bindings)) <= pos[px]:
                continue
            n, k = rows
            pre: list = []
            y = relax.op.permute_dims(_step(self.bb, pre, relax.op.reshape(px, (k, n))), [1, 0])
            if shape != (n, k):
                y = relax.op.reshape(_step(self.bb, pre, y), shape)
            after.setdefault(px, []).extend(
                [relax.VarBinding(a, e) for a, e in pre] +
                [relax.VarBinding(v, self.bb.normalize(y))])
            bindings[pos[v]] = None
        if not after:
            return mod
        out = []
        for b in bindings:
            if b is not None:
                out.append(b)
                out += after.get(b.var, [])
        body = relax.SeqExpr([type(func.body.blocks[0])(out)], func.body.body)
        mod["main"] = relax.Function(func.params, body, func.ret_ty, func.is_pure, func.attrs)
        return dce(mod)

    def pixel_of(self, pre: list, x, n: int, k: int):
        """x, a (1, .., 1, N, K) tensor, as (1, K, 1, N): recomputed from linears' results
        when it derives from them (`_derives`), else transposed; either way once (per tensor
        under its reshapes: BERT's query, key and value read three reshapes of one)."""
        x = self._root(x, n, k)
        known = self.pixels.get(x)
        if known is not None and known[1] <= self.at:
            return known[0]
        if self._derives(x, n, k):
            px = self._rebuild(pre, x, n, k)
        else:
            flat = x if _dims(x) == (n, k) else _step(self.bb, pre, relax.op.reshape(x, (n, k)))
            px = to_pixels(self.bb, pre, flat, n, k)
        self.pixels[x] = (px, self.at)
        return px

    def _root(self, x, n: int, k: int):
        """x under the reshapes that keep its rows (N, K)."""
        while (v := self.defs.get(x)) is not None and x not in self.pixels and \
                op_name(v) == "relax.reshape" and _rows(v.args[0]) == (n, k):
            x = v.args[0]
        return x

    def _derives(self, x, n: int, k: int) -> bool:
        if x in self.pixels:
            return True
        if x not in self.derived:
            self.derived[x] = False             # cycles cannot occur; this bounds recursion
            self.derived[x] = self._op_derives(x, n, k)
        return self.derived[x]

    def _op_derives(self, x, n: int, k: int) -> bool:
        v = self.defs.get(x)
        name = op_name(v) if v is not None else None
        if v is None or _rows(x) != (n, k):
            return False
        if name == "relax.reshape" or name in ELEMENTWISE:
            return _rows(v.args[0]) == (n, k) and self._derives(v.args[0], n, k)
        if name in BINARY:
            tensors = [a for a in v.args if _rows(a) == (n, k) and _dims(a) == _dims(x)]
            return all(a in tensors or _per_channel(a, k) for a in v.args) and \
                any(self._derives(a, n, k) for a in tensors)
        if name == "relax.nn.layer_norm":
            return self._norm_ok(v, n, k) and self._derives(v.args[0], n, k)
        return False

    def _norm_ok(self, v, n: int, k: int) -> bool:
        a = v.attrs
        axes = [int(ax) for ax in a.axes]
        ndim = len(_dims(v.args[0]))
        return (self.isa is not None and n % _ALIGN == 0 and axes in ([-1], [ndim - 1])
                and bool(a.center) and bool(a.scale)
                and all(_dims(p) in ((k,),) for p in v.args[1:3]))

    def _rebuild(self, pre: list, x, n: int, k: int):
        """x's op applied in the pixel layout to its operands' pixel forms."""
        v = self.defs[x]
        name = op_name(v)
        if name == "relax.reshape":
            return self.pixel_of(pre, v.args[0], n, k)
        if name == "relax.nn.layer_norm":
            kern = column_layer_norm_kernel(k, n, float(v.attrs.epsilon), self.isa)
            gvar = self.norms.get(kern.name)
            if gvar is None:
                gvar = self.norms[kern.name] = self.bb.add_func(kern.prim_func(), kern.name)
            args = [self.pixel_of(pre, v.args[0], n, k), v.args[1], v.args[2]]
            return _step(self.bb, pre, relax.call_tir(
                gvar, relax.Tuple(args), relax.TensorType(relax.ShapeExpr([1, k, 1, n]),
                                                          "float32")))
        args = []
        for i, a in enumerate(v.args):
            if i == 0 and name in ELEMENTWISE or name in BINARY and _rows(a) == (n, k) \
                    and _dims(a) == _dims(x):
                args.append(self.pixel_of(pre, a, n, k))
            elif name in BINARY and _dims(a) and any(v != 1 for v in _dims(a)):
                args.append(_step(self.bb, pre, relax.op.reshape(a, (1, k, 1, 1))))
            else:
                args.append(a)
        return _step(self.bb, pre, relax.Call(v.op, args, v.attrs))


def _per_channel(a, k: int) -> bool:
    """A scalar, or a (.., 1, K) tensor of one value per feature (reshaped to (1, K, 1, 1))."""
    d = _dims(a)
    return d is not None and (d == () or (d[-1] == k and all(v == 1 for v in d[:-1]))
                              or all(v == 1 for v in d))
