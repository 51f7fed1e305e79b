"""int8 in the pipeline (optimize(bits=8 | "auto"), or a plan with int8 choices).

    candidates  each layer's Choice.bits: the plan's, or with bits=8 every layer the int8
                kernels run (convs of groups 1 or depthwise, linear layers) except the last
                layer (the classifier)
    decide      an int8 choice is measured in place like any (the layer on the int8 kernels,
                its own mask, uint8 NCHW4 in and out) together with its mask on the fp32
                sparse kernel and the dense fp32 backends; then (settle_bits) the int8 layers
                whose fp32 form makes the model faster, the quantize / dequantize it adds or
                removes between layers counted, go back to fp32 and are decided as fp32, each
                with the figures in its reason
    quantize    the masked model calibrated on the calibration batches (engine.quant.calibrate)
                and lowered with its int8 layers on the int8 kernels and its fp32 layers on the
                backends decide chose (engine.quant.lower_int8); a layer the int8 lowering
                cannot take (an activation it does not fuse, ...) goes back to fp32 with the
                lowering's reason. The reference the result is verified against is the masked
                model with those int8 layers fake-quantized (engine.quant.simulate).
    int8 guard  (before the whole-model guard) the result timed end to end against its fp32
                twin, the same masks on the fp32 kernels (stage lower's module), both as the
                compiled artifacts save() writes where they compile here (else opt(...) in
                the Python runtime): layers measured faster one at a time can lose as a
                whole (the domain changes, the fp32 path's fused blocks and layouts). If the
                twin is faster, it is returned: every layer fp32, the measurement in its
                reason (guard="warn" keeps int8 and says so).
"""
from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Optional

import torch

from mapping import Candidate

from ..errors import ConfigError
from ..graph.layers import is_transposed_linear
from ..lowering import fuse_blocks
from ..quant import calibrate, lower_int8, simulate
from ..measure.int8 import INT8_DENSE_ROWS
from .candidates import left_alone
from .state import RunState

def int8_runs(info, module=None) -> Optional[str]:
    """None if the int8 kernels can run layer `info` (engine.graph LayerInfo; module: the
    model's module of that name, if known), else why not."""
    if info.kind == "linear" and len(info.weight_shape) == 2:
        if module is not None and not isinstance(module, torch.nn.Linear) and \
                not is_transposed_linear(module):
            return (f"{type(module).__name__} has no int8 lowering (nn.Linear and "
                    f"transformers' Conv1D have: convert the layer to nn.Linear)")
        return None
    if info.kind != "conv" or len(info.weight_shape) != 4:
        return f"no int8 kernel for a {info.kind} layer of weight {tuple(info.weight_shape)}"
    if info.groups != 1 and not (info.groups == info.weight_shape[0] and
                                 info.weight_shape[1] == 1):
        return f"grouped conv (groups={info.groups}): no int8 kernel"
    return None


def _module(model, name: str):
    try:
        return model.get_submodule(name)
    except AttributeError:
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
        why = int8_runs(info, _module(state.base, info.name)) or \
            left_alone(state.base, info.name, cfg.exclude)
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
    """Stage decide for an int8 choice: its int8 kernel, its mask on the fp32 sparse kernel and
    the dense fp32 backends measured together; the choice stays int8 for now (settle_bits
    decides with the domain changes counted). False (back to fp32, decided as such by the
    caller) when the int8 layer cannot be measured."""
    ch = state.choices[spec.name]
    if ch.pruned and spec.name not in state.candidates:
        ch.bits = 32
        ch.reason += "; fp32: no kernel module for this layer"
        return False
    cand = int8_candidate(state, spec.name, timer)
    fp32 = []
    if ch.pruned:
        fp32 = [Candidate(ch.scheme, ch.block, round(ch.sparsity, 6), "native",
                          tuple(sorted(ch.options.items())))]
        if hasattr(timer, "masks"):
            timer.masks.put(spec.name, fp32[0], state.candidates[spec.name][0])
    ms = measure(timer, spec, [cand] + fp32)
    got = ms.get(cand.key)
    if got is None:
        ch.bits = 32
        ch.reason += "; fp32: the int8 layer could not be measured here"
        return False
    dense = ms["dense"]
    sparse = ms.get(fp32[0].key) if fp32 else None
    best32 = min(dense.us, sparse.us) if sparse is not None and \
        dense.us >= state.config.min_speedup * sparse.us else dense.us
    state.int8_costs[spec.name] = {"spec": spec, "int8_us": got.us, "fp32_us": best32}
    ch.latency_us, ch.dense_latency_us = got.us, dense.us
    ch.backend, ch.kernel = "native", got.kernel
    ch.reason += (f"; int8 measured {dense.us / got.us:.2f}x vs the best dense fp32 "
                  f"({got.us:.0f} vs {dense.us:.0f} us, {dense.kernel}; fp32 with this "
                  f"mask {best32:.0f} us)")
    state.backends[spec.name] = state.candidates[spec.name][1] if ch.pruned else \
        INT8_DENSE_ROWS
    return True


