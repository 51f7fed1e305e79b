"""Stage "verify": the optimized model's outputs against the masked torch model (the numerical
reference), every output, within verify_rtol of its largest magnitude. A model that fails to
run, or a mismatch, is an engine error; where layers were swapped in place (the fallback for
models torch.fx cannot trace) a mismatch names the first layer whose output differs."""
from __future__ import annotations

import torch

from ..errors import EngineError, LoweringError, MismatchError
from ..graph.inputs import call
from ..graph.outputs import flatten_outputs
from .capture import culprit
from .state import RunState

# int8: the result against its simulation, relative L2 error per output (the kernels' exact
# integer sums vs the simulation's float sums differ by one unit in a few outputs of a layer,
# which later layers carry on)
INT8_VERIFY_RTOL = 0.05


def verify(state: RunState, opt) -> None:
    if state.reference is not None:      # int8: against its fake-quantized simulation
        check_int8_outputs(opt, state.reference, state.example_inputs)
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


def check_int8_outputs(opt, reference, example_inputs: tuple) -> None:
    """The int8 result against its fake-quantized simulation (INT8_VERIFY_RTOL, relative L2
    error per output)."""
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
