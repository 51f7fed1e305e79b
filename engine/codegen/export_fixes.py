"""Rewrites of a decomposed torch.export graph into ops TVM's importer converts, applied just
before the import (engine.codegen._tvm.import_exported_program). Pure torch: each fix is one
small function over the graph's nodes, listed in FIXES, and changes only nodes whose import
would fail or compute something else.

    float_floor_division   a // b, torch.div(a, b, rounding_mode="floor" | "trunc") and
                           torch.floor_divide on floating tensors (DETR's sine position
                           embedding: `dim_t // 2`): TVM's floor_divide requires one dtype for
                           both operands (the divisor is an int constant there), so the node
                           becomes floor(a / b) (trunc(a / b)) in the tensor's float dtype
    explicit_scan_dtypes   cumsum / cumprod of bool / small ints: the promoted dtype named
    positive_select_index  x[:, -1] (select with a negative index): TVM's importer makes it
                           take(x, -1, mode="fast"), which reads before the tensor (a
                           classifier on an LSTM's last step gave 1e31): indexed from the front
    square_and_cube        x ** 2 and x ** 3 on a float tensor as x * x and x * x * x (what
                           torch's CPU kernel computes, bit for bit): TVM's power calls libm's
                           powf per element (GPT-2's GELU, 0.044715 * x ** 3: a third of its
                           artifact's time went to powf)
"""
from __future__ import annotations

import torch

aten = torch.ops.aten

# (op overload, rounding) of the float divisions rewritten; rounding None = the node's kwarg
_FLOOR_DIVS = {aten.floor_divide.default: "floor", aten.floor_divide.Scalar: "floor",
               aten.div.Tensor_mode: None, aten.div.Scalar_mode: None}
_ROUND = {"floor": aten.floor.default, "trunc": aten.trunc.default}


def _val(arg):
    return getattr(arg, "meta", {}).get("val") if isinstance(arg, torch.fx.Node) else None


def float_floor_division(graph: torch.fx.Graph) -> int:
    """Floating floor / trunc divisions as round(a / b); returns how many were rewritten."""
    done = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in _FLOOR_DIVS:
            continue
        out = node.meta.get("val")
        if out is None or not out.dtype.is_floating_point:
            continue                          # integer floor division imports as it is
        rounding = _FLOOR_DIVS[node.target] or node.kwargs.get("rounding_mode")
        if rounding not in _ROUND:
            continue
        a, b = node.args[:2]
        with graph.inserting_before(node):
            if _val(b) is not None and _val(b).dtype != out.dtype:
                b = graph.call_function(aten._to_copy.default, (b,), {"dtype": out.dtype})
                b.meta["val"] = _val(node.args[1]).to(out.dtype)
            if _val(a) is not None and _val(a).dtype != out.dtype:
                a2 = graph.call_function(aten._to_copy.default, (a,), {"dtype": out.dtype})
                a2.meta["val"] = _val(a).to(out.dtype)
                a = a2
            div = graph.call_function(aten.div.Tensor, (a, b))
            div.meta = dict(node.meta)
            rounded = graph.call_function(_ROUND[rounding], (div,))
            rounded.meta = dict(node.meta)
        node.replace_all_uses_with(rounded)
        graph.erase_node(node)
        done += 1
    return done


def explicit_scan_dtypes(graph: torch.fx.Graph) -> int:
    """torch's cumsum / cumprod of a bool or small-int tensor returns int64 (dtype=None means
    "promote"); TVM's importer keeps the input's dtype and LLVM then fails adding bools
    (transformers' packed-sequence mask: (position_diff != 1).cumsum(-1)). Name the dtype the
    node returns (its meta) wherever torch promotes."""
    done = 0
    for node in graph.nodes:
        if node.op != "call_function" or "dtype" in node.kwargs:
            continue
        if node.target not in (aten.cumsum.default, aten.cumprod.default):
            continue
        out, src = node.meta.get("val"), _val(node.args[0])
        if out is not None and src is not None and out.dtype != src.dtype:
            node.kwargs = {**node.kwargs, "dtype": out.dtype}
            done += 1
    return done


def positive_select_index(graph: torch.fx.Graph) -> int:
    """select(x, dim, i < 0) as select(x, dim, i + size): the same element, from the front."""
    done = 0
    for node in graph.nodes:
        if node.op != "call_function" or node.target is not aten.select.int:
            continue
        src, dim, index = node.args[0], node.args[1], node.args[2]
        val = _val(src)
        if isinstance(index, int) and index < 0 and val is not None:
            node.args = (src, dim, index + int(val.shape[dim]))
            done += 1
    return done


def square_and_cube(graph: torch.fx.Graph) -> int:
    """pow(x, 2.0 | 3.0) of a float tensor as products of x (module doc)."""
    done = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not aten.pow.Tensor_Scalar:
            continue
        x, e = node.args[0], node.args[1]
        out, src = node.meta.get("val"), _val(x)
        if out is None or src is None or not out.dtype.is_floating_point or \
                src.dtype != out.dtype or isinstance(e, bool) or \
                not isinstance(e, (int, float)) or float(e) not in (2.0, 3.0):
            continue
        with graph.inserting_before(node):
            y = graph.call_function(aten.mul.Tensor, (x, x))
            y.meta["val"] = out
            if float(e) == 3.0:
                y = graph.call_function(aten.mul.Tensor, (y, x))
                y.meta["val"] = out
        node.replace_all_uses_with(y)
        graph.erase_node(node)
        done += 1
    return done


FIXES = (float_floor_division, explicit_scan_dtypes, positive_select_index, square_and_cube)


def apply_fixes(ep) -> dict:
    """Every fix over the exported program's graph, in order: {fix name: nodes changed}."""
    counts = {fix.__name__: fix(ep.graph) for fix in FIXES}
    if any(counts.values()):
        ep.graph.lint()
        ep.graph_module.recompile()
    return counts
