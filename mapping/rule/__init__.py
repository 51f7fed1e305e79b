"""RuleMapper: explicit, documented per-layer rules over measured costs (Gong et al. 2022 style).

Each rule is a small named function `rule(ctx, spec) -> Decision | None`; the first rule that
decides a layer wins, and its reason goes into the layer's Choice. Rules only ever see the
layer's ALLOWED candidates (measured and >= min_speedup faster than dense, see problem.py), so
the rule mapper cannot pick anything slower than dense.

The rules, in order (each module's docstring says exactly what its rule does):
  rules.py         per layer, the first rule that decides wins: first-layer, grouped,
                   not-faster, 3x3, block, no-target.
Then three global rules, in this order:
  compensation.py  compensation: raise sparsity where it is cheapest in measured latency
                   until the cheap budget bounds (sparsity, latency, FLOPs) hold.
  guard.py         proxy-guard: raise the accuracy proxy to budget.min_proxy at the least
                   latency (its steps: guard_steps.py; why it stops short: guard_why.py).
  spend.py         proxy-spend: spend the proxy above budget.min_proxy on latency (its moves
                   and steps: spend_steps.py).
proxy-guard and proxy-spend trade one layer's candidate for another the same way (trade.py).
config.py holds RuleConfig, context.py what the rules work with (RuleContext, Decision), and
mapper.py the RuleMapper that runs them all.

The target sparsity is RuleConfig.sparsity, else budget.sparsity, else the lowest sparsity the
problem offers; a layer uses the lowest level it offers at or above the target. Unstructured
counts as a 1-element block; N:M candidates are left to the search mappers. Only the
proxy-guard and proxy-spend evaluate the accuracy proxy, and only when budget.min_proxy is set
(without a floor, plans are exactly as without them).
"""
from .compensation import compensate
from .config import RuleConfig
from .context import BLOCK_SCHEMES, Decision, RuleContext
from .guard import proxy_guard
from .guard_steps import GUARD_BUNDLES, GUARD_PREFIX
from .mapper import RuleMapper
from .rules import (RULES, rule_3x3, rule_block, rule_first_layer, rule_grouped,
                    rule_no_target, rule_not_faster)
from .spend import proxy_spend
from .spend_steps import SPEND_EPS_US
from .trade import GUARD_EPS

__all__ = ["RuleMapper", "RuleConfig", "RuleContext", "Decision", "RULES", "BLOCK_SCHEMES",
           "rule_first_layer", "rule_grouped", "rule_not_faster", "rule_3x3", "rule_block",
           "rule_no_target", "compensate", "proxy_guard", "proxy_spend", "GUARD_EPS",
           "GUARD_PREFIX", "GUARD_BUNDLES", "SPEND_EPS_US"]
