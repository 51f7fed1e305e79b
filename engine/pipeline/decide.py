"""Stage "decide": every layer's execution, measured in place through the measurement service
(engine.measure), the same one that fills the mappers' cost tables.

Per layer, at its real input shape, with its fused epilogue and its own mask: the sparse
kernels of its candidate (native, and a generated TIR kernel when backends has "tir"), and every
dense backend: torch, the SpMM kernel on a dense pack, and for convs the packed dense kernels
(implicit GEMM, Winograd F(4x4, 3x3) for 3x3 stride 1). A candidate is kept only if its fastest
sparse backend is >= min_speedup x the best dense one; otherwise the layer stays dense, on
whichever dense backend measured fastest. The timer is this host's profiler, or the device profiler the mapper measured
with (device=...): a device-measured plan is checked on the device, never on this host.
With measure=False nothing is timed: candidates run the backend the plan names.
"""
from __future__ import annotations

from mapping import DENSE, Candidate, Choice
from mapping.space import DENSE_KEY

from ..graph.layers import gemm_weight, get_module
from ..lowering import lower, native_modules
from ..measure import HostProfiler
from ..measure.specs import layer_spec
from ..runtime.dense import dense_algo
from ..runtime.packing import DENSE_TIR_ROWS, dense_rows
from .candidates import blk, kept_as_is, masked_copy
from .int8 import decide_int8, settle_bits
from .state import RunState


def decide(state: RunState) -> None:
    """state.backends (layer -> rows | ("tir", rows) | ("dense", algo)); the choices get
    latencies and reasons."""
    if not state.config.measure:
        _replay(state)
        return
    alone = kept_as_is(state)        # the model's own modules: not measured, not lowered
    probe = lower(state.base, {l.name: dense_rows(l.groups) for l in state.layers
                               if l.name not in alone}, state.config.isa, keep=alone)
    if not probe.traced:
        state.notes.append(probe.note)
    mods = native_modules(probe.module)
    timer = state.timer if state.timer is not None else HostProfiler(
        {l.name: gemm_weight(get_module(state.base, l.name)).detach() for l in state.layers},
        threads=state.config.threads, isa=state.config.isa, backends=state.config.backends)
    seen = len(getattr(timer, "notes", []))
    for order, info in enumerate(state.layers):
        if info.name in alone:
            continue
        mod = mods.get(info.name)
        if mod is None or not hasattr(mod, "kernel_name"):
            keep_torch(state.choices[info.name],
                       "no native kernel for this layer (lowering kept it in torch)")
            continue
        _decide_layer(state, timer, layer_spec(info, probe.fused.get(info.name), order))
    settle_bits(state, lambda spec: _decide_layer(state, timer, spec), timer)
    state.notes += [f"measure: {n}" for n in getattr(timer, "notes", [])[seen:]]


def _sparse_candidates(state: RunState, spec, timer) -> list:
    """The layer's pruning candidate on each sparse backend that can run it, its mask given to
    the timer (so the kernel timed is the one that will run)."""
    ch = state.choices[spec.name]
    if not ch.pruned or spec.name not in state.candidates:
        return []
    mask = state.candidates[spec.name][0]
    backends = [b for b in state.config.backends if b != "tir" or spec.groups == 1]
    out = []
    for b in backends or ["native"]:
        cand = Candidate(ch.scheme, ch.block, round(ch.sparsity, 6), b,
                         tuple(sorted(ch.options.items())))
        if hasattr(timer, "masks"):
            timer.masks.put(spec.name, cand, mask)
        out.append(cand)
    return out


def _measure(timer, spec, cands: list) -> dict:
    if isinstance(timer, HostProfiler):
        return timer.measure(spec, [DENSE] + cands, detail=True)
    return timer.measure(spec, [DENSE] + cands)


