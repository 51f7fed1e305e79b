"""Stage "verify": the optimized model's outputs against the masked torch model (the numerical
reference), every output, within verify_rtol of its largest magnitude. A model that fails to
run, or a mismatch, is an engine error; where layers were swapped in place (the fallback for
models torch.fx cannot trace) a mismatch names the first layer whose output differs."""
from __future__ import annotations

import torch

from ..errors import EngineError, LoweringError, MismatchError
from .capture import culprit
from .state import RunState


def verify(state: RunState, opt) -> None:
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
        ref = opt.pruned_model(*example_inputs)
        try:
            got = opt(*example_inputs)
        except EngineError:
            raise
        except Exception as e:  # noqa: BLE001  (re-raised as the engine's, the culprit named)
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise LoweringError(f"the optimized model fails on the example inputs"
                                f"{culprit(e)}: {type(e).__name__}: {first}") from e
    refs, gots = flatten(ref), flatten(got)
    if len(refs) != len(gots):
        raise MismatchError(f"optimized model returns {len(gots)} outputs, reference {len(refs)}")
    for i, (r, g) in enumerate(zip(refs, gots)):
        if r.shape != g.shape:
            raise MismatchError(f"output {i}: shape {tuple(g.shape)} != reference {tuple(r.shape)}")
        scale = r.abs().max().item() + 1e-12
        err = (r - g).abs().max().item()
        if not err <= rtol * scale:
            raise MismatchError(f"output {i}: max |optimized - masked reference| = {err:.3g} "
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
            opt.pruned_model(*example_inputs)
            opt(*example_inputs)
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


def flatten(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flatten(o)]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in flatten(out[k])]
    return []
