"""Stage "check guard": the in-place check's result against the plan as mapped, end to end.

Stage decide times every pruned layer of a given or mapped plan again in place and keeps it
only if it measures >= min_speedup faster than the best dense backend. On small, memory-bound
layers those per-layer times are mostly fixed cost (MobileNetV2 at 2 threads: ~150-200 us a
layer whatever the kernel, one call at a time after a cache scrub) and the verdicts noise; a
dropped layer then runs the dense backend that won in isolation, which can be slower inside the
model: MobileNetV2's mapped plan ran 2.9-5.5 ms checked against 2.1 ms as mapped (session 15).
So when the check dropped layers of the plan, the plan as mapped (replayed with measure=False)
is built too, both are timed end to end, interleaved, and the faster is what optimize()
returns (the whole-model guard then judges it against dense as before). A win of the plan as
mapped is confirmed by a second timing before it is taken (interference only adds time).

When the check's drops take a mapped plan below its sparsity budget, the budget stage leaves
the verdict to this guard (state.budget_miss) instead of raising: the plan as mapped meets the
budget and is returned whatever the timing says, the checked plan's time and sparsity in the
note (allow_infeasible=True: the faster of the two, as for any plan).

Skipped: measure=False, guard="off", a plan measured on a device (judged there), int8 plans
(their own guard), fine-tuned runs (a replay would train again); there a missed budget is an
InfeasibleError as before.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ..graph.inputs import call
from ..runtime import measure as _measure
from .state import RunState

MIN_TIME = 0.25   # seconds each model is timed, a run


def dropped_layers(given, plan) -> list:
    """Layers `given` prunes that `plan` (the checked result) runs dense."""
    return [c.layer for c in given if c.pruned and c.layer in plan and not plan[c.layer].pruned]


def _same_choice(a, b) -> bool:
    return (a.scheme, tuple(a.block or ()), a.bits, a.backend) == \
        (b.scheme, tuple(b.block or ()), b.bits, b.backend) and abs(a.sparsity - b.sparsity) < 1e-9


def applies(state: RunState) -> bool:
    """Whether the check guard runs for this run (see the module doc for what it skips)."""
    cfg = state.config
    source = getattr(state.timer, "source", "host") if state.timer is not None else "host"
    return state.plan_in is not None and cfg.measure and cfg.guard != "off" and \
        source == "host" and state.int8 is None and cfg.finetune is None and cfg.bits == 32


def check_guard(state: RunState, opt, replay: Callable):
    """`opt`, or the plan as mapped built by replay(config) when that is faster end to end or
    when `opt` misses the mapper's sparsity budget (state.budget_miss)."""
    cfg, given = state.config, state.plan_in
    if not applies(state):
        return opt
    dropped = dropped_layers(given, opt.plan)
    if not dropped:
        return opt
    alt = replay(replace(cfg, plan=given, map=None, measure=False, guard="off",
                         progress=False))
    x = state.example_inputs
    fns = {"checked": lambda: call(opt, x), "as_mapped": lambda: call(alt, x)}
    times = _measure.compare(fns, min_time=MIN_TIME)
    if times["as_mapped"] < times["checked"]:     # confirm before acting on it
        again = _measure.compare(fns, min_time=MIN_TIME)
        times = {k: min(times[k], again[k]) for k in times}
    c_ms, m_ms = times["checked"] * 1e3, times["as_mapped"] * 1e3
    miss = state.budget_miss
    keep = "as_mapped" if m_ms < c_ms or miss is not None else "checked"
    verdict = {"checked_ms": round(c_ms, 4), "as_mapped_ms": round(m_ms, 4),
               "dropped": len(dropped), "kept": keep}
    text = (f"check guard: the in-place check kept {len(dropped)} layer(s) of the plan dense; "
            f"checked {c_ms:.3f} ms vs the plan as mapped {m_ms:.3f} ms end to end")
    if miss is not None:
        verdict["checked_sparsity"] = round(miss["sparsity"], 4)
        text += (f"; the checked plan misses the sparsity budget ({miss['message']}), the "
                 f"plan as mapped meets it")
    if keep == "checked":
        opt.plan.meta["check_guard"] = verdict
        opt.notes.append(text + ": the checked one kept")
        return opt
    checked = {c.layer: c for c in opt.plan}
    for c in alt.plan:
        o = checked.get(c.layer)
        if c.layer in dropped:
            c.reason += ("; pruned as mapped: the in-place check's dense choice was slower "
                         "end to end (check guard)")
        elif o is not None and c.latency_us is None and _same_choice(c, o):
            # the replay measured nothing: the in-place check's times of the same choice
            c.latency_us, c.dense_latency_us = o.latency_us, o.dense_latency_us
        if o is not None and c.dense_latency_us is None:
            c.dense_latency_us = o.dense_latency_us
    alt.plan.meta.update({k: v for k, v in opt.plan.meta.items() if k not in alt.plan.meta})
    alt.plan.meta["check_guard"] = verdict
    alt.notes = list(opt.notes) + [text + ": the plan as mapped returned"]
    alt.mapping, alt._dense = opt.mapping, opt._dense
    return alt
