"""Stage "guard": the optimized model against its dense self, end to end.

Every pruned layer was measured faster than dense in place (stage decide), but a model is more
than its layers: the glue between them, the layout each kernel leaves for the next, the thread
pool's hand-overs. So the result is timed end to end, interleaved with the dense model it came
from (torch eager, the user's model as given, on the same thread count), the way
OptimizedModel.benchmark() times it. When the optimized model is not faster (its median at
least the dense one's in two runs, each keeping its best median: interference only adds time),
the engine says so, and with guard="keep" (the default) returns the dense configuration
instead: the model as given, every layer dense with the measurement as its reason.
guard="warn" keeps the optimized model and says so; "off" (or measure=False) skips the check.
"""
from __future__ import annotations

import copy
import warnings

import torch

from mapping import Plan

from ..graph.inputs import call
from ..runtime import measure as _measure
from ..runtime import native
from .decide import keep_torch
from .timing import MIN_TIME, artifact_call, best_of_two
from .state import RunState

GUARD_MODES = ("keep", "warn", "off")


def guard(state: RunState, opt):
    """The result optimize() returns: `opt`, or the dense configuration (see the module
    docstring); the measurement goes into opt.plan.meta["guard"] and the notes."""
    cfg = state.config
    if cfg.guard == "off" or not cfg.measure:
        return opt
    source = getattr(state.timer, "source", "host") if state.timer is not None else "host"
    if source != "host":   # a device-measured plan is judged on the device, not here
        opt.notes.append(f"whole-model guard: skipped (the plan was measured on {source!r}, "
                         f"not this host)")
        return opt
    dense = opt._dense
    times = _time(opt, dense, state.example_inputs, cfg.threads)
    if times["optimized"] >= times["dense"]:   # a loss: confirm it before acting on it
        again = _time(opt, dense, state.example_inputs, cfg.threads)
        times = {k: min(times[k], again[k]) for k in times}
    measured = "runtime"
    if times["optimized"] >= times["dense"]:   # opt(...) loses: does the artifact?
        art = artifact_times(opt, dense, state.example_inputs, cfg.threads)
        if art is not None:
            opt.notes.append(f"whole-model guard: opt(...) in Python {times['optimized'] * 1e3:.3f}"
                             f" ms vs dense {times['dense'] * 1e3:.3f} ms; the compiled "
                             f"artifact (what save() writes) timed instead")
            times, measured = art, "artifact"
    o_ms, d_ms = times["optimized"] * 1e3, times["dense"] * 1e3
    faster = o_ms < d_ms
    verdict = {"optimized_ms": round(o_ms, 4), "dense_ms": round(d_ms, 4),
               "speedup": round(d_ms / o_ms, 3) if o_ms > 0 else None,
               "threads": cfg.threads or native.get_threads(), "measured": measured,
               "kept": "optimized" if faster or cfg.guard == "warn" else "dense"}
    opt.plan.meta["guard"] = verdict
    if faster:
        opt.notes.append(f"whole-model guard: optimized {o_ms:.3f} ms vs dense {d_ms:.3f} ms "
                         f"end to end ({d_ms / o_ms:.2f}x)"
                         + (", as the compiled artifact" if measured == "artifact" else ""))
        return opt
    text = (f"the optimized model is not faster than the dense model end to end: "
            f"{o_ms:.3f} ms vs {d_ms:.3f} ms (median, interleaved, "
            f"{verdict['threads']} thread(s))")
    if state.recurrent is not None and state.recurrent.decomposed:
        text += (" - the host runtime steps recurrent layers in Python, torch's dense "
                 "model in its fused kernel; compiled artifacts unroll the steps: "
                 "guard='warn' keeps the plan for opt.save()")
    if cfg.guard == "warn":
        opt.notes.append(f"whole-model guard: {text}; kept (guard='warn')")
        warnings.warn(f"engine.optimize: {text}", RuntimeWarning, stacklevel=3)
        return opt
    return _dense_result(state, opt, f"whole-model guard: {text}; returned the dense model "
                                     f"(guard='warn' keeps the optimized one)", verdict)


def _time(opt, dense, inputs: tuple, threads) -> dict:
    """Median seconds a call of each, interleaved; torch on the run's thread count for the
    dense model (the optimized one sets its own around each call)."""
    return _measure.compare({"optimized": lambda: call(opt, inputs),
                             "dense": _dense_call(dense, inputs, threads)}, min_time=MIN_TIME)


def _dense_call(dense, inputs: tuple, threads):
    """A call of the dense model in torch on the run's thread count (restored after)."""
    prev = torch.get_num_threads()
    n = threads or native.get_threads()

    def run_dense():
        torch.set_num_threads(n)
        try:
            with torch.no_grad():
                return call(dense, inputs)
        finally:
            torch.set_num_threads(prev)
    return run_dense


def artifact_times(opt, dense, inputs: tuple, threads):
    """Median seconds of the host artifact opt.save() would write and of the dense model in
    torch, interleaved, best of two runs; None (a note) when the plan's target does not run
    here or the model does not compile (artifact_call)."""
    run = artifact_call(opt, inputs, threads)
    if run is None:
        return None
    return best_of_two({"optimized": run, "dense": _dense_call(dense, inputs, threads)})


def _dense_result(state: RunState, opt, why: str, verdict: dict):
    """opt's dense configuration: the dense model as the runtime and the reference, every layer
    dense in torch with `why` (a pruned layer also keeps what it had been: its measured
    speedup alone)."""
    from .result import OptimizedModel
    choices = []
    for c in opt.plan:
        d = copy.deepcopy(c)
        was = (f" (alone: {c.scheme} {c.block} at {c.sparsity:.2f}, {c.speedup:.2f}x)"
               if c.pruned and c.speedup else "")
        keep_torch(d, why + was)
        choices.append(d)
    plan = Plan(opt.plan.target, choices, dict(opt.plan.meta))
    plan.meta["guard"] = verdict
    notes = list(opt.notes) + [why]
    out = OptimizedModel(opt._dense, opt._dense, plan, opt.layers, opt.example_inputs,
                         opt.config, notes)
    out._dense = opt._dense
    out.mapping = opt.mapping
    return out
