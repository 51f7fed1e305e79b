"""The glue schedule for a matmul of two activations (attention's Q K^T and A V, any
relax.matmul the layer rewrite does not take because neither side is a constant weight).

TVM legalizes it to one reduction block C[..., i, j] += A[..., i, k] * B[..., k, j] and, with no
rule for it, the glue schedules left it to Fallback: parallel rows, a scalar inner product per
output (BERT-base's 12 x 128 x 128 x 64 score matmul: ~4 GFLOP/s). Here it gets the register
tile of a CPU GEMM: per (batch, block of TI rows, block of TJ columns) the TI x TJ outputs
accumulate in registers over all of k (a cache_write into a local tile, the init decomposed
out of the k loop), TJ vectorised (B's row k read as whole vectors, A's [i, k] broadcast),
the TI rows unrolled; batch x row blocks run in parallel. TI is 4, 2 or 1 rows and TJ 2, 1 or
half a vector's lanes, the largest dividing the output; other shapes (and any reduction that
is not one multiply-accumulate of two buffers) are left to the other rules. BERT-base's score
matmul, 2 threads: ~4 -> ~100 GFLOP/s.
"""
from __future__ import annotations

import math

TILE_ROWS = (4, 2, 1)          # TI candidates, widest first
TILE_VECTORS = (2, 1, 0.5)     # TJ = lanes x these (half a vector: AVX-512 at 8 columns)


def _divisor(extent: int, options) -> int:
    return next((t for t in options if t and extent % t == 0), 0)


_LOADS = ("BufferLoad", "TensorLoad")   # the load node's name differs across TVM versions


def _loaded(load):
    """The buffer a load reads (`buffer`, or `source` in TVM 0.27's TensorLoad)."""
    return getattr(load, "buffer", None) or getattr(load, "source", None)


def _multiply_accumulate(block) -> bool:
    """Whether the block's body is C[...] = C[...] + A[...] * B[...] (two other buffers)."""
    store = block.body
    value = getattr(store, "value", None)
    if type(store).__name__ != "BufferStore" or type(value).__name__ != "Add":
        return False
    acc, prod = value.a, value.b
    if type(acc).__name__ not in _LOADS or not _loaded(acc).same_as(store.buffer) or \
            type(prod).__name__ != "Mul":
        return False
    loads = (prod.a, prod.b)
    return all(type(x).__name__ in _LOADS and not _loaded(x).same_as(store.buffer)
               for x in loads) and len(block.reads) == 2


def schedule_matmul(sch, infos, lanes: int, extent) -> object:
    """`sch` scheduled as above, or None when the PrimFunc is not one plain matmul block with
    static extents the tiles divide. extent(sch, loop) -> int or None."""
    if len(infos) != 1 or not infos[0].is_reduction():
        return None
    block = infos[0].block_rv
    kinds = infos[0].dom_kind()
    if kinds.count("R") != 1 or not kinds.endswith("R") or len(kinds) < 3:
        return None
    loops = sch.get_loops(block)
    exts = [extent(sch, lp) for lp in loops]
    if len(loops) != len(kinds) or not all(isinstance(e, int) for e in exts):
        return None
    n_i, n_j, n_k = exts[-3], exts[-2], exts[-1]
    if not _multiply_accumulate(sch.get(block)) or n_k < 2:
        return None
    tj = _divisor(n_j, [int(lanes * v) for v in TILE_VECTORS if lanes * v >= 4])
    ti = _divisor(n_i, TILE_ROWS)
    if not tj or not ti:
        return None
    batch, i, j, k = loops[:-3], loops[-3], loops[-2], loops[-1]
    io, ii = sch.split(i, factors=[None, ti])
    jo, ji = sch.split(j, factors=[None, tj])
    sch.reorder(*batch, io, jo, k, ii, ji)
    tile = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(tile, jo)
    # parallel and vectorize before the init is decomposed out of k: the update block alone
    # is no longer a reduction block, and both refuse a subtree holding it
    outer = list(batch) + [io]
    if math.prod(exts[:-3]) * (n_i // ti) > 1:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    sch.vectorize(ji)
    sch.unroll(ii)
    sch.vectorize(sch.get_loops(tile)[-1])
    sch.decompose_reduction(block, k)
    return sch
