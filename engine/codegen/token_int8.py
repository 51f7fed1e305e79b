"""int8 linear layers in a transformer's token stream (token_linear.py, for the int8 artifacts).

lower_int8 turns each calibrated nn.Linear into a QLinear: float rows in and out, imported as
call_dps_packed("spe.v1.qlinear") on (N, K). Each such call quantizes its rows into the
(1, K/4, 1, N, 4) image the 1x1 int8 kernel reads and dequantizes the result back into rows:
two transposes a layer (BERT's 1024 -> 256 at 128 tokens: 245 us a call, the kernel 79 of it).
Over MIN_TOKENS or more rows this pass runs it as the same layer on the pixels of (1, K, 1, N)
(spe.v1.qconv2d_float: quantize NCHW -> NCHW4, the layer, dequantize NCHW4 -> NCHW; the same
floats bit for bit, 113 us there), and the TokenLayout of the fp32 linears keeps the stream in
that layout between layers: what feeds a linear (a layer norm as a column norm, GELU, the
residual add) is recomputed from the previous linears' (1, O, 1, N) results instead of being
transposed, and only what leaves the stream (the attention heads, the outputs) is transposed
back. A residual add and then an activation after the linear (BERT's output projections, its
GELU) run in the call's float epilogue, as the fp32 kernels' (token_linear.residual_end finds
them): y = act(dequantized + residual), one pass less over the tensor each.
"""
from __future__ import annotations

import numpy as np

from ._tvm import relax, tvm
from .act_match import static_shape
from .native_lowering import ACT_CODES
from .rewrite import LayerMatch, Replacement, _Graph, rewrite_layers
from .token_linear import MIN_TOKENS, residual_end

QLINEAR = "spe.v1.qlinear"           # float rows in and out (native_lowering._qlinear)
QLINEAR_PIXELS = "spe.v1.qconv2d_float"   # float NCHW in and out (the bridge)


def _qlinear_args(value):
    """The argument list of a call_dps_packed into spe.v1.qlinear (x, then its constants), or
    None for any other binding."""
    if not isinstance(value, relax.Call) or \
            not value.op.same_as(tvm.ir.Op.get("relax.call_dps_packed")):
        return None
    fn, args = value.args[0], value.args[1]
    if getattr(fn, "global_symbol", None) != QLINEAR or not isinstance(args, relax.Tuple):
        return None
    return list(args.fields)


def qlinear_matches(func) -> list:
    """(LayerMatch, Replacement) for each int8 linear of `func` over MIN_TOKENS or more rows whose
    constants are inline (as native_lowering emits them), in binding order."""
    out, g = [], None        # the graph's uses: built at the first int8 linear
    for block in func.body.blocks:
        for b in block.bindings:
            args = _qlinear_args(b.value)
            if args is None:
                continue
            d, o = static_shape(args[0]), static_shape(b.var)
            if d is None or o is None or len(d) != 2 or d[0] < MIN_TOKENS or \
                    not all(isinstance(c, tvm.ir.expr.Constant) for c in args[1:]):
                continue
            n, k = d
            m = LayerMatch(layer=f"qlinear{len(out)}", op="linear",
                           weight=np.zeros((o[1], 0), np.float32), bias=None, x=args[0],
                           in_shape=(n, k), out_shape=(n, o[1]), anchor=b.var)
            g = g or _Graph(func, {})
            cur = b.var      # the float epilogue: a residual add, then an activation
            while (user := g.sole_user(cur)) is not None and \
                    (end := residual_end(g, m, cur, user)) is not None:
                cur = end
            m.anchor = cur
            tables = [c.value.numpy() for c in args[1:]]
            tables[0] = np.concatenate([tables[0][:18], np.array(
                [ACT_CODES[m.act], int(m.residual is not None)], np.int32)])
            out.append((m, Replacement(None, tables, m.residual is not None,
                                       extern=QLINEAR_PIXELS, tokens=n)))
    return out


def stream_qlinears(mod, isa=None):
    """mod with its int8 linears over tokens in the token stream (module doc); isa (a
    tir_text.VectorISA): layer norms between them may run as column norms."""
    found = qlinear_matches(mod["main"])
    if not found:
        return mod
    reps = {id(m): r for m, r in found}
    new, _ = rewrite_layers(mod, [m for m, _ in found], lambda m: reps[id(m)], isa)
    return new
