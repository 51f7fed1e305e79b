"""Where a trainer's targets come from: a mapped Plan, or one scheme for every layer."""
from __future__ import annotations

from torch import nn

from mapping import Candidate
from mapping.space import BLOCKED

from .config import Target


def targets_from_plan(plan) -> dict:
    """layer -> mapping.Candidate for every pruned Choice of a Plan."""
    out = {}
    for c in plan:
        if c.pruned:
            out[c.layer] = Candidate(c.scheme, tuple(c.block) if c.block else None, c.sparsity,
                                     c.backend if c.backend in ("native", "tir") else "native",
                                     tuple(sorted(c.options.items())))
    return out


def uniform_targets(model: nn.Module, scheme: str = "block", block=(4, 1),
                    sparsity: float = 0.8, skip_first: bool = True,
                    skip_last: bool = True) -> dict:
    """One scheme for every conv / linear, as layer -> mapping.Candidate. Depthwise convs are
    excluded, and by default the first layer (few weights, the input's only path) and the last
    one (the classifier: a block of output rows there is a block of classes, and a class whose
    rows are all pruned can never be predicted)."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
             and not (isinstance(m, nn.Conv2d) and m.groups > 1)]
    if skip_first and names:
        names = names[1:]
    if skip_last and names:
        names = names[:-1]
    if scheme == "filter":
        return {n: Target("filter", None, sparsity) for n in names}
    return {n: Candidate(scheme, tuple(block) if scheme in BLOCKED else None, sparsity)
            for n in names}
