"""RuleMapper: explicit, documented per-layer rules over measured costs (Gong et al. 2022 style).

Each rule is a small named function `rule(ctx, spec) -> Decision | None`; the first rule that
decides a layer wins, and its reason goes into the layer's Choice. Rules only ever see the
layer's ALLOWED candidates (measured and >= min_speedup faster than dense, see problem.py), so
the rule mapper cannot pick anything slower than dense.

The rules, in order:
  first-layer   the first layer (order 0) stays dense: few weights, large accuracy cost.
  grouped       depthwise / grouped convs stay dense: no sparse kernel.
  not-faster    nothing allowed (every candidate slower than min_speedup x dense, unmeasured or
                not applicable) -> dense, with the measured rejections.
  3x3           3x3 conv -> pattern or block-punched, whichever measured faster at the target
                sparsity (block chosen as below).
  block         1x1 conv, linear and other kernels -> block-punched with the block whose
                measured speedup is best at the target sparsity, under the accuracy guard
                (block elements <= max_block_elems); blocks within tie_tolerance of the best
                speedup count as equal and the smallest of them wins (smaller blocks lose less
                accuracy at the same sparsity).
  no-target     nothing allowed at the target sparsity within the guard -> dense for now.
Then one global rule:
  compensation  if the cheap budget bounds (sparsity, latency, FLOPs) are not met, e.g. because
                some layers stayed dense, raise one layer at a time by one sparsity level,
                picking the move with the best measured latency change per extra pruned weight
                (latency-reducing moves only when latency is what is missing), among the same
                allowed, guarded candidates; stop when the budget is met, or say it cannot.
                First-layer and grouped layers are never touched.

The target sparsity is RuleConfig.sparsity, else budget.sparsity, else the lowest sparsity the
problem offers; a layer uses the lowest level it offers at or above the target. Unstructured
counts as a 1-element block; N:M candidates are left to the search mappers. The rules never
evaluate the accuracy proxy (a min_proxy bound is only checked, in the plan's meta).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from .budget import REL_TOL, Totals
from .layer import LayerSpec
from .plan import Plan
from .problem import Problem
from .space import DENSE, Candidate

BLOCK_SCHEMES = ("block", "unstructured")


@dataclass(frozen=True)
class RuleConfig:
    """Knobs of the rule mapper (all documented in the module docstring)."""

    sparsity: Optional[float] = None   # per-layer target; None: budget's, else lowest offered
    max_block_elems: int = 16          # accuracy guard on block size
    tie_tolerance: float = 0.03        # speedups this close count as equal
    compensate: bool = True            # run the global compensation rule

    def __post_init__(self):
        if self.sparsity is not None and not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"RuleConfig.sparsity must be in (0, 1), got {self.sparsity}")
        if self.max_block_elems < 1:
            raise ValueError("RuleConfig.max_block_elems must be >= 1")
        if not 0.0 <= self.tie_tolerance < 1.0:
            raise ValueError("RuleConfig.tie_tolerance must be in [0, 1)")


@dataclass
class Decision:
    """One layer's choice, why, and whether compensation may change it."""

    cand: Candidate
    reason: str
    locked: bool = False


@dataclass
class RuleContext:
    """What every rule can look at."""

    problem: Problem
    config: RuleConfig
    target: float                       # target sparsity
    notes: list = field(default_factory=list)

    def family(self, spec: LayerSpec) -> list:
        """The allowed candidates the rules consider for this layer, guard applied."""
        schemes = BLOCK_SCHEMES + (("pattern",) if _is_3x3(spec) else ())
        return [c for c in self.problem.allowed(spec.name)
                if c.scheme in schemes and c.block_elems <= self.config.max_block_elems]

    def level(self, cands: list) -> Optional[float]:
        """The lowest sparsity level among cands at or above the target."""
        levels = [c.sparsity for c in cands if c.sparsity >= self.target - 1e-9]
        return min(levels) if levels else None

    def speedup(self, spec: LayerSpec, cand: Candidate) -> float:
        return self.problem.speedup(spec.name, cand)


