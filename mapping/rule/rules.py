"""The rule mapper's per-layer rules, in the order they are tried; the first that decides a
layer wins, and its reason goes into the layer's Choice:

  first-layer   the first layer (order 0) stays dense when it is cheap: its dense latency is
                below RuleConfig.first_layer_share (default 3%) of the problem's total dense
                latency (few weights and little time to gain; pruning the input layer costs
                accuracy). Otherwise it goes through the rules below like any layer, and its
                reason says why ("first layer not kept dense: 4.2% of the dense latency"): a
                7x7 stem at 224x224 can be several percent of the model, too much time to leave
                on the table. first_layer_share=1.0 keeps it dense always (the old rule).
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

Each rule is `rule(ctx, spec) -> Decision | None` and only sees the layer's allowed
candidates (measured and >= min_speedup faster than dense, see problem.py).
"""
from __future__ import annotations

from typing import Optional

from ..layer import LayerSpec
from ..space import DENSE, Candidate
from .context import BLOCK_SCHEMES, Decision, RuleContext, is_3x3


def _kind(spec: LayerSpec) -> str:
    if spec.op == "linear":
        return "linear"
    return "x".join(map(str, spec.kernel)) + " conv"


def rule_first_layer(ctx: RuleContext, spec: LayerSpec) -> Optional[Decision]:
    if spec.order != 0:
        return None
    p, limit = ctx.problem, ctx.config.first_layer_share
    total = p.dense_latency_total
    share = p.dense_latency(spec.name) / total if total > 0 else 0.0
    if share < limit or limit >= 1.0:
        return Decision(DENSE, f"rule first-layer: the first layer (order 0) stays dense: "
                               f"{share:.1%} of the dense latency (< {limit:.1%}), few weights "
                               f"and little time to gain; pruning the input layer costs "
                               f"accuracy", locked=True)
    # Too much time to leave on the table: the normal rules decide, and the reason says why.
    why = f"{share:.1%} of the dense latency (>= {limit:.1%}, RuleConfig.first_layer_share)"
    ctx.remarks[spec.name] = (f"first layer not kept dense: {why}",
                              f"the first-layer rule did not keep it dense: {why}")
    return None


def rule_grouped(ctx: RuleContext, spec: LayerSpec) -> Optional[Decision]:
    if not spec.is_grouped:
        return None
    kind = "depthwise" if spec.is_depthwise else "grouped"
    return Decision(DENSE, f"rule grouped: {kind} conv (groups={spec.groups}) stays dense "
                           f"(no sparse kernel)", locked=True)


def rule_not_faster(ctx: RuleContext, spec: LayerSpec) -> Optional[Decision]:
    if sum(not c.is_int8 for c in ctx.problem.allowed(spec.name)) > 1:
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
    if not is_3x3(spec):
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
