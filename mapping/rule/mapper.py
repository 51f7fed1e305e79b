"""RuleMapper: the per-layer rules, then the global ones (compensation, proxy-guard,
proxy-spend), into a Plan with a reason per layer and what the global rules did in its meta."""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from ..budget import REL_TOL
from ..layer import LayerSpec
from ..plan import Plan
from ..problem import Problem
from ..space import DENSE
from .compensation import compensate
from .config import RuleConfig
from .context import Decision, RuleContext
from .guard import proxy_guard
from .int8 import int8_rule
from .rules import RULES
from .spend import proxy_spend


def _target_sparsity(problem: Problem, config: RuleConfig) -> float:
    if config.sparsity is not None:
        return config.sparsity
    if problem.budget.sparsity is not None:
        return problem.budget.sparsity
    offered = [c.sparsity for n in problem.names for c in problem.allowed(n) if not c.is_dense]
    return min(offered) if offered else 0.0


class RuleMapper:
    """Explicit rules, each decision with its reason (see mapping.rule)."""

    name = "rule"

    def __init__(self, config: Optional[RuleConfig] = None, rules: tuple = RULES, **overrides):
        self.config = replace(config or RuleConfig(), **overrides)
        self.rules: tuple = tuple(rules)

    def assign(self, problem: Problem) -> tuple:
        """(assignment, reasons, notes) without building a Plan (the search seeds from it)."""
        return self._assign(problem)[:3]

    def _assign(self, problem: Problem) -> tuple:
        """(assignment, reasons, notes, proxy-guard info or None, proxy-spend info or
        None, int8 info or None)."""
        ctx = RuleContext(problem, self.config, _target_sparsity(problem, self.config))
        decisions = {spec.name: self._decide(ctx, spec) for spec in problem.layers}
        if self.config.compensate:
            compensate(ctx, decisions)
        before = dict(decisions)
        int8 = int8_rule(ctx, decisions, floor=False) if self.config.int8 else None
        guard, spend = self._proxy_rules(ctx, decisions)
        if int8 is not None and int8["int8_layers"] and self._below_floor(ctx, decisions):
            # proxy-guard could not pay for the int8 layers with pruning: back to the fp32
            # plan, its own guard and spend, then int8 only where the floor allows it
            ctx.notes.append("rule int8: with every time-saving int8 layer, proxy-guard could "
                             "not restore the proxy floor; int8 taken again after the proxy "
                             "rules, only where the floor holds")
            decisions.clear()
            decisions.update(before)
            ctx.bits.clear()
            guard, spend = self._proxy_rules(ctx, decisions)
            int8 = int8_rule(ctx, decisions, floor=True)
        return ({n: d.cand for n, d in decisions.items()},
                {n: d.reason for n, d in decisions.items()}, ctx.notes, guard, spend, int8)

    def _proxy_rules(self, ctx: RuleContext, decisions: dict) -> tuple:
        guard = proxy_guard(ctx, decisions) if self.config.proxy_guard else None
        spend = proxy_spend(ctx, decisions, guard) if self.config.proxy_spend else None
        return guard, spend

    @staticmethod
    def _below_floor(ctx: RuleContext, decisions: dict) -> bool:
        floor = ctx.problem.budget.min_proxy
        if floor is None:
            return False
        value = ctx.problem.proxy({n: d.cand for n, d in decisions.items()})
        return value < floor - REL_TOL * max(1.0, abs(floor))

    def _decide(self, ctx: RuleContext, spec: LayerSpec) -> Decision:
        for _, rule in self.rules:
            d = rule(ctx, spec)
            if d is not None:
                if not ctx.problem.is_allowed(spec.name, d.cand):
                    raise RuntimeError(f"rule picked a candidate that is not allowed: "
                                         f"{spec.name} {d.cand.key}")
                return self._remark(ctx, spec, d)
        return self._remark(ctx, spec, Decision(DENSE, "no rule decided: kept dense"))

    @staticmethod
    def _remark(ctx: RuleContext, spec: LayerSpec, d: Decision) -> Decision:
        """The decision with what an earlier rule had to say about the layer (first-layer)."""
        if spec.name not in ctx.remarks:
            return d
        text = ctx.remarks[spec.name][1 if d.cand.is_dense else 0]
        return replace(d, reason=f"{d.reason} | {text}")

    def map(self, problem: Problem) -> Plan:
        assignment, reasons, notes, guard, spend, int8 = self._assign(problem)
        meta = {
            "rules": [name for name, _ in self.rules],
            "rule_config": {"sparsity": self.config.sparsity,
                            "max_block_elems": self.config.max_block_elems,
                            "tie_tolerance": self.config.tie_tolerance,
                            "compensate": self.config.compensate,
                            "proxy_guard": self.config.proxy_guard,
                            "guard_proxy_calls": self.config.guard_proxy_calls,
                            "proxy_spend": self.config.proxy_spend,
                            "first_layer_share": self.config.first_layer_share,
                            "int8": self.config.int8, "int8_first": self.config.int8_first,
                            "int8_ends": self.config.int8_ends,
                            "int8_max_drop": self.config.int8_max_drop},
            "notes": notes}
        if guard is not None:
            meta["proxy_guard"] = guard
        if spend is not None:
            meta["proxy_spend"] = spend
        if int8 is not None:
            meta["int8"] = int8
        return problem.to_plan(assignment, self.name, reasons, meta=meta)