def _is_3x3(spec: LayerSpec) -> bool:
    return spec.op == "conv2d" and spec.kernel == (3, 3)


def _kind(spec: LayerSpec) -> str:
    if spec.op == "linear":
        return "linear"
    return "x".join(map(str, spec.kernel)) + " conv"


# -- the per-layer rules -----------------------------------------------------------------------
def rule_first_layer(ctx: RuleContext, spec: LayerSpec) -> Optional[Decision]:
    if spec.order != 0:
        return None
    return Decision(DENSE, "rule first-layer: the first layer (order 0) stays dense "
                           "(few weights, large accuracy cost)", locked=True)


def rule_grouped(ctx: RuleContext, spec: LayerSpec) -> Optional[Decision]:
    if not spec.is_grouped:
        return None
    kind = "depthwise" if spec.is_depthwise else "grouped"
    return Decision(DENSE, f"rule grouped: {kind} conv (groups={spec.groups}) stays dense "
                           f"(no sparse kernel)", locked=True)


def rule_not_faster(ctx: RuleContext, spec: LayerSpec) -> Optional[Decision]:
    if len(ctx.problem.allowed(spec.name)) > 1:
        return None
    return Decision(DENSE, "rule not-faster: kept dense, "
                    + ctx.problem.rejection_summary(spec.name), locked=True)


def _best_block(ctx: RuleContext, spec: LayerSpec, cands: list) -> tuple:
    """(candidate, note): the fastest block candidate, smallest block among near-ties."""
    blocks = [c for c in cands if c.scheme in BLOCK_SCHEMES]
    if not blocks:
        return None, ""
    best = max(ctx.speedup(spec, c) for c in blocks)
    near = [c for c in blocks if ctx.speedup(spec, c) >= best * (1 - ctx.config.tie_tolerance)]
    pick = min(near, key=lambda c: (c.block_elems, -ctx.speedup(spec, c)))
    fastest = max(blocks, key=lambda c: ctx.speedup(spec, c))
    note = ""
    if fastest.key != pick.key:
        note = (f"; {fastest.key} {ctx.speedup(spec, fastest):.2f}x is within "
                f"{ctx.config.tie_tolerance:.0%}: smaller block preferred")
    return pick, note


def _guard_note(ctx: RuleContext, spec: LayerSpec, level: float, pick: Candidate) -> str:
    """Mention a faster candidate the accuracy guard excluded, so the reason is complete."""
    over = [c for c in ctx.problem.allowed(spec.name)
            if c.block_elems > ctx.config.max_block_elems and abs(c.sparsity - level) < 1e-9
            and ctx.speedup(spec, c) > ctx.speedup(spec, pick)]
    if not over:
        return ""
    c = max(over, key=lambda c: ctx.speedup(spec, c))
    return (f"; {c.key} {ctx.speedup(spec, c):.2f}x excluded by the accuracy guard "
            f"({c.block_elems} > {ctx.config.max_block_elems} block elements)")


def rule_3x3(ctx: RuleContext, spec: LayerSpec) -> Optional[Decision]:
    if not _is_3x3(spec):
        return None
    fam = ctx.family(spec)
    level = ctx.level(fam)
    if level is None:
        return None
    at = [c for c in fam if abs(c.sparsity - level) < 1e-9]
    block, note = _best_block(ctx, spec, at)
    patterns = [c for c in at if c.scheme == "pattern"]
    pattern = max(patterns, key=lambda c: ctx.speedup(spec, c)) if patterns else None
    options = [c for c in (pattern, block) if c is not None]
    pick = max(options, key=lambda c: ctx.speedup(spec, c))
    other = [c for c in options if c is not pick]
    versus = (f" vs {other[0].key} {ctx.speedup(spec, other[0]):.2f}x" if other
              else " (the only scheme allowed at this sparsity)")
    return Decision(pick, f"rule 3x3: 3x3 conv -> {pick.key}, measured "
                          f"{ctx.speedup(spec, pick):.2f}x{versus} at {level:.2f}{note}"
                          f"{_guard_note(ctx, spec, level, pick)}")


