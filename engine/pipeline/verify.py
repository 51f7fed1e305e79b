"""Stage "verify": the optimized model's outputs against the masked torch model (the numerical
reference), every output, within verify_rtol of its largest magnitude."""
from __future__ import annotations

import torch

from ..errors import MismatchError
from .state import RunState


def verify(state: RunState, opt) -> None:
    check_outputs(opt, state.example_inputs, state.config.verify_rtol)


def check_outputs(opt, example_inputs: tuple, rtol: float) -> None:
    with torch.no_grad():
        ref = opt.pruned_model(*example_inputs)
        got = opt(*example_inputs)
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


def flatten(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flatten(o)]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in flatten(out[k])]
    return []
