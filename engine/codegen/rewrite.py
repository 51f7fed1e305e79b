"""Relax rewrite: every conv2d / linear with constant weights -> call_tir to a generated kernel.

`find_layers` walks the main function's dataflow block and matches chains

    conv2d(x, W) [+ bias] [batch_norm -> [0]] [+ bias] [+ residual] [act]
    matmul(x, permute_dims(W)) [+ bias] [act]

act: relu | clip(0, 6) | gelu | gelu_tanh | silu | hardswish (the last two: act_match.py)

where every absorbed intermediate has exactly one use, folds the BatchNorm and biases into
(W, b) on the host (numpy), and names each match after the torch parameter its weight came from
("layer1.0.conv1"). `rewrite_layers` replaces each chain's last binding by a call_tir to the
PrimFunc its `choose` callback generates (sparse, dense or grouped row groups) and drops the
absorbed bindings. Chains whose weights are not constant are left to TVM's legalization.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ._tvm import relax, tvm
from .act_match import gated_activation, single_activation
from .act_match import static_shape as _shape
from .act_match import op_name as _op_name
from .token_linear import TokenLayout, residual_end

_Call = tvm.ir.Call
_Const = tvm.ir.expr.Constant


@dataclass
class LayerMatch:
    """One conv / linear chain found in the graph, with BN and bias folded."""

    layer: str                       # torch layer name, e.g. "layer1.0.conv1"
    op: str                          # "conv2d" | "linear"
    weight: np.ndarray               # conv (O, C/groups, kh, kw), linear (O, K); BN folded
    bias: Optional[np.ndarray]
    x: object                        # relax expr: the layer input
    in_shape: tuple
    out_shape: tuple
    anchor: object                   # relax var whose binding is replaced
    absorbed: list = field(default_factory=list)   # relax vars whose bindings are dropped
    residual: object = None          # relax expr added before the activation
    act: str = "none"
    fused: list = field(default_factory=list)      # "batch_norm", "bias", "residual", "relu" ...
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)    # top, left, bottom, right
    dilation: tuple = (1, 1)
    groups: int = 1


def _dtype(expr) -> Optional[str]:
    return str(getattr(getattr(expr, "ty", None), "dtype", ""))


class _Graph:
    """Bindings of main's dataflow block: definitions, uses, constant folding of params."""

    def __init__(self, func, params: dict):
        self.func = func
        self.params = params                      # param var name -> numpy array
        self.defs: dict = {}                      # var -> value
        self.order: dict = {}                     # var -> binding index
        self.uses: dict = {}                      # var -> [user var or None (function output)]
        blocks = func.body.blocks
        for bi, block in enumerate(blocks):
            for i, b in enumerate(block.bindings):
                self.defs[b.var] = b.value
                self.order[b.var] = (bi, i)
                for v in _vars_in(b.value):
                    self.uses.setdefault(v, []).append(b.var)
        for v in _vars_in(func.body.body):
            self.uses.setdefault(v, []).append(None)

    def sole_user(self, var):
        users = self.uses.get(var, [])
        if len(users) != 1 or users[0] is None:
            return None
        return users[0]

    def const(self, expr) -> Optional[np.ndarray]:
        """The value of a constant-valued expression (constant, param, or a reshape / transpose
        chain of those), else None."""
        if isinstance(expr, _Const):
            return expr.value.numpy()
        if isinstance(expr, (relax.Var, tvm.ir.expr.Var)) and expr not in self.defs:
            return self.params.get(getattr(expr, "name", None))
        if expr in self.defs:
            return self.const(self.defs[expr])
        name = _op_name(expr)
        if name in ("relax.reshape", "relax.permute_dims", "relax.expand_dims", "relax.squeeze"):
            inner = self.const(expr.args[0])
            if inner is None:
                return None
            if name == "relax.permute_dims":
                axes = expr.attrs.axes
                return np.transpose(inner, None if axes is None else [int(a) for a in axes])
            out = _shape(expr)
            return None if out is None else inner.reshape(out)
        return None


def _vars_in(expr) -> list:
    """Relax vars referenced by expr (recursing through calls, tuples, tuple items)."""
    out = []
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, (relax.DataflowVar, relax.Var)):
            out.append(e)
        elif isinstance(e, _Call):
            stack.extend(e.args)
        elif isinstance(e, relax.Tuple):
            stack.extend(e.fields)
        elif isinstance(e, relax.TupleGetItem):
            stack.append(e.tuple_value)
        elif isinstance(e, relax.SeqExpr):
            for blk in e.blocks:
                for b in blk.bindings:
                    stack.append(b.value)
            stack.append(e.body)
    return out


def find_layers(func, params: dict, layer_names: dict) -> list:
    """All conv2d / linear chains of `func` with constant weights.

    params: param var name -> numpy value; layer_names: param var name -> torch layer name.
    """
    g = _Graph(func, params)
    matches = []
    taken: set = set()
    for var, value in g.defs.items():
        if var in taken:
            continue
        m = _match_conv(g, var, value, layer_names, taken) or \
            _match_linear(g, var, value, layer_names, taken)
        if m is not None:
            matches.append(m)
            taken.update(m.absorbed)
            taken.add(m.anchor)
    return matches