def rule_block(ctx: RuleContext, spec: LayerSpec) -> Optional[Decision]:
    fam = [c for c in ctx.family(spec) if c.scheme in BLOCK_SCHEMES]
    level = ctx.level(fam)
    if level is None:
        return None
    pick, note = _best_block(ctx, spec, [c for c in fam if abs(c.sparsity - level) < 1e-9])
    name = "1x1-block" if spec.op == "conv2d" and spec.kernel == (1, 1) else \
        ("linear-block" if spec.op == "linear" else "kxk-block")
    return Decision(pick, f"rule {name}: {_kind(spec)} -> {pick.key}, best measured speedup "
                          f"{ctx.speedup(spec, pick):.2f}x among allowed blocks at "
                          f"{level:.2f}{note}{_guard_note(ctx, spec, level, pick)}")


def rule_no_target(ctx: RuleContext, spec: LayerSpec) -> Optional[Decision]:
    fam = ctx.family(spec)
    others = sorted({f"{c.sparsity:.2f}" for c in fam})
    guarded = [c.key for c in ctx.problem.allowed(spec.name)[1:] if c not in fam]
    why = f"nothing allowed at >= {ctx.target:.2f}"
    if others:
        why += f" (allowed levels: {', '.join(others)})"
    if guarded:
        why += f"; outside the rules or the accuracy guard: {', '.join(guarded[:3])}"
    return Decision(DENSE, f"rule no-target: kept dense, {why}")


RULES: tuple = (
    ("first-layer", rule_first_layer),
    ("grouped", rule_grouped),
    ("not-faster", rule_not_faster),
    ("3x3", rule_3x3),
    ("block", rule_block),
    ("no-target", rule_no_target),
)


# -- the global compensation rule --------------------------------------------------------------
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


# -- the mapper --------------------------------------------------------------------------------
def _target_sparsity(problem: Problem, config: RuleConfig) -> float:
    if config.sparsity is not None:
        return config.sparsity
    if problem.budget.sparsity is not None:
        return problem.budget.sparsity
    offered = [c.sparsity for n in problem.names for c in problem.allowed(n) if not c.is_dense]
    return min(offered) if offered else 0.0


class RuleMapper:
    """Explicit rules, each decision with its reason (see the module docstring)."""

    name = "rule"

    def __init__(self, config: Optional[RuleConfig] = None, rules: tuple = RULES, **overrides):
        self.config = replace(config or RuleConfig(), **overrides)
        self.rules: tuple = tuple(rules)

    def assign(self, problem: Problem) -> tuple:
        """(assignment, reasons, notes) without building a Plan (the search seeds from it)."""
        ctx = RuleContext(problem, self.config, _target_sparsity(problem, self.config))
        decisions = {spec.name: self._decide(ctx, spec) for spec in problem.layers}
        if self.config.compensate:
            compensate(ctx, decisions)
        return ({n: d.cand for n, d in decisions.items()},
                {n: d.reason for n, d in decisions.items()}, ctx.notes)

    def _decide(self, ctx: RuleContext, spec: LayerSpec) -> Decision:
        for _, rule in self.rules:
            d = rule(ctx, spec)
            if d is not None:
                if not ctx.problem.is_allowed(spec.name, d.cand):
                    raise RuntimeError(f"rule picked a candidate that is not allowed: "
                                         f"{spec.name} {d.cand.key}")
                return d
        return Decision(DENSE, "no rule decided: kept dense")

    def map(self, problem: Problem) -> Plan:
        assignment, reasons, notes = self.assign(problem)
        return problem.to_plan(assignment, self.name, reasons, meta={
            "rules": [name for name, _ in self.rules],
            "rule_config": {"sparsity": self.config.sparsity,
                            "max_block_elems": self.config.max_block_elems,
                            "tie_tolerance": self.config.tie_tolerance,
                            "compensate": self.config.compensate},
            "notes": notes})

