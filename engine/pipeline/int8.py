"""int8 in the pipeline (optimize(bits=8 | "auto"), or a plan with int8 choices).

    candidates  each layer's Choice.bits: the plan's, or with bits=8 every conv the int8
                kernels run (groups 1 or depthwise) except the last layer (the classifier)
    decide      an int8 choice is measured in place like any (the layer on the int8 kernels,
                its own mask, uint8 NCHW4 in and out) against the best dense fp32 backend; not
                >= min_speedup x faster, it goes back to fp32 (and is decided as fp32), said why
    quantize    the masked model calibrated on the calibration batches (engine.quant.calibrate)
                and lowered with its int8 layers on the int8 kernels and its fp32 layers on the
                backends decide chose (engine.quant.lower_int8); a layer the int8 lowering
                cannot take (an activation it does not fuse, ...) goes back to fp32 with the
                lowering's reason. The reference the result is verified against is the masked
                model with those int8 layers fake-quantized (engine.quant.simulate).
"""
from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Optional

from mapping import Candidate

from ..errors import ConfigError
from ..graph.inputs import call
from ..quant import calibrate, lower_int8, simulate
from ..measure.int8 import INT8_DENSE_ROWS
from .candidates import left_alone
from .state import RunState

# verify: the int8 result against its simulation, relative L2 error per output (the kernels'
# exact integer sums vs the simulation's float sums differ by one unit in a few outputs of a
# layer, which later layers carry on)
INT8_VERIFY_RTOL = 0.05


def int8_runs(info) -> Optional[str]:
    """None if the int8 kernels can run layer `info` (engine.graph LayerInfo), else why not."""
    if info.kind != "conv" or len(info.weight_shape) != 4:
        return "linear layers run fp32 (no int8 lowering yet)"
    if info.groups != 1 and not (info.groups == info.weight_shape[0] and
                                 info.weight_shape[1] == 1):
        return f"grouped conv (groups={info.groups}): no int8 kernel"
    return None


def assign_bits(state: RunState) -> None:
    """Choice.bits per layer (stage candidates): the plan's, or bits=8's rule."""
    cfg = state.config
    plan = state.plan_in
    last = state.layers[-1].name if state.layers else None
    for info in state.layers:
        ch = state.choices[info.name]
        if plan is not None and info.name in plan:
            want = plan[info.name].bits
        else:
            want = 8 if cfg.bits == 8 else 32
            if want == 8 and info.name == last:
                ch.reason += "; fp32: the last layer (the classifier) stays fp32"
                continue
        if want != 8:
            continue
        why = int8_runs(info) or left_alone(state.base, info.name, cfg.exclude)
        if why is not None:
            ch.reason += f"; fp32: {why}"
            continue
        ch.bits = 8


def int8_candidate(state: RunState, name: str, timer) -> Candidate:
    """The int8 candidate of a layer's choice, its mask handed to the timer."""
    ch = state.choices[name]
    if ch.pruned:
        cand = Candidate(ch.scheme, ch.block, round(ch.sparsity, 6), "native",
                         tuple(sorted(ch.options.items())), 8)
        if hasattr(timer, "masks"):
            timer.masks.put(name, cand, state.candidates[name][0])
        return cand
    return Candidate("dense", bits=8)


def decide_int8(state: RunState, timer, spec, measure) -> bool:
    """Stage decide for an int8 choice: True if it stays int8 (measured), False if it goes
    back to fp32 (the caller then decides it as an fp32 layer)."""
    ch, cfg = state.choices[spec.name], state.config
    if ch.pruned and spec.name not in state.candidates:
        ch.bits = 32
        ch.reason += "; fp32: no kernel module for this layer"
        return False
    cand = int8_candidate(state, spec.name, timer)
    ms = measure(timer, spec, [cand])
    dense = ms["dense"]
    got = ms.get(cand.key)
    if got is None:
        ch.bits = 32
        ch.reason += "; fp32: the int8 layer could not be measured here"
        return False
    speedup = dense.us / got.us
    if speedup < cfg.min_speedup:
        ch.bits = 32
        ch.reason += (f"; fp32: int8 measured {speedup:.2f}x vs the best dense fp32 "
                      f"({got.us:.0f} vs {dense.us:.0f} us, needs >= {cfg.min_speedup:.2f}x)")
        return False
    ch.latency_us, ch.dense_latency_us = got.us, dense.us
    ch.backend, ch.kernel = "native", got.kernel
    ch.reason += (f"; int8 measured {speedup:.2f}x faster than the best dense fp32 "
                  f"({got.us:.0f} vs {dense.us:.0f} us, {dense.kernel})")
    state.backends[spec.name] = state.candidates[spec.name][1] if ch.pruned else \
        INT8_DENSE_ROWS
    return True


