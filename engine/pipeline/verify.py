"""Stage "verify": the optimized model's outputs against the masked torch model (the numerical
reference), every output, within verify_rtol of its largest magnitude. A model that fails to
run, or a mismatch, is an engine error; where layers were swapped in place (the fallback for
models torch.fx cannot trace) a mismatch names the first layer whose output differs."""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import EngineError, LoweringError, MismatchError
from ..graph.inputs import call
from ..graph.outputs import flatten_outputs
from .capture import culprit
from .state import RunState

# int8: the result against its simulation, relative L2 error per output (the kernels' exact
# integer sums vs the simulation's float sums differ by one unit in a few outputs of a layer,
# which later layers carry on: engine.quant.check)
INT8_VERIFY_RTOL = 0.05
# past it: accepted within this factor of the simulation's own float32 / float64 difference
INT8_TIE_FACTOR = 2.0


def verify(state: RunState, opt) -> None:
    if state.reference is not None:      # int8: against its fake-quantized simulation
        record: dict = {}
        note = check_int8(opt, state.reference, state.example_inputs, record)
        if note:
            state.notes.append(note)
        if state.int8 is not None:       # the plan's meta["int8"]: what the verify saw
            state.int8["verify"] = record
        return
    try:
        check_outputs(opt, state.example_inputs, state.config.verify_rtol)
    except MismatchError as e:
        if state.lowered is None or state.lowered.traced:
            raise
        where = first_mismatch(opt, state.example_inputs, state.config.verify_rtol)
        if where is None:
            raise
        raise MismatchError(f"{e}; {where}") from e


def check_outputs(opt, example_inputs: tuple, rtol: float) -> None:
    with torch.no_grad():
        ref = call(opt.pruned_model, example_inputs)
        try:
            got = call(opt, example_inputs)
        except EngineError:
            raise
        except Exception as e:  # noqa: BLE001  (re-raised as the engine's, the culprit named)
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise LoweringError(f"the optimized model fails on the example inputs"
                                f"{culprit(e)}: {type(e).__name__}: {first}") from e
    compare_outputs(ref, got, rtol, "optimized model", "masked reference")


def compare_outputs(ref, got, rtol: float, got_name: str, ref_name: str) -> None:
    """Every tensor of `got` against `ref`'s (same structure, names, shapes, dtypes): floating
    ones within rtol of the reference's largest magnitude, integer / bool ones exactly.
    MismatchError naming the output otherwise."""
    refs, gots = flatten_outputs(ref)[0], flatten_outputs(got)[0]
    if [n for n, _ in refs] != [n for n, _ in gots]:
        raise MismatchError(f"{got_name} returns outputs {[n for n, _ in gots]}, {ref_name} "
                            f"{[n for n, _ in refs]}")
    for i, ((name, r), (_, g)) in enumerate(zip(refs, gots)):
        what = f"output {i} {name!r}"
        if r.shape != g.shape or r.dtype != g.dtype:
            raise MismatchError(f"{what}: {g.dtype} {tuple(g.shape)} != {ref_name} {r.dtype} "
                                f"{tuple(r.shape)}")
        if not (r.is_floating_point() or r.is_complex()):
            if not torch.equal(r, g):
                n = int((r != g).sum())
                raise MismatchError(f"{what}: {n} of {r.numel()} {r.dtype} values differ from "
                                    f"the {ref_name} (integer outputs must match exactly)")
            continue
        r, g = r.float(), g.float()
        scale = r.abs().max().item() + 1e-12 if r.numel() else 1.0
        err = (r - g).abs().max().item() if r.numel() else 0.0
        if not err <= rtol * scale:
            raise MismatchError(f"{what}: max |{got_name.split()[0]} - {ref_name}| = {err:.3g} "
                                f"exceeds {rtol:g} x max|reference| ({scale:.3g})")


