"""Max pooling as a generated kernel: each R.nn.max_pool2d (NCHW, float32, dilation 1, floor
mode, static shape) becomes a call_tir to a PrimFunc written for its shape.

TVM legalizes max pooling to one reduction over the window per output; scheduled (the Window
rule of schedules.py) its innermost loop runs over output columns, so a stride-2 pool loads
every input column twice through gathers, and padding is a test per element: ResNet-50's 3x3
stride-2 stem pool took 1.0 ms at 1 thread, 4-6% of its 80%-sparse artifacts. Written
separably instead, as the C++ kernel does (kernels/src/pool/max_pool.cc), per channel and output
row: the max over the window's input rows, contiguous and vectorised (one pass where the window
is inside the image), into a row buffer padded with -inf on both sides; then per output column
the max over the window's columns of that row, at strides 2-4 read as whole vectors and
deinterleaved (a permute, not a load per lane). Window rows outside the image are skipped, not
padded (torch allows pad <= kernel / 2, so every window holds at least one input row).

T.max is the vector max (NaN not propagated), as in TVM's own legalization it replaces.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ._tvm import relax, tvm
from .rewrite import _dtype, _shape
from .tir_text import ATTRS, Kernel, PLACEHOLDER, Src, VectorISA, safe_name, vector_loops

# The padded row's fill, -inf, comes in as a one-element table LOW: a kernel that reads only its
# input is analysed by Relax's RewriteDataflowReshape as a possible reshape, and that analysis
# asserts a block structure these loop nests do not have.
_LOW = np.array([-np.inf], np.float32)


def _geometry(call) -> Optional[tuple]:
    """(kernel, stride, padding (top, left)) of a max_pool2d call the kernel handles, else None."""
    a = call.attrs
    if (a.layout != "NCHW" or a.out_layout != "NCHW" or bool(a.ceil_mode)
            or [int(d) for d in a.dilation] != [1, 1] or _shape(call.args[0]) is None
            or _dtype(call.args[0]) != "float32"):
        return None
    pt, pl, pb, pr = (int(p) for p in a.padding)
    if (pt, pl) != (pb, pr):
        return None
    return tuple(int(k) for k in a.pool_size), tuple(int(s) for s in a.strides), (pt, pl)


def max_pool_kernel(in_shape: tuple, kernel: tuple, stride: tuple, padding: tuple,
                    isa: VectorISA) -> Kernel:
    """The PrimFunc (as TVMScript) of one max pooling shape; see the module docstring."""
    n, c, h, w = in_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"max_pool2d {kernel} stride {stride} pad {padding} on {in_shape}: "
                         f"empty output")
    lanes = isa.lanes
    wp = max(w + 2 * pw, (wo - 1) * sw + kw)          # the padded row the columns read
    # deinterleaving loads read up to sw vectors from a window's first column: slack after the
    # row, filled with -inf like the padding (its lanes are shuffled away, but garbage there
    # could be denormals or NaNs if a compiler moved the max before the shuffle)
    wb = wp + (sw * lanes if _deinterleaved(wo, sw, lanes) else 0)
    s = Src()
    s("# from tvm.script import tirx as T")
    s("@T.prim_func")
    with s.block(f"def {PLACEHOLDER}(X: T.Buffer(({n}, {c}, {h}, {w}), \"float32\"), "
                 f"LOW: T.Buffer((1,), \"float32\"), "
                 f"Y: T.Buffer(({n}, {c}, {ho}, {wo}), \"float32\")):"):
        s(ATTRS)
        s(f"XF = T.decl_buffer(({n * c * h * w},), \"float32\", data=X.data)")
        s(f"YF = T.decl_buffer(({n * c * ho * wo},), \"float32\", data=Y.data)")
        # one padded row per channel, allocated at the top (TVM wants a root block: a buffer
        # allocated inside the parallel loop leaves the function without one)
        s(f"RB = T.alloc_buffer(({n * c * wb},), \"float32\")")
        with s.block(f"for nc in T.parallel({n * c}):"):
            s(f"R = T.decl_buffer(({wb},), \"float32\", data=RB.data, elem_offset=nc * {wb})")
            vector_loops(s, wb // lanes, wb % lanes, lanes, lambda i: s(f"R[{i}] = LOW[0]"))
            with s.block(f"for oh in T.serial({ho}):"):
                top = f"oh * {sh} - {ph}"
                # a window whose rows are all in the image: one pass, kh loads and a store
                with s.block(f"if {top} >= 0 and {top} + {kh} <= {h}:"):
                    rows = [f"XF[(nc * {h} + {top} + {r}) * {w} + {{i}}]" for r in range(kh)]
                    vector_loops(s, w // lanes, w % lanes, lanes, lambda i: s(
                        f"R[{pw} + {i}] = " + _max_of(rows).replace("{i}", i)))
                with s.block("else:"):
                    vector_loops(s, w // lanes, w % lanes, lanes,
                                 lambda i: s(f"R[{pw} + {i}] = LOW[0]"))
                    with s.block(f"for r in T.serial({kh}):"):
                        row = f"{top} + r"
                        with s.block(f"if {row} >= 0 and {row} < {h}:"):
                            vector_loops(s, w // lanes, w % lanes, lanes, lambda i: s(
                                f"R[{pw} + {i}] = T.max(R[{pw} + {i}], "
                                f"XF[(nc * {h} + {row}) * {w} + {i}])"))
                _columns(s, f"(nc * {ho} + oh) * {wo}", wo, kw, sw, lanes)
    name = safe_name(f"tir_max_pool_{kh}x{kw}s{sh}x{sw}_{c}x{h}x{w}")
    return Kernel(name, s.text(), [_LOW], False, (n, c, ho, wo),
                  f"tir_f32_maxpool_{kh}x{kw}s{sh}x{sw}__{isa.name}")


def _deinterleaved(wo: int, sw: int, lanes: int) -> bool:
    """Whether the column pass reads strided columns as whole vectors and shuffles (strides 2-4
    over at least one full vector of outputs): a strided vector load compiles to a scalar load
    and an insert per lane."""
    return 2 <= sw <= 4 and wo >= lanes


def _columns(s: Src, out: str, wo: int, kw: int, sw: int, lanes: int) -> None:
    """One output row from the padded row R: per output column j, the max of R[j * sw + k]
    over the window's columns k. At strides 2-4 each full vector of outputs takes, per k, sw
    contiguous vectors from R[jo * lanes * sw + k] and keeps every sw-th lane (a permute per
    vector: vpermt2ps / uzp) instead of lanes scalar loads."""
    full, rest = wo // lanes, wo % lanes
    if _deinterleaved(wo, sw, lanes):
        pick = [i * sw for i in range(lanes)]
        with s.block(f"for jo in T.serial({full}):"):
            cols = []
            for k in range(kw):
                vecs = ", ".join(f"R[T.Ramp(jo * {lanes * sw} + {k + t * lanes}, 1, {lanes})]"
                                 for t in range(sw))
                cols.append(f"T.Shuffle([{vecs}], {pick})")
            s(f"YF[T.Ramp({out} + jo * {lanes}, 1, {lanes})] = {_max_of(cols)}")
        if rest:
            cols = [f"R[({full * lanes} + l) * {sw} + {k}]" for k in range(kw)]
            with s.block(f"for l in T.vectorized({rest}):"):
                s(f"YF[{out} + {full * lanes} + l] = {_max_of(cols)}")
        return
    cols = [f"R[({{i}}) * {sw} + {k}]" for k in range(kw)]
    vector_loops(s, full, rest, lanes,
                 lambda i: s(f"YF[{out} + {i}] = " + _max_of(cols).replace("{i}", i)))


def _max_of(terms: list) -> str:
    expr = terms[0]
    for t in terms[1:]:
        expr = f"T.max({expr}, {t})"
    return expr


def rewrite_pools(mod, isa: VectorISA):
    """`mod` with every max_pool2d of main the kernel handles replaced by a call_tir to it
    (other pools left to TVM's legalization); returns (module, number replaced)."""
    func = mod["main"]
    bb = relax.BlockBuilder(mod)
    funcs: dict = {}
    new_blocks, count = [], 0
    op = tvm.ir.Op.get("relax.nn.max_pool2d")
    for block in func.body.blocks:
        bindings = []
        for b in block.bindings:
            v = b.value
            geo = _geometry(v) if isinstance(v, relax.Call) and v.op.same_as(op) else None
            if geo is None:
                bindings.append(b)
                continue
            shape = _shape(v.args[0])
            k = max_pool_kernel(shape, *geo, isa)
            gvar = funcs.get(k.name)
            if gvar is None:
                gvar = funcs[k.name] = bb.add_func(k.prim_func(), k.name)
            out = relax.TensorType(relax.ShapeExpr(list(k.out_shape)), "float32")
            call = relax.call_tir(gvar, relax.Tuple([v.args[0], relax.const(k.tables[0])]), out)
            bindings.append(relax.VarBinding(b.var, bb.normalize(call)))
            count += 1
        new_blocks.append(type(block)(bindings))
    if not count:
        return mod, 0
    new_func = relax.Function(func.params, relax.SeqExpr(new_blocks, func.body.body),
                              func.ret_ty, func.is_pure, func.attrs)
    new_mod = bb.get()
    new_mod[new_mod.get_global_var("main")] = new_func
    return new_mod, count