def _layer_name(expr, layer_names: dict, fallback: str) -> str:
    name = getattr(expr, "name", None)
    return layer_names.get(name, name or fallback)


def _match_conv(g: _Graph, var, value, layer_names, taken: set) -> Optional[LayerMatch]:
    if _op_name(value) != "relax.nn.conv2d":
        return None
    a = value.attrs
    if (a.data_layout != "NCHW" or a.kernel_layout != "OIHW" or
            a.out_layout not in ("NCHW", "") or str(a.out_dtype) not in ("float32", "")):
        return None
    x, wexpr = value.args
    w = g.const(wexpr)
    in_shape, out_shape = _shape(x), _shape(var)
    if w is None or in_shape is None or out_shape is None or len(in_shape) != 4 or \
            _dtype(x) != "float32" or w.dtype != np.float32:
        return None
    pad = tuple(int(p) for p in a.padding)
    if len(pad) == 2:
        pad = (pad[0], pad[1], pad[0], pad[1])
    m = LayerMatch(_layer_name(wexpr, layer_names, var.name), "conv2d", w.astype(np.float32),
                   None, x, in_shape, out_shape, var,
                   stride=tuple(int(s) for s in a.strides), padding=pad,
                   dilation=tuple(int(d) for d in a.dilation), groups=int(a.groups))
    _extend(g, m, 1, taken)
    return m


def _match_linear(g: _Graph, var, value, layer_names, taken: set) -> Optional[LayerMatch]:
    if _op_name(value) != "relax.matmul":
        return None
    x, wt = value.args
    w = g.const(wt)
    in_shape, out_shape = _shape(x), _shape(var)
    if w is None or w.ndim != 2 or in_shape is None or len(in_shape) != 2 or \
            _dtype(x) != "float32" or out_shape is None:
        return None
    # the weight is W^T (K, O); name it after the parameter under the permute_dims
    src = g.defs.get(wt, wt)
    name_expr = src.args[0] if _op_name(src) == "relax.permute_dims" else wt
    m = LayerMatch(_layer_name(name_expr, layer_names, var.name), "linear",
                   np.ascontiguousarray(w.T.astype(np.float32)), None, x, in_shape, out_shape,
                   var)
    _extend(g, m, 1, taken)
    return m


def _extend(g: _Graph, m: LayerMatch, channel_axis: int, taken: set) -> None:
    """Absorb bias adds, BatchNorm, a residual add and an activation after m.anchor (bindings
    in `taken` belong to an earlier chain: a residual add joins the first branch matched)."""
    m.anchor = _absorb(g, m, channel_axis, taken)


def _absorb(g: _Graph, m: LayerMatch, channel_axis: int, taken: set):
    """Walk the single-use chain after m.anchor, folding what it can; returns the chain end."""
    cur = m.anchor
    while True:
        gated = gated_activation(g, cur, taken) if m.act == "none" else None
        if gated is not None:   # silu / hardswish: x used twice
            m.act, end, absorbed = gated
            m.absorbed += absorbed
            m.fused.append(m.act)
            return end
        user = g.sole_user(cur)
        if user is None or user in taken:
            return cur
        nxt = _absorb_one(g, m, channel_axis, cur, user)
        if nxt is None:
            return cur
        cur = nxt


def _absorb_one(g: _Graph, m: LayerMatch, channel_axis: int, cur, user):
    """Fold binding `user`, the sole user of `cur`, into m; returns the chain's new end, or None
    (the chain ends at `cur`). Order: BatchNorm and biases, then a residual add, then one
    activation."""
    uval = g.defs[user]
    name = _op_name(uval)
    if name == "relax.nn.batch_norm" and m.op == "conv2d" and uval.args[0].same_as(cur) \
            and m.residual is None and m.act == "none":
        return _absorb_batch_norm(g, m, channel_axis, cur, user)
    if name in ("relax.add", "relax.reshape") and \
            (end := residual_end(g, m, cur, user)) is not None:
        return end          # a linear over tokens: its residual or act, in their layout
    if name == "relax.add" and m.residual is None and m.act == "none":
        return _absorb_add(g, m, cur, user)
    act = single_activation(uval)
    if act is not None and m.act == "none" and uval.args[0].same_as(cur):
        m.act = act
        m.absorbed.append(cur)
        m.fused.append(act)
        return user
    return None


def _absorb_batch_norm(g: _Graph, m: LayerMatch, channel_axis: int, cur, user):
    """conv -> batch_norm (inference, constant statistics) -> [0]: folded into (W, b)."""
    uval = g.defs[user]
    item = g.sole_user(user)
    if item is None or not isinstance(g.defs[item], relax.TupleGetItem) or \
            g.defs[item].index != 0:
        return None
    at = uval.attrs
    if bool(at.training) or int(at.axis) != channel_axis:
        return None
    vals = [g.const(e) for e in uval.args[1:5]]
    if any(v is None for v in vals):
        return None
    gamma, beta, mean, var_ = (v.astype(np.float64).reshape(-1) for v in vals)
    scale = (gamma if at.scale else 1.0) / np.sqrt(var_ + float(at.epsilon))
    shift = beta if at.center else 0.0
    b = m.bias.astype(np.float64) if m.bias is not None else np.zeros(m.weight.shape[0])
    m.weight = (m.weight * scale.reshape(-1, *([1] * (m.weight.ndim - 1)))).astype(np.float32)
    m.bias = ((b - mean) * scale + shift).astype(np.float32)
    m.absorbed += [cur, user]
    m.fused.append("batch_norm")
    return item


