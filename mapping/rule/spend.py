"""The rule mapper's third global rule, after proxy-guard:

  proxy-spend   the mirror of proxy-guard: with the min-latency objective (no latency budget),
                budget.min_proxy set and the plan's proxy ABOVE the floor (the rules' own
                choices, the smallest block among near-ties, often leave accuracy unused),
                repeatedly apply the step with the most latency saved per unit of proxy lost,
                until no step fits. A step that loses no proxy and saves latency is a pure win
                and goes first, the biggest saving first. A move changes one open layer to
                another of its allowed, guarded candidates (so never anything slower than
                min_speedup x dense): with a TableProxy (exact, free deltas) any of them at
                once, otherwise the elementary ones, each probed with one full evaluation (at
                most RuleConfig.guard_proxy_calls, its own allowance): the same mask on a faster
                backend, the next bigger block at the same sparsity, pattern <-> block, the next
                sparsity level. When no single move fits, a combined step of two layers may:
                a move that gives up pruned weights the sparsity budget needs, plus one raise of
                another layer that covers them; or a move that gains proxy cheaply (e.g. a
                layer whose sparse kernel barely beats dense goes back to dense, or one level
                down) plus the move of another layer that saves the most latency within that
                proxy. Every step must save latency and keep every bound that holds: the proxy
                floor (never broken: exact deltas, or with full evaluations a step that the
                evaluation says broke it is undone), the sparsity and FLOPs bounds; a broken
                one must not get worse. Each changed layer's reason gets "rule proxy-spend:
                <path of candidates>, -37.1 us for proxy -0.0021" and whom it traded with
                (sparsity or proxy); the notes and meta["proxy_spend"] say what it did and why
                it stopped.
                With a latency budget (the max-proxy objective) proxy-spend does not apply:
                there the proxy is the objective and spending it would be a loss; without a
                floor it does not apply either (nothing says how much proxy may be spent).

The run's state and the bookkeeping it shares with proxy-guard are in trade.py, its moves and
the choice of the next step in spend_steps.py.
"""
from __future__ import annotations

from typing import Optional

from ..problem import MIN_LATENCY
from .context import RuleContext
from .spend_steps import SPEND_EPS_US, best_step, spend_targets
from .trade import GUARD_EPS, Trade


class Spend(Trade):
    """State of one proxy-spend run (see proxy_spend)."""

    PARTNERS = ("kept_by", "kept_for", "pays_for", "paid_by")

    def __init__(self, ctx: RuleContext, decisions: dict):
        super().__init__(ctx, decisions)
        self.back = self.local     # give-back moves probed (always with free local deltas)
        self.opts: dict = {}       # layer -> [(dp, dl, dpr, dfl, layer, cand)]
        self.combined = 0
        self.price: Optional[float] = None   # us saved per proxy lost, last ratio step

    def need(self) -> float:
        """The least proxy change a step may make (<= 0): down to the floor, and not at all
        when the proxy is (within rounding) at or below it."""
        return min(self.floor - self.deltas.value, 0.0)

    def options(self, name: str) -> None:
        """This layer's moves from its current candidate: every allowed, guarded candidate
        (and dense) with local deltas, the elementary ones otherwise (spend_targets)."""
        cur = self.a[name]
        spec = self.p.spec(name)
        if self.local:
            targets = [self.ctx.dense(spec)] + self.ctx.family(spec)
        else:
            save, back = spend_targets(self.ctx, spec, cur)
            targets = save + (back if self.back else [])
        self.opts[name] = self.moves(name, targets)

    def apply(self, dp: float, step: tuple) -> bool:
        """Apply a step (moves, partners[, "sparsity" | "proxy": what the partner makes up
        for]); False (and undone) if the full proxy says it broke the floor."""
        moves, raises = step[:2]
        kind = step[2] if len(step) > 2 else ""
        parts = moves + raises
        need, before = self.need(), self.deltas.value
        old, change = self.assign(parts, dp)
        if not self.local and change < need:
            self.refute(old, moves[0], before)
            return False
        self.steps += 1
        self.combined += bool(raises)
        dl = sum(o[1] for o in parts)
        if change < -GUARD_EPS:
            self.price = dl / change
        up, down = [o[4] for o in moves], [o[4] for o in raises]

        def partners(o) -> tuple:
            mine, theirs = (("kept_by", down), ("pays_for", down)) \
                if any(o is m for m in moves) else (("kept_for", up), ("paid_by", up))
            return mine if kind == "sparsity" else theirs

        self.book(parts, old, partners)
        for name in up + down:
            self.options(name)
        return True

    def run(self) -> None:
        for name in self.open:
            self.options(name)
        while self.steps < self.step_limit and not self.deltas.exhausted:
            step = best_step(self, combined=False)
            if step is None:
                if not self.back:
                    # Probe mode: the give-back moves are only worth their evaluations now.
                    self.back = True
                    for name in self.open:
                        self.options(name)
                step = best_step(self, combined=True)
            if step is None:
                break
            self.apply(step[1], step[3])
        self.settle()

    def why_stopped(self) -> str:
        """Why no further move was taken, in the words of the plan notes."""
        stopped = self.stopped_early()
        if stopped is not None:
            return stopped
        min_dpr, _, max_dfl = self.limits()
        need = self.need()
        faster = [o for n in self.open for o in self.opts[n] if o[1] < -SPEND_EPS_US]
        if not faster:
            return ("no open layer has a faster allowed, guarded candidate (first-layer, "
                    "grouped and not-faster layers kept)")
        proxy = [o for o in faster if o[0] < need]
        sparsity = [o for o in faster if o[0] >= need and o[2] < min_dpr]
        flops = [o for o in faster if o[0] >= need and o[2] >= min_dpr and o[3] > max_dfl]
        parts = []
        if proxy:
            least = min(-o[0] for o in proxy)
            parts.append(f"{len(proxy)} would take the proxy below the floor (the least "
                         f"costs {least:.3g}, {-need:.3g} left)")
        if sparsity:
            parts.append(f"{len(sparsity)} would break sparsity >= "
                         f"{self.p.budget.sparsity:.4f}, even with one other layer raised")
        if flops:
            parts.append(f"{len(flops)} would break flops <= {self.p.budget.flops:.4g}")
        return (f"no move fits: of the {len(faster)} faster candidates left, "
                + "; ".join(parts))


