"""The TVMScript text every generated kernel is written with (spmm_tir.py's conv and linear).

A kernel is text first: `Src` indents it; `Src.prim_func` writes the header every kernel shares
(flat views XF / YF of its input and output); `signature` lays out its buffers and the constant
tables bound to them; `split_last` and `vector_loops` write the two loop shapes the generators
repeat (a last group or tile of another size; runs of vectors and a shorter tail). `Kernel` holds
the result, parsed with tvm.script.from_source when compiled.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

from typing import Optional

import numpy as np

ACTIVATIONS = ("none", "relu", "relu6", "hardswish", "silu", "gelu", "gelu_tanh")
PLACEHOLDER = "engine_generated_kernel"
# noalias: the buffers never overlap; is_scheduled: dlight leaves it alone; op_pattern 8
# (opaque): Relax fusion neither fuses it nor re-annotates it.
ATTRS = ('T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})')
_INT32_MAX = 2 ** 31 - 1
# Vectors per tile row by group height, for 32-register ISAs (AVX-512, NEON) and 16-register
# ones (AVX2); the same table as the native kernels (kernels/src/spmm/avx512.cc, avx2.cc).
_NV_32 = {1: 8, 2: 8, 3: 7, 4: 6, 5: 4, 6: 4, 7: 3, 8: 3}
_NV_16 = {1: 8, 2: 4, 3: 3, 4: 2, 5: 2, 6: 2, 7: 1, 8: 1}


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
    template: str                # TVMScript with the function named PLACEHOLDER
    tables: list                 # numpy arrays, in argument order after the input
    has_residual: bool
    out_shape: tuple
    label: str                   # XNNPACK-style name: tir_f32_spmm_4x96__avx512
    stats: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The TVMScript text of this layer's kernel."""
        return self.template.replace(f"def {PLACEHOLDER}(", f"def {self.name}(", 1)

    @property
    def structure_key(self) -> str:
        """Equal keys, equal PrimFuncs (the weights and offsets are arguments), so layers of
        one shape and structure share one function."""
        return self.template

    def prim_func(self):
        """The parsed PrimFunc (parsing is cached by structure)."""
        return _parse(self.template).with_attr("global_symbol", self.name)


@lru_cache(maxsize=512)
def _parse(source: str):
    from ._tvm import tvm
    return tvm.script.from_source(source)


def safe_name(text: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", text)
    return s if s and not s[0].isdigit() else "k_" + s


class Src:
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

    @contextmanager
    def prim_func(self, args: list, x_size: int, y_size: int):
        """The kernel's header (named PLACEHOLDER), attributes and flat float32 views XF / YF of
        its input X and output Y; the body goes inside."""
        self("# from tvm.script import tirx as T")
        self("@T.prim_func")
        with self.block(f"def {PLACEHOLDER}({', '.join(args)}):"):
            self(ATTRS)
            self(f"XF = T.decl_buffer(({x_size},), \"float32\", data=X.data)")
            self(f"YF = T.decl_buffer(({y_size},), \"float32\", data=Y.data)")
            yield

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def f32(v: float) -> str:
    return f"T.float32({v!r})"


def activation(expr: str, act: str) -> str:
    """`expr` through the activation `act` (one of ACTIVATIONS)."""
    if act == "relu":
        return f"T.max({expr}, {f32(0.0)})"
    if act == "relu6":
        return f"T.min(T.max({expr}, {f32(0.0)}), {f32(6.0)})"
    if act == "hardswish":
        return (f"({expr}) * T.min(T.max({expr} + {f32(3.0)}, {f32(0.0)}), {f32(6.0)})"
                f" / {f32(6.0)}")
    if act == "silu":   # torch's form; T.exp lowers to a vector polynomial (fast_math.py)
        return f"({expr}) / ({f32(1.0)} + T.exp({f32(0.0)} - ({expr})))"
    if act == "gelu":   # T.erf: TVM's vector polynomial (|error| ~5e-7 at |x| = 8)
        return f"{f32(0.5)} * ({expr}) * ({f32(1.0)} + T.erf(({expr}) * {f32(0.5 ** 0.5)}))"
    if act == "gelu_tanh":   # x (1 + tanh(u)) / 2 = x / (1 + exp(-2u))
        c = 2.0 * (2.0 / 3.141592653589793) ** 0.5
        return (f"({expr}) / ({f32(1.0)} + T.exp({f32(-c)} * ({expr}) - "
                f"{f32(c * 0.044715)} * ({expr}) * ({expr}) * ({expr})))")
    return expr


def check_activation(act: str) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")


def check_sizes(**sizes) -> None:
    for what, n in sizes.items():
        if n > _INT32_MAX:
            raise ValueError(f"{what} has {n} elements: too large for int32 indexing")


def _buffer(name: str, shape: tuple, dtype: str = "float32") -> str:
    dims = [str(int(d)) for d in shape]
    return f"{name}: T.Buffer(({', '.join(dims)}{',' if len(dims) == 1 else ''}), \"{dtype}\")"


def signature(x_shape: tuple, offsets: np.ndarray, rg, bias, y_shape: tuple,
              residual: bool = False, ptr: Optional[np.ndarray] = None) -> tuple:
    """(buffer arguments, constant tables) of a row-group kernel, in argument order: X (the
    input), OFF (int32 offsets or columns), PTR (each group's entry range, unless all groups
    hold the same count; `ptr` when given, always), VAL (the kept weights), BIAS (when given),
    RES (the residual, shaped like Y, when fused) and Y. An empty table is passed as one zero
    element."""
    o = rg.out_channels
    args = [_buffer("X", x_shape), _buffer("OFF", (max(offsets.size, 1),), "int32")]
    tables = [offsets]
    if ptr is not None or not rg.uniform:
        ptr = rg.ptr if ptr is None else ptr
        args.append(_buffer("PTR", (ptr.size,), "int32"))
        tables.append(np.asarray(ptr, np.int32))
    args.append(_buffer("VAL", (max(rg.values.size, 1),)))
    tables.append(rg.values)
    if bias is not None:
        args.append(_buffer("BIAS", (o,)))
        tables.append(np.asarray(bias, np.float32).reshape(o))
    if residual:
        args.append(_buffer("RES", y_shape))
    args.append(_buffer("Y", y_shape))
    return args, [t if t.size else np.zeros(1, t.dtype) for t in tables]


def split_last(s: Src, index: str, count: int, value, last_value, emit) -> None:
    """emit(value) for `index` < count - 1 and emit(last_value) for the last item (a short last
    row group or pixel tile); a single emit(value) when the two are equal."""
    if last_value == value:
        emit(value)
        return
    with s.block(f"if {index} < {count - 1}:"):
        emit(value)
    with s.block("else:"):
        emit(last_value)


def vector_loops(s: Src, full: int, rest: int, lanes: int, stmt, unroll: bool = False) -> None:
    """`full` vectors of `lanes` then one of `rest` lanes: stmt(index_expr) inside vectorized
    loops. unroll: the full vectors as an unrolled loop (constant accumulator offsets, so LLVM
    keeps them in registers), else a serial one."""
    var, loop = ("v", "unroll") if unroll else ("jo", "serial")
    if full == 1:
        with s.block(f"for l in T.vectorized({lanes}):"):
            stmt("l")
    elif full > 1:
        with s.block(f"for {var} in T.{loop}({full}):"):
            with s.block(f"for l in T.vectorized({lanes}):"):
                stmt(f"{var} * {lanes} + l")
    if rest:
        with s.block(f"for l in T.vectorized({rest}):"):
            stmt(f"{full * lanes} + l" if full else "l")