def first_mismatch(opt, example_inputs: tuple, rtol: float):
    """'layer X (Module) differs ...' for the first plan layer (in the reference's execution
    order) whose swapped-in module's output differs from torch's layer on the same input."""
    outs: dict = {}
    order: list = []
    hooks = []

    def record(name, side):
        def hook(mod, inputs, output):
            if isinstance(output, torch.Tensor) and (name, side) not in outs:
                outs[(name, side)] = (inputs[0], output)
                if side == "ref":
                    order.append(name)
        return hook

    for c in opt.plan:
        try:
            hooks.append(opt.pruned_model.get_submodule(c.layer).register_forward_hook(
                record(c.layer, "ref")))
            hooks.append(opt.runtime.get_submodule(c.layer).register_forward_hook(
                record(c.layer, "got")))
        except AttributeError:
            continue
    try:
        with torch.no_grad():
            call(opt.pruned_model, example_inputs)
            call(opt, example_inputs)
            for name in order:           # each side's layer on the reference's input
                if (name, "got") not in outs:
                    continue
                x, r = outs[(name, "ref")]
                g = opt.runtime.get_submodule(name)(x)
                err, scale = (g - r).abs().max().item(), r.abs().max().item() + 1e-12
                if not err <= rtol * scale:
                    kind = type(opt.runtime.get_submodule(name)).__name__
                    return (f"first layer that differs: {name!r} ({kind}: max err {err:.3g}, "
                            f"max|reference| {scale:.3g})")
    finally:
        for h in hooks:
            h.remove()
    return None


def flatten(out) -> list:
    """The output's tensors in order (engine.graph.outputs.flatten_outputs)."""
    return [t for _, t in flatten_outputs(out)[0]]


def check_int8(opt, reference, example_inputs: tuple, record: Optional[dict] = None) -> str:
    """The int8 result against its fake-quantized simulation `reference`: every int8 layer on
    the same input (engine.quant.check: at most one code apart, in few outputs; a layer that
    differs more is a MismatchError naming it), then every output end to end, within
    INT8_VERIFY_RTOL (relative L2) or, where the network amplifies rounding ties past that,
    within INT8_TIE_FACTOR x what the simulation differs from itself computed in float64 (the
    same ties rounded the other way). Returns a note saying so in that case, else "". record
    (if given) gets the figures: layers checked, the largest share of a layer's outputs one
    code off, the end-to-end error."""
    from ..quant.check import MAX_CODES, layer_diffs
    diffs = layer_diffs(opt.runtime, reference, example_inputs)
    record = {} if record is None else record
    record.update(layers=len(diffs), max_tie_fraction=max(
        (d.differ / d.outputs for d in diffs if d.outputs), default=0.0))
    bad = [d for d in diffs if not d.ok]
    if bad:
        raise MismatchError(f"int8 layer {bad[0]} from its fake-quantized simulation on the "
                            f"same input (allowed: rounding ties, {MAX_CODES} code in a few "
                            f"outputs)" + (f"; {len(bad) - 1} more layer(s)" if bad[1:] else ""))
    with torch.no_grad():
        ref = flatten(call(reference, example_inputs))
        errs = _rel_l2(ref, flatten(opt(*example_inputs)), "int8 result")
        worst = max(range(len(errs)), key=errs.__getitem__, default=None)
        record["rel_l2"] = None if worst is None else round(errs[worst], 6)
        if worst is None or errs[worst] <= INT8_VERIFY_RTOL:
            return ""
        own = _rel_l2(ref, flatten(_in_float64(reference, example_inputs)), "float64")[worst]
    what = (f"output {worst}: the int8 result differs from its fake-quantized simulation by "
            f"{errs[worst]:.3g} (relative L2; allowed {INT8_VERIFY_RTOL}")
    record["float64_rel_l2"] = round(own, 6)
    if not errs[worst] <= INT8_TIE_FACTOR * own:
        raise MismatchError(f"{what}, or {INT8_TIE_FACTOR:g} x the {own:.3g} the simulation "
                            f"differs from itself in float64)")
    return (f"int8: {what}); the simulation computed in float64 differs from itself by "
            f"{own:.3g}, and each of the {len(diffs)} int8 layers matches it on the same input "
            f"(at most {MAX_CODES} code apart): rounding ties this network amplifies")


def _rel_l2(ref: list, got: list, what: str) -> list:
    """Relative L2 error of each floating output (0 for the others, which must be equal)."""
    errs = []
    for i, (r, g) in enumerate(zip(ref, got)):
        if r.shape != g.shape:
            raise MismatchError(f"output {i}: {what} {tuple(g.shape)} != simulation "
                                f"{tuple(r.shape)}")
        if r.is_floating_point():
            errs.append(float((g.float() - r.float()).norm() / (r.float().norm() + 1e-12)))
        elif not torch.equal(r, g):
            raise MismatchError(f"output {i}: {what} differs from the simulation (integer "
                                f"outputs must match exactly)")
        else:
            errs.append(0.0)
    return errs


def _in_float64(reference, example_inputs: tuple):
    """The simulation run in float64 (a copy), its floating inputs too."""
    import copy
    sim = copy.deepcopy(reference).double()
    return call(sim, tuple(t.double() if isinstance(t, torch.Tensor) and t.is_floating_point()
                           else t for t in example_inputs))
