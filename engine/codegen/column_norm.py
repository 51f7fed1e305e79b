"""Layer norm over the channels of a (1, C, 1, N) tensor: a transformer's residual stream kept
in the layout its linears run in (token_linear.py: features as channels, tokens as pixels).

In that layout each token's C features are a column, N apart in memory; the norm of a column is
the same sum over C for every token, so the kernel runs W tokens at a time (a chunk: a few
vectors wide, the chunks in parallel), each pass over the chunk's C rows contiguous and
vectorised over the tokens:

    1. mean[t]  = sum_c x[c, t] / C
    2. rstd[t]  = 1 / sqrt(sum_c (x[c, t] - mean[t])^2 / C + eps)       (two-pass, as torch)
    3. y[c, t]  = (x[c, t] - mean[t]) * rstd[t] * gamma[c] + beta[c]

A chunk of 768 rows x 32 tokens is 96 KiB: the three passes read it from L2. The statistics
of a chunk are local buffers of a few vectors (registers).
"""
from __future__ import annotations

from .tir_text import Kernel, Src, VectorISA, f32, safe_name


def column_layer_norm_kernel(c: int, n: int, eps: float, isa: VectorISA) -> Kernel:
    """The PrimFunc (as TVMScript) of layer norm over C of X (1, C, 1, N) with per-channel
    gamma G (C,) and beta B (C,) into Y (1, C, 1, N); see the module docstring."""
    if c <= 0 or n <= 0:
        raise ValueError(f"column layer norm over an empty tensor (C={c}, N={n})")
    lanes = isa.lanes
    width = lanes * 2 if n >= lanes * 4 else lanes      # tokens per chunk
    chunks, last = -(-n // width), n - (-(-n // width) - 1) * width
    s = Src()
    args = [f"X: T.Buffer((1, {c}, 1, {n}), \"float32\")", f"G: T.Buffer(({c},), \"float32\")",
            f"B: T.Buffer(({c},), \"float32\")", f"Y: T.Buffer((1, {c}, 1, {n}), \"float32\")"]
    with s.prim_func(args, c * n, c * n):
        loop = f"T.parallel({chunks})" if chunks > 1 else "T.serial(1)"
        with s.block(f"for t in {loop}:"):
            def chunk(w: int) -> None:
                _chunk(s, c, n, w, width, lanes, eps)
            if chunks == 1:
                chunk(last)
            elif last == width:
                chunk(width)
            else:
                with s.block(f"if t < {chunks - 1}:"):
                    chunk(width)
                with s.block("else:"):
                    chunk(last)
    name = safe_name(f"tir_column_layer_norm_{c}x{n}_eps{eps:g}")
    return Kernel(name, s.text(), [], False, (1, c, 1, n),
                  f"tir_f32_column_layer_norm__{isa.name}")


def _chunk(s: Src, c: int, n: int, w: int, width: int, lanes: int, eps: float) -> None:
    """The three passes over the chunk's w tokens (from t * width). A tail shorter than a
    vector runs as one full vector ending at the chunk's end, overlapping the one before it
    (the same tokens recomputed by the same thread, their statistics in slots of their own):
    vectors of fewer lanes ran the whole kernel 4-6x slower."""
    full, rest = divmod(w, lanes)
    vecs = [(f"{i * lanes}", f"{i * lanes}") for i in range(full)]     # (slot, token) offsets
    if rest and full:
        vecs.append((f"{full * lanes}", f"{w - lanes}"))
    s(f"MEAN = T.alloc_buffer(({w + lanes},), \"float32\")")   # per chunk: in registers
    s(f"RSTD = T.alloc_buffer(({w + lanes},), \"float32\")")

    def over_tokens(stmt) -> None:
        for slot, tok in vecs:
            with s.block(f"for l in T.vectorized({lanes}):"):
                stmt(f"{slot} + l", f"t * {width} + {tok} + l")
        if rest and not full:        # fewer tokens than a vector
            with s.block(f"for l in T.vectorized({rest}):"):
                stmt("l", f"t * {width} + l")

    over_tokens(lambda m, p: s(f"MEAN[{m}] = {f32(0.0)}"))
    with s.block(f"for ch in T.serial({c}):"):
        over_tokens(lambda m, p: s(f"MEAN[{m}] = MEAN[{m}] + XF[ch * {n} + {p}]"))
    over_tokens(lambda m, p: s(f"MEAN[{m}] = MEAN[{m}] * {f32(1.0 / c)}"))
    over_tokens(lambda m, p: s(f"RSTD[{m}] = {f32(0.0)}"))
    with s.block(f"for ch in T.serial({c}):"):
        over_tokens(lambda m, p: s(
            f"RSTD[{m}] = RSTD[{m}] + (XF[ch * {n} + {p}] - MEAN[{m}]) * "
            f"(XF[ch * {n} + {p}] - MEAN[{m}])"))
    over_tokens(lambda m, p: s(
        f"RSTD[{m}] = {f32(1.0)} / T.sqrt(RSTD[{m}] * {f32(1.0 / c)} + {f32(eps)})"))
    with s.block(f"for ch in T.serial({c}):"):
        over_tokens(lambda m, p: s(
            f"YF[ch * {n} + {p}] = (XF[ch * {n} + {p}] - MEAN[{m}]) * RSTD[{m}] * G[ch] + B[ch]"))
