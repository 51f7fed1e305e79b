"""TIR kernels generated per layer from its actual sparsity structure (TVMScript source).

Conv (`conv_kernel`): the phase-shifted flat SpMM of kernels/include/spe/spe.h, in one PrimFunc
of up to three parallel loops:

  1. planes: the input as zero-padded phase planes (skipped for 1x1 stride-1 convs; a
     `masked` geometry's keep the row pitch: a straight copy between zero rows);
  2. SpMM: bands of pixel tiles (a band's input, ~1 MiB, stays in L2) in turn, each a parallel
     loop over (row group, tile) items; a tile is `rows x (nv * lanes)` accumulators held in
     registers (one vector register each), and per kept column: nv vector loads, `rows`
     broadcasts, rows*nv FMAs.
     Column offsets and weights are tables (constants of the compiled module); the group
     structure (height, tile, tails, last short group) is specialised at generation time.
     Bias, residual add and ReLU / ReLU6 are fused into the store. In a masked geometry
     (each phase's image columns fit the output's width: stride-1 "same" convs, strided 3x3s
     and 7x7 stems; geometry.py) a group's entries come sorted by the kernel column
     kx, one loop per kx, and the loads of a kx that leaves the row take a lane mask (loop
     invariant: the compiler hoists it; AVX-512 zero-masking loads), so the tile is the
     output itself: no virtual columns, no crop;
  3. crop: virtual pixels -> NCHW output (other convs with kw > 1), with residual add +
     activation.

Linear (`linear_kernel`): y = act(x W^T + b) with the row groups vectorised over rows (GEMV
form: batch-1 classifiers have one "pixel"), four interleaved accumulators per group.

Kernels are text first (`Kernel.source`, readable and testable; tir_text.py holds the pieces
both generators share), parsed with tvm.script.from_source. Dense and depthwise convs use the same
generator with a dense / grouped row-group layout (see rowgroups.py).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

import numpy as np

from .geometry import ConvGeometry
from .rowgroups import RowGroups
from .spmm_tiling import Tiling
from .tir_text import (ACTIVATIONS, Kernel, Src, VectorISA, activation, check_activation,
                       check_sizes, f32, safe_name, signature, split_last, vector_loops)

__all__ = ["ACTIVATIONS", "Kernel", "VectorISA", "conv_kernel", "linear_kernel", "safe_name"]


# ----------------------------------------------------------------------------------------- conv


def conv_kernel(name: str, geom: ConvGeometry, rg: RowGroups, isa: VectorISA, *,
                batch: int = 1, bias: Optional[np.ndarray] = None, act: str = "none",
                residual: bool = False) -> Kernel:
    """Generate act(conv(x, W) + bias [+ residual]) for one layer; x (N, C, H, W) NCHW."""
    check_activation(act)
    if rg.cols_total != geom.in_channels * geom.taps:
        raise ValueError(f"weight has {rg.cols_total} GEMM columns, geometry "
                         f"{geom.in_channels}x{geom.taps}")
    N, C, H, W = batch, geom.in_channels, geom.height, geom.width
    O, Ho, Wo, P = rg.out_channels, geom.out_h, geom.out_w, geom.pixels
    tl = Tiling.of(geom, rg.rows, isa, rg.out_channels)
    seg_ptr, uniform = None, rg.uniform
    if geom.masked:
        rg, seg_ptr = _by_kernel_column(rg, geom)
    k_uni = int(rg.ptr[1]) if uniform else 0
    offsets = geom.offsets(rg.cols[:k_uni] if uniform else rg.cols)
    check_sizes(input=N * C * H * W, output=N * O * max(P, Ho * Wo),
                planes=geom.buffer_len, values=rg.values.size)
    args, tables = signature((N, C, H, W), offsets, rg, bias, (N, O, Ho, Wo), residual,
                             ptr=None if uniform else seg_ptr)
    s = Src()
    with s.prim_func(args, N * C * H * W, N * O * Ho * Wo):
        if residual:
            s(f"RF = T.decl_buffer(({N * O * Ho * Wo},), \"float32\", data=RES.data)")
        if not geom.direct:
            s(f"XB = T.alloc_buffer(({geom.buffer_len},), \"float32\")")
        if geom.crop:
            s(f"YV = T.alloc_buffer(({O * P},), \"float32\")")
        with s.block(f"for n in T.serial({N}):"):
            if not geom.direct:
                _emit_planes(s, geom, tl.lanes)
            _emit_spmm(s, geom, rg, tl, uniform, k_uni, seg_ptr, bias is not None, residual,
                       act)
            if geom.crop:
                _emit_crop(s, O, Ho, Wo, P, geom.wp, tl.lanes, residual, act)
    return Kernel(safe_name(name), s.text(), tables, residual, (N, O, Ho, Wo),
                  f"tir_f32_spmm_{rg.rows}x{tl.tile}__{isa.name}",
                  {"rows": rg.rows, "tile": tl.tile, "groups": rg.n_groups,
                   "entries": rg.entries, "stored": rg.stored, "density": rg.density,
                   "bands": tl.n_bands, "band_tiles": tl.band_tiles, "tile_major": tl.tile_major,
                   "direct": geom.direct,
                   "crop": geom.crop, "masked": geom.masked, "uniform": uniform})


def _by_kernel_column(rg: RowGroups, geom: ConvGeometry) -> tuple:
    """rg with each group's entries reordered by kernel column kx (stable), and the entry
    ranges per (group, kx): ptr[g * kw + kx] .. ptr[g * kw + kx + 1]. Groups that share one
    column list (dense layers) keep sharing it: ptr[kx] .. ptr[kx + 1] within each group."""
    kw, taps = geom.kernel[1], geom.taps
    kx = (rg.cols.astype(np.int64) % taps) % kw
    order = np.empty(rg.entries, np.int64)
    counts = np.zeros((rg.n_groups, kw), np.int64)
    for g in range(rg.n_groups):
        b, e = int(rg.ptr[g]), int(rg.ptr[g + 1])
        order[b:e] = b + np.argsort(kx[b:e], kind="stable")
        counts[g] = np.bincount(kx[b:e], minlength=kw)
    vals = rg.values.reshape(-1, rg.rows)[order].reshape(-1) if rg.entries else rg.values
    out = RowGroups(rg.out_channels, rg.cols_total, rg.rows, rg.ptr.copy(),
                    rg.cols[order].astype(rg.cols.dtype), np.ascontiguousarray(vals), rg.kind)
    if rg.uniform:
        return out, np.concatenate([[0], np.cumsum(counts[0])]).astype(np.int32)
    ptr = np.concatenate([[0], np.cumsum(counts.reshape(-1))]).astype(np.int32)
    return out, ptr


def _emit_spmm(s: Src, geom: ConvGeometry, rg: RowGroups, tl: Tiling, uniform: bool,
               k_uni: int, seg_ptr, bias: bool, residual: bool, act: str) -> None:
    """The SpMM of image n: bands of tiles in turn; in each, (group, tile) work items in
    parallel, so every thread gets an equal share of every band (one parallel loop over all
    bands would hand whole bands to one thread)."""
    P, crop = geom.pixels, geom.crop
    xs, xo = ("XF", f"n * {geom.in_channels * geom.height * geom.width}") if geom.direct \
        else ("XB", "0")
    dst, dst_base = ("YV", "0") if crop else ("YF", f"n * {rg.out_channels * P}")
    # the SpMM epilogue adds the residual only when writing the real output
    kw = geom.kernel[1]
    masks = (kw, [geom.column_shift(kx) for kx in range(kw)], geom.wp,
             [int(v) for v in seg_ptr] if uniform else None) if geom.masked else None
    body = dict(s=s, tile=tl.tile, R=rg.rows, lanes=tl.lanes, uniform=uniform, k_uni=k_uni,
                masks=masks,
                xs=xs, xo=xo, dst=dst, dst_base=dst_base, P=P, bias=bias,
                res=residual and not crop, act=act if (not crop or not residual) else "none")

    def tiles(rows):
        split_last(s, "t", tl.n_tiles, (tl.nv, 0), divmod(tl.tail, tl.lanes),
                   lambda vecs: _emit_tile(rows=rows, nvec=vecs[0], rest=vecs[1], **body))

    with s.block(f"for b in T.serial({tl.n_bands}):"), \
            s.block(f"for it in T.parallel({rg.n_groups * tl.band_tiles}):"):
        G, bt = rg.n_groups, tl.band_tiles
        s(f"g: T.let = it % {G}" if tl.tile_major else f"g: T.let = it // {bt}")
        s(f"t: T.let = b * {bt} + it // {G}" if tl.tile_major else f"t: T.let = b * {bt} + it % {bt}")
        if tl.n_bands * tl.band_tiles != tl.n_tiles:
            with s.block(f"if t < {tl.n_tiles}:"):
                split_last(s, "g", rg.n_groups, rg.rows, rg.last_rows, tiles)
        else:
            split_last(s, "g", rg.n_groups, rg.rows, rg.last_rows, tiles)


def _vec_rows(s: Src, length: int, lanes: int, stmt) -> None:
    """A contiguous run of `length` elements in vector chunks: stmt(index_expr)."""
    vector_loops(s, *divmod(length, lanes), lanes, stmt)


def _emit_planes(s: Src, g: ConvGeometry, lanes: int) -> None:
    """XB <- zero-padded phase planes of image n (all of XB is written, tail included), one
    parallel item per (channel, phase) plane: a 3-channel stem's 12 planes split evenly over
    the threads where its 3 channels did not (2 threads: 71 / 36 us busy, ResNet-50's stem)."""
    C = g.in_channels
    if g.masked and g.stride == (1, 1) and g.wp == g.width:
        return _emit_rows_planes(s, g, lanes)
    nph = len(g.phases)
    with s.block(f"for cq in T.parallel({C * nph}):"):
        s(f"c: T.let = cq // {nph}" if nph > 1 else "c: T.let = cq")
        for idx, (py, px) in enumerate(g.phases):
            with (s.block(f"if cq % {nph} == {idx}:") if nph > 1 else nullcontext()):
                _emit_plane(s, g, lanes, idx, py, px)
    _emit_margins(s, g, lanes)


def _emit_margins(s: Src, g: ConvGeometry, lanes: int) -> None:
    """Zeroes XB before the first plane (`front`) and past the last (the tail reads)."""
    zero, end = f32(0.0), g.front + g.in_channels * g.chan_stride
    if g.front:
        _vec_rows(s, g.front, lanes, lambda j: s(f"XB[{j}] = {zero}"))
    if g.buffer_len > end:
        _vec_rows(s, g.buffer_len - end, lanes, lambda j: s(f"XB[{end} + {j}] = {zero}"))


def _emit_rows_planes(s: Src, g: ConvGeometry, lanes: int) -> None:
    """A masked geometry's planes: per channel, top zero rows, the image (one contiguous copy)
    and bottom zero rows, at the image's pitch, `front` floats into XB."""
    C, H, W, zero = g.in_channels, g.height, g.width, f32(0.0)
    top, bottom = g.padding[0] * W, (g.hp - g.padding[0] - H) * W
    with s.block(f"for c in T.parallel({C}):"):
        s(f"base: T.let = {g.front} + c * {g.chan_stride}")
        if top:
            _vec_rows(s, top, lanes, lambda j: s(f"XB[base + {j}] = {zero}"))
        _vec_rows(s, H * W, lanes, lambda j: s(
            f"XB[base + {top} + {j}] = XF[n * {C * H * W} + c * {H * W} + {j}]"))
        if bottom:
            _vec_rows(s, bottom, lanes, lambda j: s(f"XB[base + {top + H * W} + {j}] = {zero}"))
    _emit_margins(s, g, lanes)


def _emit_plane(s: Src, g: ConvGeometry, lanes: int, idx: int, py: int, px: int) -> None:
    """Phase plane idx (rows py::sh, columns px::sw of the padded input) of channel c."""
    C, H, W = g.in_channels, g.height, g.width
    sh, sw = g.stride
    pt, pl = g.padding[0], g.padding[1]
    wp, hp = g.wp, g.hp
    zero = f32(0.0)
    base = f"{g.front} + c * {g.chan_stride} + {idx * g.plane}"
    i0, i1 = g.row_span(py)
    j0, j1 = g.col_span(px)
    # image column of plane column j: (j + first) * sw + px - pl (a masked plane starts at the
    # phase's first image column, a cropped one at its first padding column)
    first = g.first_col(px)
    if i0 > 0:
        with s.block(f"for i in T.serial({i0}):"):
            _vec_rows(s, wp, lanes, lambda j: s(f"XB[{base} + i * {wp} + {j}] = {zero}"))
    if i1 > i0:
        with s.block(f"for i in T.serial({i0}, {i1}):"):
            src_row = f"n * {C * H * W} + c * {H * W} + (i * {sh} + {py - pt}) * {W}"
            dst_row = f"{base} + i * {wp}"
            if j0 > 0:
                _vec_rows(s, j0, lanes, lambda j: s(f"XB[{dst_row} + {j}] = {zero}"))
            if j1 > j0:
                col = (lambda j: f"({j0 + first} + {j}) * {sw} + {px - pl}") \
                    if sw != 1 else (lambda j: f"{j0 + first + px - pl} + {j}")
                _vec_rows(s, j1 - j0, lanes, lambda j: s(
                    f"XB[{dst_row} + {j0} + {j}] = XF[{src_row} + {col(j)}]"))
            if wp > j1:
                _vec_rows(s, wp - j1, lanes,
                          lambda j: s(f"XB[{dst_row} + {j1} + {j}] = {zero}"))
    if hp > i1:
        with s.block(f"for i in T.serial({i1}, {hp}):"):
            _vec_rows(s, wp, lanes, lambda j: s(f"XB[{base} + i * {wp} + {j}] = {zero}"))


def _emit_tile(s: Src, rows: int, nvec: int, rest: int, tile: int, R: int, lanes: int,
               uniform: bool, k_uni: int, masks: Optional[tuple], xs: str, xo: str, dst: str,
               dst_base: str, P: int, bias: bool, res: bool, act: str) -> None:
    """One tile: rows x (nvec * lanes + rest) pixels starting at virtual pixel t * tile."""
    width = nvec * lanes + rest
    s(f"p0: T.let = t * {tile}")  # first virtual pixel (every tile but the last is full)
    for r in range(rows):
        s(f"acc{r} = T.alloc_buffer(({width},), \"float32\")")
    for r in range(rows):
        init = f"BIAS[g * {R} + {r}]" if bias else f32(0.0)
        vector_loops(s, nvec, rest, lanes, lambda i, r=r, init=init: s(f"acc{r}[{i}] = {init}"),
                     unroll=True)
    if masks is not None:     # one loop per kernel column kx, its lanes off the row masked
        kw, shifts, width, bounds = masks
        for kx in range(kw):
            if bounds is not None:    # one column list for every group
                if bounds[kx + 1] == bounds[kx]:
                    continue
                loop, ve = f"for e in T.serial({bounds[kx]}, {bounds[kx + 1]}):", \
                    f"(g * {k_uni} + e)"
            else:
                at = f"g * {kw} + {kx}"
                loop, ve = f"for e in T.serial(PTR[{at}], PTR[{at} + 1]):", "e"
            with s.block(loop):
                _emit_entry(s, rows, nvec, rest, lanes, R, ve, xs, xo, shifts[kx], width)
        return _emit_store(s, rows, nvec, rest, lanes, R, dst, dst_base, P, res, act)
    if uniform:
        loop, ve = f"for e in T.serial({k_uni}):", f"(g * {k_uni} + e)"
    else:
        loop, ve = "for e in T.serial(PTR[g], PTR[g + 1]):", "e"
    with s.block(loop):
        _emit_entry(s, rows, nvec, rest, lanes, R, ve, xs, xo, 0, 0)
    _emit_store(s, rows, nvec, rest, lanes, R, dst, dst_base, P, res, act)


def _emit_entry(s: Src, rows: int, nvec: int, rest: int, lanes: int, R: int, ve: str, xs: str,
                xo: str, dx: int, width: int) -> None:
    """acc{r} += VAL[entry, r] * x[OFF[e] + tile]; with dx != 0 (a masked geometry's kernel
    column reading dx columns right of the output's), lanes whose column + dx leaves
    [0, width) read zero."""
    s(f"o: T.let = OFF[e] + p0 + {xo}")

    def load(i):
        x = f"{xs}[o + {i}]"
        if dx == 0:
            return x
        col = f"(p0 + {i}) % {width}"
        cond = f"{col} >= {-dx}" if dx < 0 else f"{col} < {width - dx}"
        # an eager select, not if_then_else (which TVM scalarises here): the load is always in
        # XB (its front and bottom margins), and LLVM folds the select into a masked load
        return f"T.Select({cond}, {x}, {f32(0.0)})"

    def fma(i):
        x = load(i)
        for r in range(rows):
            s(f"acc{r}[{i}] = acc{r}[{i}] + VAL[{ve} * {R} + {r}] * {x}")
    vector_loops(s, nvec, rest, lanes, fma, unroll=True)


def _emit_store(s: Src, rows: int, nvec: int, rest: int, lanes: int, R: int, dst: str,
                dst_base: str, P: int, res: bool, act: str) -> None:
    """The tile's accumulators (+ residual, activation) to rows g * R + r of dst."""
    for r in range(rows):
        row = f"{dst_base} + (g * {R} + {r}) * {P} + p0"

        def store(i, r=r, row=row):
            v = f"acc{r}[{i}]"
            if res:
                v = f"{v} + RF[{row} + {i}]"
            s(f"{dst}[{row} + {i}] = {activation(v, act)}")
        vector_loops(s, nvec, rest, lanes, store, unroll=True)


def _emit_crop(s: Src, O: int, Ho: int, Wo: int, P: int, wp: int, lanes: int,
               residual: bool, act: str) -> None:
    """YF <- act(YV cropped to wo columns [+ residual]) for image n."""
    with s.block(f"for oi in T.parallel({O * Ho}):"):
        src = f"oi // {Ho} * {P} + oi % {Ho} * {wp}"
        dst = f"n * {O * Ho * Wo} + oi * {Wo}"

        def stmt(j):
            v = f"YV[{src} + {j}]"
            if residual:
                v = f"{v} + RF[{dst} + {j}]"
            s(f"YF[{dst} + {j}] = {activation(v, act if residual else 'none')}")
        _vec_rows(s, Wo, lanes, stmt)


# --------------------------------------------------------------------------------------- linear

_LINEAR_UNROLL = 4


def linear_kernel(name: str, rg: RowGroups, isa: VectorISA, *, batch: int = 1,
                  bias: Optional[np.ndarray] = None, act: str = "none") -> Kernel:
    """Generate y = act(x @ W^T + bias) for x (N, K), W (O, K) as row groups."""
    check_activation(act)
    N, K, O = batch, rg.cols_total, rg.out_channels
    R, G = rg.rows, rg.n_groups
    k_uni = int(rg.ptr[1]) if rg.uniform else 0
    cols = rg.cols[:k_uni] if rg.uniform else rg.cols
    check_sizes(input=N * K, output=N * O, values=rg.values.size)
    args, tables = signature((N, K), cols.astype(np.int32), rg, bias, (N, O))
    s = Src()
    with s.prim_func(args, N * K, N * O):
        with s.block(f"for it in T.parallel({N * G}):"):
            s(f"n: T.let = it // {G}")
            s(f"g: T.let = it % {G}")
            split_last(s, "g", G, R, rg.last_rows, lambda rows: _emit_gemv_group(
                s, rows, rg, k_uni, bias is not None, act))
    return Kernel(safe_name(name), s.text(), tables, False, (N, O),
                  f"tir_f32_gemv_{R}x{_LINEAR_UNROLL}__{isa.name}",
                  {"rows": R, "groups": G, "entries": rg.entries, "stored": rg.stored,
                   "density": rg.density, "uniform": rg.uniform})


def _emit_gemv_group(s: Src, rows: int, rg: RowGroups, k_uni: int, bias: bool,
                     act: str) -> None:
    """Row group g of image n: _LINEAR_UNROLL interleaved accumulators over its entries, a
    serial tail, then the sum (+ bias, activation) stored for its `rows` rows."""
    K, O, R, U = rg.cols_total, rg.out_channels, rg.rows, _LINEAR_UNROLL
    for u in range(U):
        s(f"acc{u} = T.alloc_buffer(({R},), \"float32\")")
        with s.block(f"for l in T.vectorized({R}):"):
            s(f"acc{u}[l] = {f32(0.0)}")
    if rg.uniform:
        s("b: T.let = 0")
        s(f"cnt: T.let = {k_uni}")
        vbase = f"g * {k_uni} + "
    else:
        s("b: T.let = PTR[g]")
        s("cnt: T.let = PTR[g + 1] - PTR[g]")
        vbase = ""
    with s.block(f"for q in T.serial(cnt // {U}):"):
        for u in range(U):
            s(f"e{u}: T.let = b + q * {U} + {u}")
            with s.block(f"for l in T.vectorized({R}):"):
                s(f"acc{u}[l] = acc{u}[l] + VAL[({vbase}e{u}) * {R} + l] * "
                  f"XF[n * {K} + OFF[e{u}]]")
    with s.block(f"for e in T.serial(b + cnt // {U} * {U}, b + cnt):"):
        with s.block(f"for l in T.vectorized({R}):"):
            s(f"acc0[l] = acc0[l] + VAL[({vbase}e) * {R} + l] * XF[n * {K} + OFF[e]]")
    total = " + ".join(f"acc{u}[l]" for u in range(U))
    if bias:
        total += f" + BIAS[g * {R} + l]"
    with s.block(f"for l in T.vectorized({rows}):"):
        s(f"YF[n * {O} + g * {R} + l] = {activation(total, act)}")