def calibration_batches(state: RunState) -> list:
    """The batches int8 layers are calibrated on (see optimize(calibration=...))."""
    cfg = state.config
    src = cfg.calibration
    if src is None and cfg.map is not None and cfg.map.data is not None:
        data = cfg.map.data
        if isinstance(data, (tuple, list)) and len(data) == 2:
            a = data[0]
            src = [a[: max(1, a.shape[0] // 2)]] if hasattr(a, "shape") else a
    if src is None and isinstance(cfg.finetune, dict) and cfg.finetune.get("train") is not None:
        src = itertools.islice(iter(cfg.finetune["train"]), 8)
    if src is None:
        raise ConfigError("int8 layers need calibration data: pass calibration=[input "
                          "batches] (or data=(x, y) / finetune={'train': ...}) to optimize()")
    out = [b[0] if isinstance(b, (tuple, list)) and len(b) == 2 and
           not isinstance(b[1], dict) and _is_target(b[1]) else b for b in src]
    if not out:
        raise ConfigError("calibration: no batches given")
    return out


def _is_target(t) -> bool:
    """A label tensor of an (x, y) batch (integer class ids)."""
    return hasattr(t, "dtype") and not t.dtype.is_floating_point


def quantize_stage(state: RunState) -> None:
    """The int8 lowering (see the module doc): state.lowered.module, state.reference."""
    int8 = [n for n, c in state.choices.items() if c.bits == 8]
    if not int8:
        return
    cfg = state.config
    cal = calibrate(state.pruned_model, calibration_batches(state))
    fp32 = {l.name for l in state.layers if state.choices[l.name].bits != 8}
    rows = {n: state.backends[n] for n in int8 if isinstance(state.backends.get(n), int)}
    # fp32 layers on the backends decide chose; a generated (TIR) one on the native kernels
    # (the int8 model is compiled as lowered: engine.codegen.compile_lowered)
    specs = {n: s for n, s in state.backends.items() if not (isinstance(s, tuple) and
                                                            s[0] == "tir")}
    qm = lower_int8(state.pruned_model, cal, rows=rows, isa=cfg.isa,
                    fp32_layers=fp32, fp32_specs=specs)
    report = qm.int8_report
    lost = [n for n in int8 if not report.get(n, "").startswith("int8")]
    for n in lost:
        ch = state.choices[n]
        ch.bits = 32
        ch.reason += f"; {report.get(n, 'fp32: not lowered to int8')}"
    kept = [n for n in int8 if n not in lost]
    state.lowered.module = qm
    state.reference = simulate(state.pruned_model, replace(
        cal, layers={n: cal.layers[n] for n in kept if n in cal.layers}))
    state.int8 = {"layers": len(kept), "observer": cal.observer, "batches": cal.batches,
                  "report": dict(report)}
    state.notes.append(f"int8: {len(kept)} layer(s) on the int8 kernels, calibrated on "
                       f"{cal.batches} batch(es) ({cal.observer} observer)"
                       + (f"; {len(lost)} back to fp32 (see their reasons)" if lost else ""))


def check_int8_outputs(opt, reference, example_inputs: tuple) -> None:
    """The int8 result against its fake-quantized simulation (INT8_VERIFY_RTOL, relative L2
    error per output)."""
    import torch
    from ..errors import MismatchError
    from ..graph.outputs import flatten_outputs
    with torch.no_grad():
        ref = [t for _, t in flatten_outputs(call(reference, example_inputs))[0]]
        got = [t for _, t in flatten_outputs(opt(*example_inputs))[0]]
    for i, (r, g) in enumerate(zip(ref, got)):
        if r.shape != g.shape:
            raise MismatchError(f"output {i}: int8 result {tuple(g.shape)} != simulation "
                                f"{tuple(r.shape)}")
        if r.is_floating_point():
            err = float((g.float() - r.float()).norm() / (r.float().norm() + 1e-12))
            if not err <= INT8_VERIFY_RTOL:
                raise MismatchError(f"output {i}: the int8 result differs from its "
                                    f"fake-quantized simulation by {err:.3g} (relative L2; "
                                    f"allowed {INT8_VERIFY_RTOL})")
