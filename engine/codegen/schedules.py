"""CPU schedules for the glue TVM legalizes (everything the generated kernels do not cover):
pooling, means, norms, adds, activations, reshapes, the odd unmatched op. TVM 0.27's default
CPU pipeline schedules nothing (naive serial loops). Rules, tried in order on every unscheduled
PrimFunc (dlight.ApplyDefaultSchedule):

  Injective   all-spatial: producers inlined, the innermost run vectorised (H x W as one run
              where access allows; tail partitioned), outer loops parallel; a costly producer
              read broadcast (the SE gate) computed once in its own loop
  RowReduce   one reduction over trailing axes (global pools): vector partial sums, rows parallel
  Window      one small reduction (max / avg pooling): reduction loops outside the vectorised
              innermost spatial loop; init hoisted; outer loops parallel
  Matmul      a matmul of two activations (attention): register tiles (matmul_schedule.py)
  RowNorm     row reductions feeding the row's output (layer norm, softmax; norm_schedule.py)
  dlight      cpu.GEMV (an unmatched matmul), cpu.Reduction (other reductions)
  Fallback    anything else: leading spatial loops fused and parallel (correct, never naive)

Float32 T.exp (and T.sigmoid) lowers to fast_math.fast_exp, a polynomial LLVM vectorises. A rule
returns None where it does not apply (so does one that raises): a surprising PrimFunc falls
through to Fallback instead of failing the build.
"""
from __future__ import annotations

import math
import os

from ._tvm import dlight, s_tir, tirx, tvm
from .fast_math import register_fast_exp
from .matmul_schedule import schedule_matmul
from .norm_schedule import schedule_row_norm

# Set ENGINE_CODEGEN_DEBUG_SCHEDULES=1 to see why a rule did not apply (its exception).
_DEBUG = bool(os.environ.get("ENGINE_CODEGEN_DEBUG_SCHEDULES"))

_ScheduleRule = dlight.ScheduleRule
_normalize = dlight.analysis.normalize_prim_func
_PARALLEL_MIN = 2048       # elements below which a parallel launch costs more than it saves


def _extent(sch, loop):
    return dlight.base.get_extent(sch, loop)


