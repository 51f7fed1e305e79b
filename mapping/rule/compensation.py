"""The rule mapper's first global rule, after every layer has its per-layer decision:

  compensation  if the cheap budget bounds (sparsity, latency, FLOPs) are not met, e.g. because
                some layers stayed dense, raise one layer at a time by one sparsity level,
                picking the move with the best measured latency change per extra pruned weight
                (latency-reducing moves only when latency is what is missing), among the same
                allowed, guarded candidates; stop when the budget is met, or say it cannot.
                Layers kept dense by first-layer, grouped or not-faster are never touched.
"""
from __future__ import annotations

from ..budget import REL_TOL, Totals
from ..layer import LayerSpec
from ..space import Candidate
from .context import Decision, RuleContext


def _next_move(ctx: RuleContext, spec: LayerSpec, cur: Candidate, latency_only: bool):
    """(score, candidate) of one layer's best one-level sparsity raise, or None.
    score = latency change per extra pruned weight (lower is better)."""
    p = ctx.problem
    higher = [c for c in ctx.family(spec) if c.sparsity > cur.sparsity + 1e-9]
    if not higher:
        return None
    step = min(c.sparsity for c in higher)
    at = [c for c in higher if abs(c.sparsity - step) < 1e-9]
    cand = min(at, key=lambda c: p.layer_latency(spec.name, c))
    d_lat = p.layer_latency(spec.name, cand) - p.layer_latency(spec.name, cur)
    d_pruned = p.pruned_weights(spec.name, cand) - p.pruned_weights(spec.name, cur)
    if d_pruned <= 0 or (latency_only and d_lat >= 0):
        return None
    return d_lat / d_pruned, cand


def compensate(ctx: RuleContext, decisions: dict) -> list:
    """Raise sparsity where it is cheapest in measured latency until the cheap bounds hold.
    Mutates decisions; returns the violations left ([] = met)."""
    p = ctx.problem
    assignment = {n: d.cand for n, d in decisions.items()}
    # Running sums: re-totalling the whole problem per step would make this O(L^2).
    lat, pruned = p.latency(assignment), p.sparsity(assignment) * p.total_params
    flops = p.flops(assignment)
    budget = p.budget
    moves: dict = {}

    def missing():
        return budget.violations(Totals(lat, pruned / p.total_params, flops))

    def latency_only():
        need_prune = (budget.sparsity is not None and
                      pruned / p.total_params < budget.sparsity - REL_TOL) or \
                     (budget.flops is not None and flops > budget.flops * (1 + REL_TOL))
        return not need_prune

    lo = latency_only()
    for spec in p.layers:
        if not decisions[spec.name].locked:
            moves[spec.name] = _next_move(ctx, spec, decisions[spec.name].cand, lo)
    while missing():
        if latency_only() != lo:   # what is missing changed: rescore every layer
            lo = latency_only()
            moves = {n: _next_move(ctx, p.spec(n), decisions[n].cand, lo) for n in moves}
        live = [(m[0], i, n) for i, (n, m) in enumerate(moves.items()) if m is not None]
        if not live:
            left = missing()
            ctx.notes.append("rule compensation: cannot meet the budget with allowed, guarded "
                             "candidates on the open layers: " + "; ".join(left))
            return left
        _, _, name = min(live)
        cand, cur = moves[name][1], decisions[name].cand
        gap = missing()[0]
        d_lat = p.layer_latency(name, cand) - p.layer_latency(name, cur)
        lat += d_lat
        pruned += p.pruned_weights(name, cand) - p.pruned_weights(name, cur)
        flops += p.remaining_flops(name, cand) - p.remaining_flops(name, cur)
        decisions[name] = Decision(cand, decisions[name].reason + (
            f" | rule compensation: raised to {cand.key} ({p.speedup(name, cand):.2f}x, "
            f"{d_lat:+.1f} us) because {gap}"))
        moves[name] = _next_move(ctx, p.spec(name), cand, lo)
    return []