def _absorb_add(g: _Graph, m: LayerMatch, cur, user):
    """An add of a per-channel constant (a bias) or, after a conv, of a tensor of the output's
    shape (a residual)."""
    a0, a1 = g.defs[user].args
    other = a1 if a0.same_as(cur) else a0
    c = g.const(other)
    o = m.weight.shape[0]
    if c is not None:
        if c.size not in (1, o) or not _channel_broadcast(c.shape, len(m.out_shape), o):
            return None
        m.bias = (0 if m.bias is None else m.bias) + np.broadcast_to(
            c.reshape(-1), (o,)).astype(np.float32)
        m.absorbed.append(cur)
        m.fused.append("bias")
        return user
    if m.op == "conv2d" and _shape(other) == m.out_shape and \
            _dtype(other) == "float32" and not other.same_as(cur):
        m.residual = other
        m.absorbed.append(cur)
        m.fused.append("residual")
        return user
    return None


def _channel_broadcast(shape: tuple, ndim: int, o: int) -> bool:
    """A constant of this shape broadcasts along the channel axis (1) of an ndim tensor."""
    shape = tuple(shape)
    if len(shape) > ndim:
        return False
    full = (1,) * (ndim - len(shape)) + shape
    return all(d == 1 for i, d in enumerate(full) if i != 1) if ndim > 2 else \
        all(d == 1 for d in full[:-1])


# --------------------------------------------------------------------------------------- rewrite

@dataclass
class Replacement:
    """What choose() returns for a match: a PrimFunc and its constant tables (call_tir), or
    the name of a packed function (call_dps_packed: the C++ kernels' bridge)."""

    prim_func: object
    tables: list
    has_residual: bool
    key: str = ""            # equal keys: the same PrimFunc, added to the module once
    extern: str = ""         # packed function name; its last input is the residual, or a
                             # 1-element placeholder when the layer has none
    tokens: int = 0          # a linear over N rows run as a 1x1 conv over them (N; see
                             # token_linear): x, the residual and y are transposed around it


def rewrite_layers(mod, matches: list, choose: Callable, isa=None) -> tuple:
    """Replace each match's chain by call_tir(choose(match)); choose returns a Replacement or
    None (leave the chain to TVM). isa (a tir_text.VectorISA): layer norms between linears
    over tokens may run in their layout (token_linear). Returns (new module, [(match,
    replacement)])."""
    func = mod["main"]
    done = []
    bb = relax.BlockBuilder(mod)
    tokens = TokenLayout(bb, func, isa)
    by_anchor = {}
    drop = set()
    shared: dict = {}
    for m in matches:
        rep = choose(m)
        if rep is None:
            continue
        x, res, shape, pre = m.x, m.residual, [int(d) for d in m.out_shape], []
        if rep.tokens:   # x, the residual and y transposed around the kernel (token_linear)
            x, res, shape = tokens.inputs(pre, m, rep.tokens, rep.has_residual)
        args = [x] + [relax.const(t) for t in rep.tables]
        out_ty = relax.TensorType(relax.ShapeExpr(shape), "float32")
        if rep.extern:
            args.append(res if rep.has_residual else relax.const(np.zeros(1, np.float32)))
            call = relax.call_dps_packed(rep.extern, relax.Tuple(args), out_ty)
        else:
            gvar = shared.get(rep.key) if rep.key else None
            if gvar is None:
                gvar = bb.add_func(rep.prim_func, rep.prim_func.attrs["global_symbol"])
                if rep.key:
                    shared[rep.key] = gvar
            if rep.has_residual:
                args.append(res)
            call = relax.call_tir(gvar, relax.Tuple(args), out_ty)
        if rep.tokens:
            call = tokens.output(pre, m, rep.tokens, call)
        by_anchor[m.anchor] = (pre, call)
        drop.update(m.absorbed)
        done.append((m, rep))
    new_blocks = []
    for block in func.body.blocks:
        bindings = []
        for b in block.bindings:
            if b.var in drop:
                continue
            if b.var in by_anchor:
                pre, call = by_anchor[b.var]
                bindings += [relax.VarBinding(v, e) for v, e in pre]
                bindings.append(relax.VarBinding(b.var, bb.normalize(call)))
            else:
                bindings.append(b)
        new_blocks.append(type(block)(bindings))
    body = relax.SeqExpr(new_blocks, func.body.body)
    new_func = relax.Function(func.params, body, func.ret_ty, func.is_pure, func.attrs)
    new_mod = bb.get()
    new_mod[new_mod.get_global_var("main")] = new_func
    return (tokens.leave_once(new_mod) if tokens.pixels else new_mod), done