def _lanes(target) -> int:
    from ._tvm import llvm_info
    try:
        bits = int(llvm_info.llvm_get_vector_width(target))
    except Exception:  # noqa: BLE001  (unknown target: assume 128-bit vectors)
        bits = 128
    return max(4, bits // 32)


def _try_inline_all_but_last(sch, infos, keep=()):
    """compute_inline every block it can except the last (the function's output) and `keep`."""
    rest = list(infos)
    changed = True
    while changed and len(rest) > 1:
        changed = False
        for i, bi in enumerate(rest[:-1]):
            if bi in keep:
                continue
            try:
                sch.compute_inline(bi.block_rv)
            except Exception:  # noqa: BLE001  (not inlinable: keep it)
                continue
            rest.pop(i)
            changed = True
            break
    return rest


def _vector_width(extent: int, lanes: int) -> int:
    """The widest of lanes, lanes / 2, lanes / 4 (>= 2) dividing `extent`; 0 if none does."""
    return next((v for v in (lanes, lanes // 2, lanes // 4) if v >= 2 and extent % v == 0), 0)


def _fuse_parallel(sch, loops) -> None:
    sch.parallel(sch.fuse(*loops) if len(loops) > 1 else loops[0])


def _vector_plan(e: int, lanes: int) -> tuple:
    """How to vectorise a run of e elements: (vector ops per run, width, tail partitioned),
    the cheapest of vectors dividing e, one vector of e lanes, full vectors and a scalar
    tail; width 0: scalar."""
    vec = _vector_width(e, lanes)
    options = [(e // vec, vec, False)] if vec else []
    if 2 <= e <= lanes:
        options.append((1, e, False))
    if e > lanes and e % lanes:
        options.append((e // lanes + e % lanes, lanes, True))
    return min(options) if options else (e, 0, False)


def _vectorize_parallel(sch, loops, lanes: int) -> None:
    """Split the innermost loop into vectors, fuse the rest and run it in parallel."""
    exts = [_extent(sch, lp) for lp in loops]
    if not loops or not all(isinstance(e, int) for e in exts):
        if loops:
            sch.parallel(loops[0])
        return
    total = math.prod(exts)
    inner = loops[-1]
    outer = list(loops[:-1])
    e = exts[-1]
    _, vec, partition = _vector_plan(e, lanes)
    o = None
    if vec and e > vec:
        o, i = sch.split(inner, factors=[None, vec])
        sch.vectorize(i)
        if not partition:
            outer.append(o)
    elif vec:
        sch.vectorize(inner)
    else:
        outer.append(inner)
    if outer and total >= _PARALLEL_MIN:
        _fuse_parallel(sch, outer)
    if partition:       # full vectors, then the tail (its lanes predicated: scalar)
        sch.loop_partition(o, [e // vec, None])


def _leading_spatial(bi) -> int:
    """How many of the block's iterators, from the outermost, are spatial."""
    kinds = bi.dom_kind()
    return len(kinds) - len(kinds.lstrip("S"))


class _Rule(_ScheduleRule):
    """A rule on a normalised schedule of the PrimFunc: `_schedule` returns it scheduled, or None
    when the rule does not apply; so does any exception (raised with ENGINE_CODEGEN_DEBUG_SCHEDULES
    where `debuggable`)."""

    debuggable = True

    def apply(self, func, target, tunable):
        try:
            sch = s_tir.Schedule(func)
            infos = _normalize(sch)
            return self._schedule(sch, infos, target) if infos else None
        except Exception:  # noqa: BLE001  (rule does not apply)
            if _DEBUG and self.debuggable:
                raise
            return None

    def _schedule(self, sch, infos, target):
        raise NotImplementedError


class Injective(_Rule):
    """All blocks spatial: inline producers, vectorise + parallelise what is left."""

    def _schedule(self, sch, infos, target):
        if not all(bi.is_injective() for bi in infos):
            return None
        lanes = _lanes(target)
        for bi in _try_inline_all_but_last(sch, infos, _broadcast_costly(sch, infos)):
            _vectorize_parallel(sch, _fuse_plain_tail(sch, bi.block_rv, lanes), lanes)
        return sch


def _fuse_plain_tail(sch, block_rv, lanes: int) -> list:
    """The block's loops, the last two fused when every buffer it touches either runs over
    both contiguously (shaped like the loops there) or is constant over both (a broadcast, as
    the SE gate over H x W), and one long run vectorises better than rows of W."""
    loops = sch.get_loops(block_rv)
    block = sch.get(block_rv)
    if len(loops) < 2 or len(block.iter_vars) != len(loops):
        return loops
    tail = block.iter_vars[-2:]
    for region in list(block.reads) + list(block.writes):
        const = len(region.region) >= 2 and all(isinstance(rg.min, tirx.IntImm)
                                                for rg in region.region[-2:])
        if not (const or _runs_over(region, tail)):
            return loops
    h, w = (_extent(sch, lp) for lp in loops[-2:])
    if not (isinstance(h, int) and isinstance(w, int)) or \
            _vector_plan(h * w, lanes)[0] >= h * _vector_plan(w, lanes)[0]:
        return loops
    return list(loops[:-2]) + [sch.fuse(*loops[-2:])]


def _runs_over(region, iters) -> bool:
    """The region's trailing axes are indexed by exactly `iters`, in order, over their whole
    extent: one contiguous run per value of the other indices."""
    k = len(iters)
    dims = list(zip(region.region[len(region.region) - k:],
                    region.source.shape[len(region.source.shape) - k:]))
    return len(dims) == k and all(rg.min.same_as(it.var) and int(rg.extent) == 1
                                  and int(d) == int(it.dom.extent)
                                  for (rg, d), it in zip(dims, iters))


def _domain(bi) -> int:
    return math.prod(int(i.dom) for i in bi.iters)


def _costly(expr) -> bool:
    """Computes a call (sigmoid, exp, ...) or a division: worth doing once, not per reader."""
    if isinstance(expr, (tvm.ir.Call, tirx.Div)):
        return True
    return any(isinstance(c, tvm.ir.Expr) and _costly(c)
               for c in (getattr(expr, f, None) for f in ("a", "b", "value", "condition",
                                                            "true_value", "false_value")))


def _broadcast_costly(sch, infos) -> set:
    """Producers with a costly body and at most half the output's points: inlined, they would
    be recomputed for every point of the output that reads them (a broadcast)."""
    if len(infos) < 2:
        return set()
    out = _domain(infos[-1])
    return {bi for bi in infos[:-1]
            if 2 * _domain(bi) <= out and _costly(sch.get(bi.block_rv).body)}


class RowReduce(_Rule):
    """One reduction over the trailing axes of a contiguous run (global mean / sum pools, a sum
    over the last axis), long enough to fill a vector: rfactor over a lanes-wide split
    gives independent vector accumulators (the serial version is a chain of dependent adds);
    a tail shorter than the split is partitioned off, so the main loop needs no predicate."""

    def _schedule(self, sch, infos, target):
        red = self._row(sch, infos)
        if red is None:
            return None
        lanes = _lanes(target)
        n_s = _leading_spatial(red)
        for bi in infos:     # producers inlined into the reduction (if one cannot be: no rule)
            if bi is not red and bi.is_injective() and sch.get_consumers(bi.block_rv):
                sch.compute_inline(bi.block_rv)
        loops = sch.get_loops(red.block_rv)
        r = sch.fuse(*loops[n_s:]) if len(loops) - n_s > 1 else loops[n_s]
        n = _extent(sch, r)
        if not isinstance(n, int) or n < lanes:
            return None
        v = lanes * (2 if n >= 64 * lanes else 1)   # measured: 2 vectors pay off for long runs
        _, ri = sch.split(r, factors=[None, v])
        rf = sch.rfactor(ri, len(sch.get(red.block_rv).writes[0].region))
        s_loops = sch.get_loops(rf)[:n_s]   # rfactor moved them to the partial sums
        if s_loops:     # the final sum and the epilogue per output point, inside its loop
            for bi in infos:
                if bi is red or (bi.is_injective() and not sch.get_consumers(bi.block_rv)):
                    sch.reverse_compute_at(bi.block_rv, s_loops[-1])
            total = math.prod(_extent(sch, lp) for lp in s_loops) * n
            if total >= _PARALLEL_MIN:
                _fuse_parallel(sch, s_loops)
        ro, ri = sch.get_loops(rf)[-2:]
        sch.vectorize(ri)
        # init out of the loop: partitioned, the tail's block would re-run it (its first
        # iteration is not zero)
        sch.decompose_reduction(rf, ro)
        if n % v:
            sch.loop_partition(ro, [n // v, None])
        return sch

    @staticmethod
    def _row(sch, infos):
        """The one reduction block, if it reduces over trailing iterators that index the
        trailing axes of a buffer it reads, in order (one contiguous run per output point)."""
        reds = [bi for bi in infos if not bi.is_injective()]
        if len(reds) != 1:
            return None
        red = reds[0]
        n_s = _leading_spatial(red)
        if set(red.dom_kind()[n_s:]) != {"R"}:
            return None
        block = sch.get(red.block_rv)
        return red if any(_runs_over(r, block.iter_vars[n_s:]) for r in block.reads) else None


class Window(_Rule):
    """One reduction over a small window (pooling), with spatial producers / epilogue."""

    MAX_WINDOW = 64

    def _schedule(self, sch, infos, target):
        red = self._window(infos)
        if red is None:
            return None
        lanes = _lanes(target)
        # producers (padding) inlined into the reduction, epilogue handled separately
        for bi in infos:
            if bi is not red and bi.is_injective():
                _inline_either_way(sch, bi)
        _schedule_reduction(sch, red, _leading_spatial(red), lanes)
        # a spatial epilogue (average pooling's divide) left un-inlined
        for bi in infos:
            if bi is not red and bi.is_injective():
                try:
                    loops = sch.get_loops(bi.block_rv)
                except Exception:  # noqa: BLE001  (inlined above)
                    continue
                _vectorize_parallel(sch, loops, lanes)
        return sch

    def _window(self, infos):
        """The one reduction block, if it reduces (innermost) over at most MAX_WINDOW points
        after at least two spatial iterators; else None."""
        reds = [bi for bi in infos if not bi.is_injective()]
        if len(reds) != 1:
            return None
        red = reds[0]
        n_s = _leading_spatial(red)
        if n_s < 2 or set(red.dom_kind()[n_s:]) != {"R"}:
            return None
        r_ext = [i.dom for i in red.iters[n_s:]]
        if not all(isinstance(d, int) or hasattr(d, "value") for d in r_ext):
            return None
        if math.prod(int(d) for d in r_ext) > self.MAX_WINDOW:
            return None
        return red


def _inline_either_way(sch, bi) -> None:
    """Inline the block into its consumer, else into its producer, else leave it."""
    try:
        sch.compute_inline(bi.block_rv)
    except Exception:  # noqa: BLE001
        try:
            sch.reverse_compute_inline(bi.block_rv)
        except Exception:  # noqa: BLE001
            pass


def _schedule_reduction(sch, red, n_s: int, lanes: int) -> None:
    """Reduction loops moved inside the spatial ones but outside the innermost spatial loop,
    which is vectorised; the other spatial loops fused and parallel."""
    loops = sch.get_loops(red.block_rv)
    s_loops, r_loops = list(loops[:n_s]), list(loops[n_s:])
    last = s_loops.pop()
    e = _extent(sch, last)
    vec = 0
    if isinstance(e, int):
        vec = _vector_width(e, lanes)
        if not vec and 2 <= e <= lanes:
            vec = e
    if vec and e > vec:
        o, inner = sch.split(last, factors=[None, vec])
        s_loops.append(o)
    else:
        inner = last
    sch.reorder(*s_loops, *r_loops, inner)
    if vec:
        # the init stays in the block (decomposed, the update block is neither complete nor a
        # reduction and cannot be vectorised): lowered, it is an `if` on the reduction indices,
        # uniform across the vector
        sch.vectorize(inner)
    if s_loops:
        _fuse_parallel(sch, s_loops)


class _Guard(_ScheduleRule):
    """A dlight rule that raises is a rule that does not apply."""
    def __init__(self, rule):
        self.rule = rule

    def apply(self, func, target, tunable):
        try:
            return self.rule.apply(func, target, tunable)
        except Exception:  # noqa: BLE001
            return None


class Fallback(_Rule):
    """Parallelise the leading spatial loops of every block (after inlining what inlines)."""

    debuggable = False     # the last resort: never raises

    def _schedule(self, sch, infos, target):
        for bi in _try_inline_all_but_last(sch, infos):
            loops = sch.get_loops(bi.block_rv)[:_leading_spatial(bi)]
            if loops:
                _fuse_parallel(sch, loops)
        return sch


class Matmul(_Rule):
    """A matmul of two activations: register tiles (matmul_schedule.py)."""

    def _schedule(self, sch, infos, target):
        return schedule_matmul(sch, infos, _lanes(target), _extent)


class RowNorm(_Rule):
    """Reductions of a row feeding its output (layer norm, softmax): norm_schedule.py."""

    def _schedule(self, sch, infos, target):
        return schedule_row_norm(sch, infos, _lanes(target), _extent, _PARALLEL_MIN)


def glue_rules() -> list:
    """The rules, in the order they are tried."""
    return [Injective(), Matmul(), RowReduce(), RowNorm(), Window(), _Guard(dlight.cpu.GEMV()),
            _Guard(dlight.cpu.Reduction()), Fallback()]


def apply_glue_schedules():
    """The pass: dlight.ApplyDefaultSchedule over glue_rules() (needs a target in scope); the
    fast exp lowering registered for the build that follows."""
    register_fast_exp()
    return dlight.ApplyDefaultSchedule(*glue_rules())