def proxy_spend(ctx: RuleContext, decisions: dict, guard: Optional[dict] = None
                ) -> Optional[dict]:
    """Spend the accuracy proxy above budget.min_proxy on latency (see the module docstring).
    Mutates decisions; returns what it did (for plan.meta), None when off (no floor, or a
    latency budget: the max-proxy objective wants the proxy, not the latency). `guard` is
    what proxy-guard returned: when it could not reach the floor there is nothing to spend,
    and the proxy is not evaluated again."""
    p = ctx.problem
    if p.budget.min_proxy is None or p.objective != MIN_LATENCY:
        return None
    if guard is not None and not guard["met"]:
        return _after_failed_guard(ctx, guard)
    s = Spend(ctx, decisions)
    before = s.deltas.value
    info = {"floor": s.floor, "before": before, "after": before, "moves": 0,
            "combined_steps": 0, "layers_changed": [], "latency_saved_us": 0.0,
            "proxy_calls": s.deltas.calls, "mode": s.mode, "why": ""}
    if not s.met():
        ctx.notes.append(f"rule proxy-spend: nothing to spend, proxy {before:.4f} < floor "
                         f"{s.floor:.4f}")
        return info
    s.run()
    info["proxy_calls"] = s.deltas.calls
    if not s.met():
        # Cannot happen with exact deltas or checked steps; never hand out a broken floor.
        ctx.notes.append(f"rule proxy-spend: undone, the proxy of its plan "
                         f"{s.deltas.value:.6f} fell below the floor {s.floor:.6f}")
        info["why"] = "undone: the floor did not hold"
        return info
    tilde = "" if s.local else "~"
    s.rewrite(decisions, lambda rec: (f" | rule proxy-spend: {' -> '.join(rec['path'])}, "
                                      f"{rec['dl']:+.1f} us for proxy {tilde}{rec['dp']:+.3g}"))
    return _report(ctx, s, before, info)


def _after_failed_guard(ctx: RuleContext, guard: dict) -> dict:
    """Nothing to spend: the proxy-guard could not reach the floor."""
    ctx.notes.append(f"rule proxy-spend: nothing to spend, proxy {guard['after']:.4f} < "
                     f"floor {guard['floor']:.4f} (proxy-guard could not reach it)")
    return {"floor": guard["floor"], "before": guard["after"], "after": guard["after"],
            "moves": 0, "combined_steps": 0, "layers_changed": [],
            "latency_saved_us": 0.0, "proxy_calls": 0, "mode": guard["mode"],
            "why": "the proxy-guard did not reach the floor"}


def _report(ctx: RuleContext, s: Spend, before: float, info: dict) -> dict:
    """The finished run in plan.meta["proxy_spend"] (`info`, updated) and the plan notes."""
    after = s.deltas.value
    info.update({"after": after, "moves": s.steps, "combined_steps": s.combined,
                 "layers_changed": sorted(s.log), "latency_saved_us": s.start[0] - s.lat,
                 "why": s.why_stopped()})
    ctx.notes.append(
        f"rule proxy-spend: proxy {before:.4f} -> {after:.4f}, floor {s.floor:.4f}, "
        f"{s.steps} move{'s' if s.steps != 1 else ''} ({s.combined} combined) on "
        f"{len(s.log)} layer{'s' if len(s.log) != 1 else ''}, latency "
        f"{s.lat - s.start[0]:+.1f} us, sparsity {s.start[1]:.4f} -> "
        f"{s.pruned / s.p.total_params:.4f}; {info['why']}")
    return info
