"""Starting points for the search mappers: the rule mapper's plan, the uniform plans, dense.

Seeding with these makes a search start feasible whenever one of the simple plans is, and
means a search never returns something worse (by the problem's ranking) than the rule mapper or
the best uniform plan it was seeded with.
"""
from __future__ import annotations

from ..problem import Problem
from ..rule import RuleMapper
from ..uniform import uniform_assignments


def seed_assignments(problem: Problem) -> list:
    """[(name, assignment)]: "rule", "uniform <key>" for each uniform baseline, "dense"."""
    out = [("rule", RuleMapper().assign(problem)[0])]
    for key, (assignment, _) in uniform_assignments(problem).items():
        out.append((f"uniform {key}", assignment))
    out.append(("dense", problem.dense_assignment()))
    return out