def settle_bits(state: RunState, decide_fp32, timer=None) -> None:
    """After decide: the int8 layers that make the model faster as fp32, counting the domain
    changes between layers (mapping.domains: one quantize or dequantize per tensor whose
    producer and consumers differ), go back to fp32, the one saving most first, until no flip
    back saves time; each is then decided as an fp32 layer (decide_fp32(spec)). A layer whose
    int8 kernel alone is slower than fp32 stays int8 when the conversions around it would cost
    more (a depthwise conv between int8 1x1 convs). timer: the stage's profiler (conversions
    measured as it measures layers, when it can: engine.measure.domains)."""
    costs = state.int8_costs
    if not costs:
        return
    from mapping import CostTable
    from ..measure.domains import measure_conversions, model_tensors
    specs = [c["spec"] for c in costs.values()]
    conv = measure_conversions(model_tensors(state.base, state.example_inputs, specs),
                               CostTable(), "host", threads=state.config.threads,
                               profiler=timer)
    bits = {n: c.bits for n, c in state.choices.items()}
    while True:
        gains = {n: costs[n]["int8_us"] - costs[n]["fp32_us"] - conv.flip_delta(bits, n, 32)
                 for n in costs if bits[n] == 8}
        best = max(gains, key=gains.get, default=None)
        if best is None or gains[best] <= 0:
            break
        bits[best] = 32
        ch = state.choices[best]
        ch.bits = 32
        ch.reason += (f"; fp32: int8 {costs[best]['int8_us']:.0f} us vs fp32 "
                      f"{costs[best]['fp32_us']:.0f} us, the domain changes counted: fp32 "
                      f"saves {gains[best]:.0f} us")
        decide_fp32(costs[best]["spec"])
    n8 = sum(b == 8 for b in bits.values())
    state.notes.append(f"int8: {n8} layer(s) int8 after the in-place check, conversions "
                       f"{conv.cost(bits):.0f} us (measured per tensor)")


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
    # fp32 layers on the backends decide chose (a generated (TIR) one on its kernel, in
    # artifacts too: engine.codegen.compile_lowered generates it for the target), not on the
    # dense GEMM lower_int8 defaults to
    qm = lower_int8(state.pruned_model, cal, rows=rows, isa=cfg.isa,
                    fp32_layers=fp32, fp32_specs=dict(state.backends),
                    fp32_reason="kept fp32 (the plan's choice: see the layer's reason)")
    report = qm.int8_report
    # inverted-residual blocks whose three layers stay fp32: the fused block kernel, as in the
    # fp32 lowering (lower_stage); a block with an int8 layer runs its layers one by one
    fused = fuse_blocks(qm, cfg.isa) if isinstance(qm, torch.fx.GraphModule) else 0
    if fused:
        state.notes.append(f"int8: {fused} fp32 inverted-residual block(s) fused")
    lost = [n for n in int8 if not report.get(n, "").startswith("int8")]
    for n in lost:
        ch = state.choices[n]
        ch.bits = 32
        ch.reason += f"; {report.get(n, 'fp32: not lowered to int8')}"
    kept = [n for n in int8 if n not in lost]
    state.fp32_module = state.lowered.module      # the fp32 twin (int8_guard)
    state.lowered.module = qm
    state.reference = simulate(state.pruned_model, replace(
        cal, layers={n: cal.layers[n] for n in kept if n in cal.layers}))
    state.int8 = {"layers": len(kept), "observer": cal.observer, "batches": cal.batches,
                  "report": dict(report)}
    state.notes.append(f"int8: {len(kept)} layer(s) on the int8 kernels, calibrated on "
                       f"{cal.batches} batch(es) ({cal.observer} observer)"
                       + (f"; {len(lost)} back to fp32 (see their reasons)" if lost else ""))


