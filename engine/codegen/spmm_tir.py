"""TIR kernels generated per layer from its actual sparsity structure (TVMScript source).

Conv (`conv_kernel`): the phase-shifted flat SpMM of kernels/include/spe/spe.h, in one PrimFunc
of up to three parallel loops:

  1. planes: the input as zero-padded phase planes (skipped for 1x1 stride-1 convs);
  2. SpMM: bands of pixel tiles (a band's input, ~1 MiB, stays in L2) in turn, each a parallel
     loop over (row group, tile) items; a tile is `rows x (nv * lanes)` accumulators held in
     registers (one vector register each), and per kept column: nv vector loads, `rows`
     broadcasts, rows*nv FMAs.
     Column offsets and weights are tables (constants of the compiled module); the group
     structure (height, tile, tails, last short group) is specialised at generation time.
     Bias, residual add and ReLU / ReLU6 are fused into the store;
  3. crop: virtual pixels -> NCHW output (convs with kw > 1), with residual add + activation.

Linear (`linear_kernel`): y = act(x W^T + b) with the row groups vectorised over rows (GEMV
form: batch-1 classifiers have one "pixel"), four interleaved accumulators per group.

Kernels are text first (`Kernel.source`, readable and testable), parsed with
tvm.script.from_source. Dense and depthwise convs use the same generator with a dense / grouped
row-group layout (see rowgroups.py).
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

import numpy as np

from .geometry import ConvGeometry
from .rowgroups import RowGroups

ACTIVATIONS = ("none", "relu", "relu6")
_INT32_MAX = 2 ** 31 - 1
# Vectors per tile row by group height, for 32-register ISAs (AVX-512, NEON) and 16-register
# ones (AVX2); the same table as the native kernels (kernels/src/spmm/avx512.cc, avx2.cc).
_NV_32 = {1: 8, 2: 8, 3: 7, 4: 6, 5: 4, 6: 4, 7: 3, 8: 3}
_NV_16 = {1: 8, 2: 4, 3: 3, 4: 2, 5: 2, 6: 2, 7: 1, 8: 1}
_BAND_BYTES = 1 << 20


@dataclass(frozen=True)
class VectorISA:
    """What the generator needs to know about the target's SIMD unit."""

    name: str          # "avx512", "avx2", "neon", "generic"
    lanes: int         # float32 lanes per vector register
    registers: int     # vector registers

    def nv(self, rows: int) -> int:
        table = _NV_32 if self.registers >= 32 else _NV_16
        return table.get(rows, max(1, (self.registers * 3 // 4) // max(rows, 1)))


@dataclass
class Kernel:
    """A generated PrimFunc, its TVMScript source and the constant tables it reads."""

    name: str
    template: str                # TVMScript with the function named _PLACEHOLDER
    tables: list                 # numpy arrays, in argument order after the input
    has_residual: bool
    out_shape: tuple
    label: str                   # XNNPACK-style name: tir_f32_spmm_4x96__avx512
    stats: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The TVMScript text of this layer's kernel."""
        return self.template.replace(f"def {_PLACEHOLDER}(", f"def {self.name}(", 1)

    @property
    def structure_key(self) -> str:
        """Equal keys, equal PrimFuncs (the weights and offsets are arguments), so layers of
        one shape and structure share one function."""
        return self.template

    def prim_func(self):
        """The parsed PrimFunc (parsing is cached by structure)."""
        return _parse(self.template).with_attr("global_symbol", self.name)


_PLACEHOLDER = "engine_generated_kernel"
# noalias: the buffers never overlap; is_scheduled: dlight leaves it alone; op_pattern 8
# (opaque): Relax fusion neither fuses it nor re-annotates it.
_ATTRS = ('T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})')


@lru_cache(maxsize=512)
def _parse(source: str):
    from ._tvm import tvm
    return tvm.script.from_source(source)


def safe_name(text: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", text)
    return s if s and not s[0].isdigit() else "k_" + s


class _Src:
    """Indented TVMScript text."""

    def __init__(self):
        self.lines: list = []
        self.depth = 0

    def __call__(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    @contextmanager
    def block(self, header: str):
        self(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _f(v: float) -> str:
    return f"T.float32({v!r})"


def _act(expr: str, act: str) -> str:
    if act == "relu":
        return f"T.max({expr}, {_f(0.0)})"
    if act == "relu6":
        return f"T.min(T.max({expr}, {_f(0.0)}), {_f(6.0)})"
    return expr


def _vec_rows(src: _Src, length: int, lanes: int, stmt) -> None:
    """A contiguous run of `length` elements in vector chunks: stmt(index_expr)."""
    full, rest = divmod(length, lanes)
    if full == 1:
        with src.block(f"for l in T.vectorized({lanes}):"):
            stmt("l")
    elif full > 1:
        with src.block(f"for jo in T.serial({full}):"):
            with src.block(f"for l in T.vectorized({lanes}):"):
                stmt(f"jo * {lanes} + l")
    if rest:
        with src.block(f"for l in T.vectorized({rest}):"):
            stmt(f"{full * lanes} + l" if full else "l")


def _check_sizes(**sizes) -> None:
    for what, n in sizes.items():
        if n > _INT32_MAX:
            raise ValueError(f"{what} has {n} elements: too large for int32 indexing")


# ----------------------------------------------------------------------------------------- conv

def conv_kernel(name: str, geom: ConvGeometry, rg: RowGroups, isa: VectorISA, *,
                batch: int = 1, bias: Optional[np.ndarray] = None, act: str = "none",
                residual: bool = False) -> Kernel:
    """Generate act(conv(x, W) + bias [+ residual]) for one layer; x (N, C, H, W) NCHW."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")
    if rg.cols_total != geom.in_channels * geom.taps:
        raise ValueError(f"weight has {rg.cols_total} GEMM columns, geometry "
                         f"{geom.in_channels}x{geom.taps}")
    name = safe_name(name)
    N, C, H, W = batch, geom.in_channels, geom.height, geom.width
    O, Ho, Wo = rg.out_channels, geom.out_h, geom.out_w
    R, G, Rl = rg.rows, rg.n_groups, rg.last_rows
    P, wp = geom.pixels, geom.wp
    direct, crop = geom.direct, geom.crop
    lanes, nv = isa.lanes, isa.nv(R)
    tile = lanes * nv
    n_tiles = -(-P // tile)
    tail = P - (n_tiles - 1) * tile
    in_band = max(1, C * len(geom.phases) * tile * 4)
    band_tiles = int(min(max(_BAND_BYTES // in_band, 1), n_tiles))
    n_bands = -(-n_tiles // band_tiles)
    uniform = rg.uniform
    k_uni = int(rg.ptr[1]) if uniform else 0
    offsets = geom.offsets(rg.cols[:k_uni] if uniform else rg.cols)
    _check_sizes(input=N * C * H * W, output=N * O * max(P, Ho * Wo),
                 planes=geom.buffer_len, values=rg.values.size)

    tables = [offsets]
    s = _Src()
    s("# from tvm.script import tirx as T")
    s("@T.prim_func")
    args = [f"X: T.Buffer(({N}, {C}, {H}, {W}), \"float32\")",
            f"OFF: T.Buffer(({max(offsets.size, 1)},), \"int32\")"]
    if not uniform:
        args.append(f"PTR: T.Buffer(({G + 1},), \"int32\")")
        tables.append(rg.ptr.astype(np.int32))
    args.append(f"VAL: T.Buffer(({max(rg.values.size, 1)},), \"float32\")")
    tables.append(rg.values)
    if bias is not None:
        args.append(f"BIAS: T.Buffer(({O},), \"float32\")")
        tables.append(np.asarray(bias, np.float32).reshape(O))
    if residual:
        args.append(f"RES: T.Buffer(({N}, {O}, {Ho}, {Wo}), \"float32\")")
    args.append(f"Y: T.Buffer(({N}, {O}, {Ho}, {Wo}), \"float32\")")
    tables = [t if t.size else np.zeros(1, t.dtype) for t in tables]
    with s.block(f"def {_PLACEHOLDER}({', '.join(args)}):"):
        s(_ATTRS)
        s(f"XF = T.decl_buffer(({N * C * H * W},), \"float32\", data=X.data)")
        s(f"YF = T.decl_buffer(({N * O * Ho * Wo},), \"float32\", data=Y.data)")
        if residual:
            s(f"RF = T.decl_buffer(({N * O * Ho * Wo},), \"float32\", data=RES.data)")
        if not direct:
            s(f"XB = T.alloc_buffer(({geom.buffer_len},), \"float32\")")
        if crop:
            s(f"YV = T.alloc_buffer(({O * P},), \"float32\")")
        with s.block(f"for n in T.serial({N}):"):
            if not direct:
                _emit_planes(s, geom, lanes)
            # ---- SpMM: bands of tiles in turn; in each, (group, tile) work items in parallel,
            # so every thread gets an equal share of every band (one parallel loop over all
            # bands would hand whole bands to one thread)
            per_band = G * band_tiles
            with s.block(f"for b in T.serial({n_bands}):"), \
                    s.block(f"for it in T.parallel({per_band}):"):
                s(f"g: T.let = it // {band_tiles}")
                s(f"t: T.let = b * {band_tiles} + it % {band_tiles}")
                xs, xo = ("XF", f"n * {C * H * W}") if direct else ("XB", "0")
                dst, dst_base = ("YV", "0") if crop else ("YF", f"n * {O * P}")
                # the SpMM epilogue adds the residual only when writing the real output
                res = residual and not crop
                act_here = act if (not crop or not residual) else "none"
                body = dict(s=s, tile=tile, R=R, lanes=lanes, uniform=uniform, k_uni=k_uni,
                            xs=xs, xo=xo, dst=dst, dst_base=dst_base, P=P,
                            bias=bias is not None, res=res, act=act_here)

                def tiles(rows):
                    if tail == tile:
                        _emit_tile(rows=rows, nvec=nv, rest=0, **body)
                    else:
                        with s.block(f"if t < {n_tiles - 1}:"):
                            _emit_tile(rows=rows, nvec=nv, rest=0, **body)
                        with s.block("else:"):
                            _emit_tile(rows=rows, nvec=tail // lanes, rest=tail % lanes,
                                       **body)

                def groups():
                    if Rl == R:
                        tiles(R)
                    else:
                        with s.block(f"if g < {G - 1}:"):
                            tiles(R)
                        with s.block("else:"):
                            tiles(Rl)

                if n_bands * band_tiles != n_tiles:
                    with s.block(f"if t < {n_tiles}:"):
                        groups()
                else:
                    groups()
            if crop:
                _emit_crop(s, O, Ho, Wo, P, wp, lanes, residual, act)
    kname = f"tir_f32_spmm_{R}x{tile}__{isa.name}"
    return Kernel(name, s.text(), tables, residual, (N, O, Ho, Wo), kname,
                  {"rows": R, "tile": tile, "groups": G, "entries": rg.entries,
                   "stored": rg.stored, "density": rg.density, "bands": n_bands,
                   "band_tiles": band_tiles, "direct": direct, "crop": crop,
                   "uniform": uniform})


def _emit_planes(s: _Src, g: ConvGeometry, lanes: int) -> None:
    """XB <- zero-padded phase planes of image n (all of XB is written, tail included)."""
    C, H, W = g.in_channels, g.height, g.width
    sh, sw = g.stride
    pt, pl = g.padding[0], g.padding[1]
    wp, hp = g.wp, g.hp
    zero = _f(0.0)
    with s.block(f"for c in T.parallel({C}):"):
        for idx, (py, px) in enumerate(g.phases):
            base = f"c * {g.chan_stride} + {idx * g.plane}"
            i0, i1 = g.row_span(py)
            j0, j1 = g.col_span(px)
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
                        col = (lambda j: f"({j0} + {j}) * {sw} + {px - pl}") \
                            if sw != 1 else (lambda j: f"{j0 + px - pl} + {j}")
                        _vec_rows(s, j1 - j0, lanes, lambda j: s(
                            f"XB[{dst_row} + {j0} + {j}] = XF[{src_row} + {col(j)}]"))
                    if wp > j1:
                        _vec_rows(s, wp - j1, lanes,
                                  lambda j: s(f"XB[{dst_row} + {j1} + {j}] = {zero}"))
            if hp > i1:
                with s.block(f"for i in T.serial({i1}, {hp}):"):
                    _vec_rows(s, wp, lanes, lambda j: s(f"XB[{base} + i * {wp} + {j}] = {zero}"))
    extra = g.buffer_len - C * g.chan_stride
    if extra > 0:
        _vec_rows(s, extra, lanes, lambda j: s(f"XB[{C * g.chan_stride} + {j}] = {zero}"))


def _emit_tile(s: _Src, rows: int, nvec: int, rest: int, tile: int, R: int, lanes: int,
               uniform: bool,
               k_uni: int, xs: str, xo: str, dst: str, dst_base: str, P: int, bias: bool,
               res: bool, act: str) -> None:
    """One tile: rows x (nvec * lanes + rest) pixels starting at virtual pixel t * tile."""
    width = nvec * lanes + rest
    s(f"p0: T.let = t * {tile}")  # first virtual pixel (every tile but the last is full)
    for r in range(rows):
        s(f"acc{r} = T.alloc_buffer(({width},), \"float32\")")
    for r in range(rows):
        init = f"BIAS[g * {R} + {r}]" if bias else _f(0.0)
        _vec_chunks(s, nvec, rest, lanes, lambda i, r=r, init=init: s(f"acc{r}[{i}] = {init}"))
    if uniform:
        loop, ve = f"for e in T.serial({k_uni}):", f"(g * {k_uni} + e)"
    else:
        loop, ve = "for e in T.serial(PTR[g], PTR[g + 1]):", "e"
    with s.block(loop):
        s(f"o: T.let = OFF[e] + p0 + {xo}")

        def fma(i):
            for r in range(rows):
                s(f"acc{r}[{i}] = acc{r}[{i}] + VAL[{ve} * {R} + {r}] * {xs}[o + {i}]")
        _vec_chunks(s, nvec, rest, lanes, fma)
    for r in range(rows):
        row = f"{dst_base} + (g * {R} + {r}) * {P} + p0"

        def store(i, r=r, row=row):
            v = f"acc{r}[{i}]"
            if res:
                v = f"{v} + RF[{row} + {i}]"
            s(f"{dst}[{row} + {i}] = {_act(v, act)}")
        _vec_chunks(s, nvec, rest, lanes, store)


def _vec_chunks(s: _Src, nvec: int, rest: int, lanes: int, stmt) -> None:
    """nvec full vectors (an unrolled loop: constant accumulator offsets, so LLVM keeps them in
    registers) then a `rest`-lane one: stmt(index_expr) inside vectorized loops."""
    if nvec == 1:
        with s.block(f"for l in T.vectorized({lanes}):"):
            stmt("l")
    elif nvec > 1:
        with s.block(f"for v in T.unroll({nvec}):"):
            with s.block(f"for l in T.vectorized({lanes}):"):
                stmt(f"v * {lanes} + l")
    if rest:
        with s.block(f"for l in T.vectorized({rest}):"):
            stmt(f"{nvec * lanes} + l")


def _emit_crop(s: _Src, O: int, Ho: int, Wo: int, P: int, wp: int, lanes: int,
               residual: bool, act: str) -> None:
    """YF <- act(YV cropped to wo columns [+ residual]) for image n."""
    with s.block(f"for oi in T.parallel({O * Ho}):"):
        src = f"oi // {Ho} * {P} + oi % {Ho} * {wp}"
        dst = f"n * {O * Ho * Wo} + oi * {Wo}"

        def stmt(j):
            v = f"YV[{src} + {j}]"
            if residual:
                v = f"{v} + RF[{dst} + {j}]"
            s(f"YF[{dst} + {j}] = {_act(v, act if residual else 'none')}")
        _vec_rows(s, Wo, lanes, stmt)


# --------------------------------------------------------------------------------------- linear

_LINEAR_UNROLL = 4


def linear_kernel(name: str, rg: RowGroups, isa: VectorISA, *, batch: int = 1,
                  bias: Optional[np.ndarray] = None, act: str = "none") -> Kernel:
    """Generate y = act(x @ W^T + bias) for x (N, K), W (O, K) as row groups."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")
    name = safe_name(name)
    N, K, O = batch, rg.cols_total, rg.out_channels
    R, G, Rl = rg.rows, rg.n_groups, rg.last_rows
    U = _LINEAR_UNROLL
    uniform = rg.uniform
    k_uni = int(rg.ptr[1]) if uniform else 0
    cols = rg.cols[:k_uni] if uniform else rg.cols
    _check_sizes(input=N * K, output=N * O, values=rg.values.size)
    tables = [cols.astype(np.int32)]
    s = _Src()
    s("# from tvm.script import tirx as T")
    s("@T.prim_func")
    args = [f"X: T.Buffer(({N}, {K}), \"float32\")",
            f"OFF: T.Buffer(({max(cols.size, 1)},), \"int32\")"]
    if not uniform:
        args.append(f"PTR: T.Buffer(({G + 1},), \"int32\")")
        tables.append(rg.ptr.astype(np.int32))
    args.append(f"VAL: T.Buffer(({max(rg.values.size, 1)},), \"float32\")")
    tables.append(rg.values)
    if bias is not None:
        args.append(f"BIAS: T.Buffer(({O},), \"float32\")")
        tables.append(np.asarray(bias, np.float32).reshape(O))
    args.append(f"Y: T.Buffer(({N}, {O}), \"float32\")")
    tables = [t if t.size else np.zeros(1, t.dtype) for t in tables]
    with s.block(f"def {_PLACEHOLDER}({', '.join(args)}):"):
        s(_ATTRS)
        s(f"XF = T.decl_buffer(({N * K},), \"float32\", data=X.data)")
        s(f"YF = T.decl_buffer(({N * O},), \"float32\", data=Y.data)")
        with s.block(f"for it in T.parallel({N * G}):"):
            s(f"n: T.let = it // {G}")
            s(f"g: T.let = it % {G}")

            def body(rows):
                for u in range(U):
                    s(f"acc{u} = T.alloc_buffer(({R},), \"float32\")")
                    with s.block(f"for l in T.vectorized({R}):"):
                        s(f"acc{u}[l] = {_f(0.0)}")
                if uniform:
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
                if bias is not None:
                    total += f" + BIAS[g * {R} + l]"
                with s.block(f"for l in T.vectorized({rows}):"):
                    s(f"YF[n * {O} + g * {R} + l] = {_act(total, act)}")

            if Rl == R:
                body(R)
            else:
                with s.block(f"if g < {G - 1}:"):
                    body(R)
                with s.block("else:"):
                    body(Rl)
    kname = f"tir_f32_gemv_{R}x{U}__{isa.name}"
    return Kernel(name, s.text(), tables, False, (N, O), kname,
                  {"rows": R, "groups": G, "entries": rg.entries, "stored": rg.stored,
                   "density": rg.density, "uniform": uniform})
