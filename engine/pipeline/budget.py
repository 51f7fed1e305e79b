"""Budget honesty for mapped plans: a budget the plan misses is said out loud (an
InfeasibleError by default that says what is reachable and why, or, with
allow_infeasible=True, a note), and a mapped plan never loses to a uniform plan it competes
with: when the best feasible uniform plan is predicted faster from the same measured costs, that
uniform plan is returned instead, and the notes say so."""
from __future__ import annotations

from typing import Optional

from mapping import Plan
from mapping.budget import Totals
from mapping.uniform import uniform_plans

from ..errors import InfeasibleError
from .check_guard import applies as check_guard_applies


def reachable(problem) -> dict:
    """What the measured costs allow at best: global sparsity, and the share of weights in
    layers where some pruning candidate measured >= min_speedup x faster than dense."""
    total = problem.total_params or 1
    prunable = sum(spec.params for spec in problem.layers
                   if any(not c.is_dense for c in problem.allowed(spec.name)))
    return {"sparsity": problem.bounds().sparsity, "prunable_share": prunable / total}


def infeasible_message(problem, plan: Plan, min_speedup: float) -> str:
    """One paragraph: which bound fails, what is reachable, which option to change."""
    budget = plan.meta.get("budget", {})
    want = budget.get("sparsity")
    r = reachable(problem)
    parts = []
    if want is not None and r["sparsity"] < want - 1e-9:
        parts.append(f"sparsity {want:.2f} unreachable: layers where pruning measures >= "
                     f"{min_speedup:.2f}x faster than dense hold {r['prunable_share']:.0%} of "
                     f"the weights, so at most {r['sparsity']:.2f} global sparsity; lower "
                     f"sparsity, lower min_speedup, add backends to the candidate space, or "
                     f"pass allow_infeasible=True")
    else:
        why = "; ".join(plan.meta.get("violations", [])) or "the plan is not feasible"
        parts.append(f"the mapper ({plan.meta.get('mapper')}) found no plan within the budget "
                     f"{budget}: {why}; reachable sparsity {r['sparsity']:.2f}. Relax the "
                     f"budget (sparsity, latency_budget, min_proxy), give the search more "
                     f"search_time, or pass allow_infeasible=True")
    return " ".join(parts)


def check_feasible(problem, plan: Plan, min_speedup: float, allow: bool, notes: list) -> None:
    if plan.meta.get("feasible", False):
        return
    msg = infeasible_message(problem, plan, min_speedup)
    if not allow:
        raise InfeasibleError(msg, plan, reachable(problem))
    notes.append(f"budget NOT met (allow_infeasible=True): {msg}")


def best_uniform(problem) -> Optional[Plan]:
    """The best feasible uniform plan by the problem's ranking, or None."""
    feasible = [p for p in uniform_plans(problem).values() if p.meta.get("feasible")]
    if not feasible:
        return None
    return min(feasible, key=lambda p: problem.rank(_totals(p)))


def _totals(plan: Plan) -> Totals:
    pred = plan.meta["predicted"]
    return Totals(pred["latency_us"], pred["sparsity"], pred["flops"], pred["proxy"])


def no_worse_than_uniform(problem, plan: Plan, notes: list) -> Plan:
    """`plan`, or the best feasible uniform plan when that ranks better on the same costs."""
    if not plan.meta.get("feasible", False):
        return plan
    uni = best_uniform(problem)
    if uni is None or problem.rank(_totals(uni)) >= problem.rank(_totals(plan)):
        return plan
    mine, theirs = plan.meta["predicted"], uni.meta["predicted"]
    notes.append(f"the mapper's plan ({mine['latency_us'] / 1e3:.2f} ms of layer time) ranks "
                 f"below the uniform plan {uni.meta.get('uniform')} ({theirs['latency_us'] / 1e3:.2f}"
                 f" ms) on the same measured costs: returning the uniform plan")
    uni.meta["mapping"] = dict(plan.meta.get("mapping", {}))
    uni.meta["replaced_mapper"] = plan.meta.get("mapper")
    return uni


# Masks reach their nominal sparsity to within a block (stem at 4x1 "0.70": 0.694); below the
# budget by more than this is a budget missed, not rounding.
SPARSITY_SLACK = 0.01


def check_in_place(state) -> None:
    """After the in-place check: a mapped plan whose layers measured slower in place than in
    the cost table (and so stayed dense) can fall below the sparsity budget the mapper met;
    that is said out loud like any missed budget (InfeasibleError, or a note with
    allow_infeasible=True), naming the layers that changed and their measured speedups. Where
    the check guard runs (check_guard.applies), it builds the plan as mapped, which meets the
    budget, and returns that instead of the error (the message goes into its note)."""
    want = (state.mapped_plan.meta.get("budget") or {}).get("sparsity")
    problem = state.mapping_problem
    if want is None or problem is None:
        return
    specs = {s.name: s for s in problem.layers}
    total = sum(s.params for s in specs.values()) or 1
    got = sum(specs[n].params * c.sparsity for n, c in state.choices.items()
              if n in specs and c.pruned) / total
    if got >= want - SPARSITY_SLACK:
        return
    dropped = [f"{n} ({c.reason.split(';')[0].replace('kept dense: ', '')})"
               for n, c in state.choices.items()
               if n in specs and not c.pruned and state.mapped_plan[n].pruned]
    msg = (f"sparsity {want:.2f} not reached: the in-place check kept {len(dropped)} layer(s) "
           f"the mapper pruned dense, because they measured slower than its cost table said "
           f"({'; '.join(dropped[:6])}{' ...' if len(dropped) > 6 else ''}): global sparsity "
           f"{got:.2f}. Timings that disagree with the table point at a busy machine or a "
           f"stale table: re-run (costs=... a fresh table), lower min_speedup, or pass "
           f"allow_infeasible=True")
    if state.config.map.allow_infeasible:
        state.notes.append(f"budget NOT met (allow_infeasible=True): {msg}")
    elif check_guard_applies(state):
        # the plan as mapped meets it: the check guard builds that plan and returns it
        state.budget_miss = {"message": msg, "sparsity": got}
    else:
        raise InfeasibleError(msg, state.mapped_plan, {"sparsity": got})
