"""The glue schedule for a normalisation over the last axes: layer norm (a sum, a mean, a sum
of squared deviations, the normalised output), RMS norm, and any chain of reductions over a
row's trailing axes that feeds an element-wise output of the same rows.

TVM legalizes layer_norm to three blocks sharing the row index (sum, var_sum, the output) with
the mean inlined. No rule covered several reductions, and dlight's cpu.Reduction, which took
it, computes both reductions under the output's loop over the row's elements: for a row of
1 x 768 (a decoder's one-token step) every output element re-summed its whole row (768^2
dependent adds per reduction, ~530 us a layer norm where a pass over 3 KB takes ~1 us).

Here each row's reductions are computed once, at the row (compute_at under the output's row
loop), each in `lanes` partial sums (rfactor, vectorised) finished once; then the row's output
runs vectorised. Rows run in parallel when there are enough of them to pay for the launch.
"""
from __future__ import annotations

import math


def _spatial_prefix(bi) -> int:
    kinds = bi.dom_kind()
    return len(kinds) - len(kinds.lstrip("S"))


def schedule_row_norm(sch, infos, lanes: int, extent, parallel_min: int):
    """Schedule `sch` (blocks `infos`, dlight's normalised block infos) as above; None when it
    is not a normalisation: at least one reduction, the last block element-wise over the
    reductions' rows plus at least one axis, every reduction over the same rows."""
    reds = [bi for bi in infos if bi.is_reduction()]
    out = infos[-1]
    if not reds or not out.is_injective() or any(
            not (bi.is_reduction() or bi.is_injective()) for bi in infos):
        return None
    n_rows = [_spatial_prefix(r) for r in reds]
    red_rows = {math.prod(extent(sch, lp) for lp in sch.get_loops(r.block_rv)[:k])
                for r, k in zip(reds, n_rows)}
    if len(red_rows) != 1 or not isinstance(rows := red_rows.pop(), int):
        return None
    for bi in infos[:-1]:          # element-wise producers (the mean): inlined into readers
        if bi.is_injective():
            sch.compute_inline(bi.block_rv)
    out_loops = sch.get_loops(out.block_rv)
    ext = [extent(sch, lp) for lp in out_loops]
    k = next((k for k in range(len(ext)) if math.prod(ext[:k]) == rows), None)
    if k is None or not all(isinstance(e, int) for e in ext):
        return None           # the output's leading loops are not the reductions' rows
    if k == 0:                # one row (normalisation dropped its unit loops): a loop for it
        row = sch.add_unit_loop(out_loops[0])
    else:
        row = sch.fuse(*out_loops[:k]) if k > 1 else out_loops[0]
    cols = out_loops[k:]
    col = sch.fuse(*cols) if len(cols) > 1 else cols[0]
    n_cols = extent(sch, col)
    parts = [(r.block_rv,) + _partial_sums(sch, r, lanes, extent) for r in reds]
    for blk, rf, _ in reversed(parts):   # consumers first: each must be under the row when
        sch.compute_at(blk, row, preserve_unit_loops=False)          # its producer moves
        if rf is not None:
            sch.compute_at(rf, row, preserve_unit_loops=False)
    if rows >= 2 and isinstance(n_cols, int) and rows * n_cols >= parallel_min:
        sch.parallel(row)        # before the inits are split off (parallel checks the blocks)
    for _, rf, _ in parts:
        if rf is not None:
            ri, ro = sch.get_loops(rf)[-2:]   # compute_at made them in the block's iter
            sch.reorder(ro, ri)                 # order (partial, then reduce): lanes inside
            sch.vectorize(ri)
            sch.decompose_reduction(rf, ro)
    if isinstance(n_cols, int) and n_cols >= lanes:
        o, i = sch.split(col, factors=[None, lanes])
        if n_cols % lanes:
            sch.loop_partition(o, [n_cols // lanes, None])
        else:
            sch.vectorize(i)
    return sch


def _partial_sums(sch, bi, lanes: int, extent) -> tuple:
    """(the rfactor block computing v partial sums of the reduction, v): v the widest of
    lanes, lanes / 2, lanes / 4 (>= 4) that divides its length; (None, 0) when none does
    (compute_at loses the predicate of a split with a tail: a row would read past its end)."""
    loops = sch.get_loops(bi.block_rv)[_spatial_prefix(bi):]
    r = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    n = extent(sch, r)
    v = next((v for v in (lanes, lanes // 2, lanes // 4)
              if isinstance(n, int) and v >= 4 and n % v == 0 and n >= 2 * v), 0)
    if not v:
        return None, 0
    _, ri = sch.split(r, factors=[None, v])
    return sch.rfactor(ri, len(sch.get(bi.block_rv).writes[0].region)), v
