"""Timing whole models for the guards (engine.pipeline.guard, the int8 guard): the compiled
artifact opt.save() would write, called here, and interleaved medians, best of two runs."""
from __future__ import annotations

from ..runtime import measure as _measure
from ..runtime import native

MIN_TIME = 0.25   # seconds each model is timed, a run


def artifact_call(opt, inputs: tuple, threads, what: str = "whole-model guard"):
    """A call of the host artifact opt.save() would write (compiled here, kept for save), its
    thread count set; None (a note on opt, naming `what`) when the plan's target does not run
    here or the model does not compile."""
    from ..codegen import set_num_threads
    from ..graph.inputs import ModelInputs
    from ..targets import get_target
    from ..targets.toolchain import host_arch, norm_arch
    tgt = get_target(opt.plan.target)
    if norm_arch(tgt.arch) != host_arch() or tgt.cross_compiler is not None:
        return None
    try:
        run = opt.compile().bound(*ModelInputs(inputs).tensors)
    except Exception as e:  # noqa: BLE001  (the guard then judges opt(...) alone)
        opt.notes.append(f"{what}: the artifact could not be timed "
                         f"({type(e).__name__}: {str(e).strip()[:200]})")
        return None
    set_num_threads(threads or native.get_threads())
    return run


def best_of_two(calls: dict) -> dict:
    """Median seconds of each call, interleaved (engine.runtime.measure.compare), the best of
    two runs each."""
    best: dict = {}
    for _ in range(2):
        t = _measure.compare(calls, min_time=MIN_TIME)
        best = {k: min(v, best.get(k, v)) for k, v in t.items()}
    return best


