"""Uniform baselines: one (scheme, block, backend) at one sparsity on every layer that allows it.

This is what the mappers are compared against ("block 4x1 at 80% everywhere"): for each family
present in the problem's candidate space, the plan that uses it at the budget sparsity on every
layer where it is allowed and leaves the other layers dense, each with the reason.

The sparsity used is the lowest level of the family at or above budget.sparsity (the highest
level if none reaches it); with no sparsity budget there is one plan per (family, level). Plans
are judged like any other (meta["feasible"]): a uniform plan usually misses a global sparsity
budget because the layers it cannot prune stay dense, which is the point of the comparison.
"""
from __future__ import annotations

from typing import Optional

from .budget import Totals
from .plan import Plan
from .problem import Problem
from .space import DENSE, Candidate


def _family(cand: Candidate) -> tuple:
    return (cand.scheme, cand.block, cand.backend, cand.options, cand.bits)


def _offered(problem: Problem) -> dict:
    """family -> sorted sparsity levels, over every candidate offered (allowed or not)."""
    out: dict = {}
    for key in problem.space_keys():
        c = Candidate.from_key(key)
        out.setdefault(_family(c), set()).add(c.sparsity)
    return {f: sorted(levels) for f, levels in out.items()}


def _levels(levels: list, target: Optional[float]) -> list:
    if target is None:
        return levels
    above = [s for s in levels if s >= target - 1e-9]
    return [min(above)] if above else [max(levels)]


def _one(problem: Problem, cand: Candidate) -> tuple:
    """(assignment, reasons) using `cand` wherever it is allowed."""
    assignment, reasons = {}, {}
    for name in problem.names:
        if problem.is_allowed(name, cand):
            assignment[name] = cand
            reasons[name] = f"uniform {cand.key}: " + problem.describe(name, cand)
        else:
            why = next((r.why for r in problem.rejected(name) if r.key == cand.key),
                       "not offered for this layer")
            assignment[name] = DENSE
            reasons[name] = f"uniform {cand.key}: kept dense, {cand.key} {why}"
    return assignment, reasons


def uniform_assignments(problem: Problem) -> dict:
    """candidate key -> (assignment, reasons) for every uniform baseline."""
    out = {}
    for (scheme, block, backend, options, bits), levels in _offered(problem).items():
        for s in _levels(levels, problem.budget.sparsity):
            cand = Candidate(scheme, block, s, backend, options, bits)
            out[cand.key] = _one(problem, cand)
    return out


def uniform_plans(problem: Problem) -> dict:
    """candidate key (e.g. "block4x1@0.80/native") -> its uniform Plan."""
    return {key: problem.to_plan(a, "uniform", r, meta={"uniform": key})
            for key, (a, r) in uniform_assignments(problem).items()}


def best_uniform(problem: Problem) -> Optional[Plan]:
    """The best uniform plan by the problem's objective (feasible first); None if the space
    offers no sparse candidate at all."""
    plans = uniform_plans(problem)
    if not plans:
        return None
    return min(plans.values(), key=lambda p: problem.rank(_totals(p)))


def _totals(plan: Plan) -> Totals:
    pred = plan.meta["predicted"]
    return Totals(pred["latency_us"], pred["sparsity"], pred["flops"], pred["proxy"])