def int8_guard(state: RunState, opt):
    """opt, or its fp32 twin when that is faster end to end (see the module doc)."""
    cfg = state.config
    if state.int8 is None or cfg.guard == "off" or not cfg.measure or \
            state.fp32_module is None:
        return opt
    import copy
    from mapping import Plan
    from ..runtime import measure as _measure
    from .timing import artifact_call, best_of_two
    from .result import OptimizedModel
    from .verify import check_outputs
    plan = Plan(opt.plan.target, [copy.deepcopy(c) for c in opt.plan], dict(opt.plan.meta))
    int8_layers = {c.layer for c in plan if c.bits == 8}
    for c in plan:      # fp32 from the start: its compile() is the fp32 one
        c.bits = 32
    twin = OptimizedModel(state.fp32_module, opt.pruned_model, plan, opt.layers,
                          opt.example_inputs, opt.config, list(opt.notes))
    x = opt.example_inputs
    # what ships is the compiled artifact, and the two forms compile differently (an fp32
    # transformer keeps its token stream transposed between linears, int8 linears take and
    # give rows: BERT 4x256, 128 tokens, 80%: int8 6.4 vs fp32 8.0 ms in the Python runtime,
    # 4.2 vs 3.0 ms as artifacts; MobileNetV2 int8 4x4 80%: 4.63 vs 4.50 ms in the runtime,
    # 2.4-2.7 vs 3.3 ms as artifacts), so both are compiled and timed where they run here; the
    # runtime's opt(...) only where they do not
    runs = {k: artifact_call(m, x, cfg.threads, "int8 guard") for k, m in
            (("int8", opt), ("fp32", twin))}
    if all(r is not None for r in runs.values()):
        best, measured = best_of_two(runs), "artifact"
    else:
        best, measured = {}, "runtime"
        for _ in range(2):
            t = _measure.compare({"int8": lambda: opt(*x), "fp32": lambda: twin(*x)},
                                 min_time=0.25)
            best = {k: min(v, best.get(k, v)) for k, v in t.items()}
            if best["int8"] < best["fp32"]:
                break
    i_ms, f_ms = best["int8"] * 1e3, best["fp32"] * 1e3
    verdict = {"int8_ms": round(i_ms, 4), "fp32_ms": round(f_ms, 4), "measured": measured,
               "kept": "int8" if i_ms < f_ms or cfg.guard == "warn" else "fp32"}
    opt.plan.meta["int8"]["guard"] = verdict
    text = (f"int8 guard: int8 {i_ms:.3f} ms vs the same masks in fp32 {f_ms:.3f} ms end to "
            f"end" + (", as compiled artifacts" if measured == "artifact" else ""))
    if verdict["kept"] == "int8":
        opt.notes.append(text + ("" if i_ms < f_ms else "; int8 kept (guard='warn')"))
        return opt
    why = f"{text}: the fp32 twin is faster, returned instead"
    for c in twin.plan:
        if c.layer in int8_layers:
            c.reason += f"; fp32: {why}"
    twin.plan.meta["int8"] = dict(opt.plan.meta["int8"], guard=verdict)
    twin.notes.append(why)
    twin._dense, twin.mapping = opt._dense, opt.mapping
    check_outputs(twin, x, cfg.verify_rtol)
    return twin
