"""Infeasible budgets: how a plan that misses its budget is reported, and the error for callers
that want one.

Mappers never raise for an infeasible budget. They return their best plan with
meta["feasible"] = False and meta["violations"] (one sentence per broken bound), plus
meta["unreachable"] when a bound is provably out of reach of every allowed assignment
(e.g. "sparsity 0.7100 < budget 0.9000" for the most any allowed assignment can prune). Callers
that want an error call `require_feasible(plan)`. A flagged plan carries more than an exception
would: which layers stayed dense and why, i.e. what to change to make the budget reachable.
"""
from __future__ import annotations

from typing import Optional

from .plan import Plan


class InfeasibleBudget(ValueError):
    """A plan does not meet its budget; `.plan` is the plan, `.violations` the why."""

    def __init__(self, message: str, plan: Optional[Plan] = None, violations=()):
        super().__init__(message)
        self.plan = plan
        self.violations = list(violations)


def require_feasible(plan: Plan) -> Plan:
    """`plan` if a mapper marked it feasible, else InfeasibleBudget with the violations."""
    if plan.meta.get("feasible", False):
        return plan
    why = plan.meta.get("violations") or ["the plan is not marked feasible"]
    raise InfeasibleBudget(f"{plan.meta.get('mapper', 'mapper')}: budget "
                           f"{plan.meta.get('budget')} not met: " + "; ".join(why),
                           plan, why)