def _decide_layer(state: RunState, timer, spec) -> None:
    ch, cfg = state.choices[spec.name], state.config
    if ch.bits == 8 and decide_int8(state, timer, spec, _measure):
        return
    cands = _sparse_candidates(state, spec, timer)
    ms = _measure(timer, spec, cands)
    sparse = {c.backend: ms[c.key] for c in cands if c.key in ms}
    if cands and not sparse and "native" not in {c.backend for c in cands}:
        # no generated kernel for this layer: the native kernel stands in
        native = _sparse_candidates_on(state, spec, timer, "native")
        ms.update(_measure(timer, spec, native))
        sparse = {c.backend: ms[c.key] for c in native if c.key in ms}
    dense = ms[DENSE_KEY]
    dense_txt = _dense_text(ms)
    ch.dense_latency_us = dense.us
    if sparse:
        fastest = min(sparse, key=lambda b: sparse[b].us)
        speedup = dense.us / sparse[fastest].us
        sparse_txt = ", ".join(f"{b} {m.us:.0f} us" for b, m in sparse.items())
        if speedup >= cfg.min_speedup:
            ch.latency_us, ch.backend, ch.kernel = sparse[fastest].us, fastest, sparse[fastest].kernel
            ch.reason += (f"; {fastest} measured {speedup:.2f}x faster than the best dense "
                          f"({sparse_txt}; {dense_txt})")
            rows = state.candidates[spec.name][1]
            state.backends[spec.name] = rows if fastest == "native" else ("tir", rows)
            return
        ch.reason = (f"kept dense: {ch.scheme} {blk(ch.block)} measured {speedup:.2f}x vs "
                     f"the best dense (needs >= {cfg.min_speedup:.2f}x; {sparse_txt})"
                     ).replace("  ", " ")
        ch.scheme, ch.block, ch.sparsity = DENSE.scheme, None, 0.0
    elif not ch.reason:
        ch.reason = "not pruned"
    ch.latency_us = dense.us
    algo = dense_algo(dense.kernel)
    if dense.kernel.startswith("tir_"):      # the generated kernel on every column
        ch.backend, ch.kernel = "tir", dense.kernel
        state.backends[spec.name] = ("tir", DENSE_TIR_ROWS)
        ch.reason += f"; runs on the generated dense kernel ({dense_txt})"
    elif algo is not None:
        ch.backend, ch.kernel = "native", dense.kernel
        state.backends[spec.name] = ("dense", algo)
        ch.reason += f"; runs on the packed dense kernel, {algo} ({dense_txt})"
    elif dense.kernel != "torch":
        ch.backend, ch.kernel = "native", dense.kernel
        state.backends[spec.name] = dense_rows(spec.groups)
        ch.reason += f"; runs on the native dense kernel ({dense_txt})"
    else:
        ch.backend, ch.kernel = "torch", ""
        ch.reason += f"; runs in torch ({dense_txt})"


def _sparse_candidates_on(state: RunState, spec, timer, backend: str) -> list:
    ch = state.choices[spec.name]
    cand = Candidate(ch.scheme, ch.block, round(ch.sparsity, 6), backend,
                     tuple(sorted(ch.options.items())))
    if hasattr(timer, "masks"):
        timer.masks.put(spec.name, cand, state.candidates[spec.name][0])
    return [cand]


DENSE_NAMES = {"dense/torch": "torch", "dense/native": "native dense",
               "dense/gemm": "packed gemm", "dense/winograd": "winograd",
               "dense/tir": "generated"}


def _dense_text(ms: dict) -> str:
    if "dense/torch" in ms and "dense/native" in ms:
        return ", ".join(f"{name} {ms[key].us:.0f} us" for key, name in DENSE_NAMES.items()
                         if key in ms)
    d = ms[DENSE_KEY]
    return f"dense {d.us:.0f} us ({d.kernel or d.source})"


def _replay(state: RunState) -> None:
    """measure=False: candidates run the sparse backend a given plan names (native by default,
    "tir" when the plan says so and tir is allowed), the rest in torch."""
    masks = {n: m for n, (m, _) in state.candidates.items()}
    packed = {}                              # kept dense on the packed dense kernel it names
    for name, ch in state.choices.items():
        algo = None if ch.pruned else dense_algo(ch.kernel)
        if algo is not None and ch.backend == "native" and name in state.candidates:
            packed[name] = ("dense", algo)
    probe = lower(masked_copy(state.base, masks),
                  {n: packed.get(n, r) for n, (_, r) in state.candidates.items()},
                  state.config.isa, keep=kept_as_is(state))
    if not probe.traced:
        state.notes.append(probe.note)
    mods = native_modules(probe.module)
    groups = {l.name: l.groups for l in state.layers}
    for name, (_, rows) in state.candidates.items():
        mod, ch = mods.get(name), state.choices[name]
        if mod is None or not hasattr(mod, "kernel_name"):
            keep_torch(ch, "no native kernel for this layer")
            continue
        ch.reason += "; not measured (measure=False)"
        if name in packed:
            ch.kernel, state.backends[name] = mod.kernel_name, packed[name]
        elif ch.backend == "tir" and "tir" in state.config.backends and groups.get(name, 1) == 1:
            from ..codegen.host import tir_module
            ch.kernel, state.backends[name] = tir_module(mod).kernel_name, ("tir", rows)
        else:
            ch.backend, ch.kernel, state.backends[name] = "native", mod.kernel_name, rows


def keep_torch(ch: Choice, why: str) -> None:
    ch.scheme, ch.block, ch.sparsity, ch.backend, ch.kernel = DENSE.scheme, None, 0.0, "torch", ""
    ch.reason = why
