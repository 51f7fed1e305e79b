"""The activations rewrite.find_layers fuses into the end of a conv / linear chain: relu,
clip(0, 6), gelu and gelu_tanh (one op each: `single_activation`), and those that read their
input twice, as TVM's torch importer decomposes them (`gated_activation`):

    silu(x)      = multiply(x, sigmoid(x))
    hardswish(x) = divide(multiply(x, clip(clip(add(x, 3), 0, inf), -inf, 6)), 6)

The kernels' epilogues compute them (SPE_ACT_*, kernels/src/isa/activation.h;
tir_text.activation).
Operand order of the commutative ops and clip(0, 6) in one step are accepted too.
"""
from __future__ import annotations

from typing import Optional

from ._tvm import tvm

_Call = tvm.ir.Call


def op_name(expr) -> Optional[str]:
    if isinstance(expr, _Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def static_shape(expr) -> Optional[tuple]:
    """The static shape of a relax expression's tensor type, else None."""
    values = getattr(getattr(getattr(expr, "ty", None), "shape", None), "values", None)
    try:
        return None if values is None else tuple(int(v) for v in values)
    except (TypeError, ValueError):
        return None


def const_float(v) -> Optional[float]:
    """A scalar constant's value: a PrimValue / FloatImm, or a 0-d (or 1-element) constant."""
    value = getattr(v, "value", None)
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "numpy"):        # relax Constant: .value is a runtime tensor
        arr = value.numpy()
        if arr.size == 1:
            return float(arr.reshape(-1)[0])
    return None


def single_activation(value) -> Optional[str]:
    """The activation a one-input op applies (relu, clip(0, 6), gelu, gelu_tanh), else None."""
    name = op_name(value)
    if name == "relax.nn.relu":
        return "relu"
    if name in ("relax.nn.gelu", "relax.nn.gelu_tanh"):
        return name[len("relax.nn."):]
    if name == "relax.clip" and len(value.args) == 3:
        lo, hi = const_float(value.args[1]), const_float(value.args[2])
        if lo == 0.0 and hi == 6.0:
            return "relu6"
    return None


def gated_activation(g, cur, taken: set) -> Optional[tuple]:
    """(act, chain end, absorbed vars) when `cur`'s uses are exactly a silu or a hardswish of
    it, else None. `g` is rewrite._Graph; bindings in `taken` belong to an earlier chain."""
    users = g.uses.get(cur, [])
    if len(users) != 2 or any(u is None or u in taken for u in users):
        return None
    for first, mul in (users, users[::-1]):
        if not _is_mul_of(g.defs[mul], cur):
            continue
        other = _other(g.defs[mul], cur)
        if op_name(g.defs[first]) == "relax.sigmoid" and other.same_as(first) and \
                g.sole_user(first) == mul:
            return "silu", mul, [cur, first]
        chain = _hardswish_gate(g, cur, first)
        if chain is not None and other.same_as(chain[-1]) and g.sole_user(chain[-1]) == mul:
            end = g.sole_user(mul)
            if end is not None and end not in taken and _is_div6(g.defs[end], mul):
                return "hardswish", end, [cur, *chain, mul]
    return None


def _is_mul_of(value, x) -> bool:
    return op_name(value) == "relax.multiply" and any(a.same_as(x) for a in value.args)


def _other(value, x):
    a0, a1 = value.args
    return a1 if a0.same_as(x) else a0


def _hardswish_gate(g, x, add) -> Optional[list]:
    """[add, clip(s)] computing min(max(x + 3, 0), 6), each with one use, else None."""
    v = g.defs[add]
    if op_name(v) != "relax.add" or const_float(_other(v, x)) != 3.0:
        return None
    chain, lo, hi = [add], None, None
    cur = add
    while lo is None or hi is None:
        nxt = g.sole_user(cur)
        nv = g.defs.get(nxt) if nxt is not None else None
        if nv is None or op_name(nv) != "relax.clip" or not nv.args[0].same_as(cur):
            return None
        a, b = const_float(nv.args[1]), const_float(nv.args[2])
        lo = a if a is not None and a > float("-inf") else lo
        hi = b if b is not None and b < float("inf") else hi
        chain.append(nxt)
        cur = nxt
        if len(chain) > 3:
            return None
    return chain if (lo, hi) == (0.0, 6.0) else None


def _is_div6(value, x) -> bool:
    name = op_name(value)
    if name == "relax.divide" and value.args[0].same_as(x):
        return const_float(value.args[1]) == 6.0
    if name == "relax.multiply" and any(a.same_as(x) for a in value.args):
        f = const_float(_other(value, x))
        return f is not None and abs(f * 6.0 - 1.0) < 1e-6
    return False
