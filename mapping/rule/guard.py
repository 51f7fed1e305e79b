"""The rule mapper's second global rule, after compensation:

  proxy-guard   if budget.min_proxy is set and the plan's accuracy proxy is below it (the
                engine's default floor is the proxy of the uniform reference plan, e.g. block
                4x1 at 80% everywhere: the rule plan must be as sparse and as accurate as that),
                repeatedly apply the step with the best proxy gain per us of latency added,
                until the floor holds or no step raises the proxy. A step that adds no latency
                is a pure win and goes first, the biggest latency saving first; among the rest,
                when one step alone reaches the floor for no more latency than the best-ratio
                step, it ends the run. A move changes one open layer (not first-layer, grouped
                or not-faster) to another of its allowed, guarded candidates with a better proxy:
                a smaller block at the same sparsity, pattern <-> block, a lower sparsity level
                (dense below the lowest), or, when the proxy is a TableProxy (deltas are exact
                and free, see proxy_delta.py), any allowed, guarded candidate at once; other
                proxies are probed one move per full evaluation, elementary moves only, at most
                RuleConfig.guard_proxy_calls evaluations. Bounds that hold (sparsity, latency,
                FLOPs) must keep holding; a broken one must not get worse.
                Sparsity is the bound that binds: once the slack is spent, every move to a
                lower level needs pruned weights found elsewhere, so a step may combine:
                  gain + partners  the move, plus sparsity raises on other layers taken from
                                   each layer's supply curve (lower convex hull of its raises,
                                   pruned weights gained vs proxy lost): the cheapest segments
                                   of all curves in order until the deficit is covered (the
                                   multiple-choice knapsack greedy), or the one raise that
                                   covers it alone at the least proxy lost;
                  bundle           one big, cheap raise (e.g. a large layer a whole level up)
                                   and the sparsity it frees spent on the best gain moves of
                                   several other layers, until the floor is reached;
                each judged by its net proxy gain per net us like a single move. With a
                TableProxy the greedy runs twice, combined steps considered at every step and
                only when no single move helps, and the better plan is kept (floor met, then
                least latency; neither order wins on every table).
                Each changed layer's reason gets "rule proxy-guard: <path of candidates>, proxy
                +x for +y us" and who it traded sparsity with. If the floor is not reached the
                plan is flagged as usual (meta["violations"]) and the notes and
                meta["proxy_guard"]["why"] say why: unreachable (with a TableProxy, an LP bound
                on the best proxy any allowed, guarded assignment with the budget sparsity can
                have), the moves left would break which bound, or the evaluation cap.

The run's state and the bookkeeping it shares with proxy-spend are in trade.py, the choice of
the next step in guard_steps.py, the reasons it gives up in guard_why.py.
"""
from __future__ import annotations

from typing import Optional

from .context import RuleContext
from .guard_steps import best_step, elementary, supply_curve
from .guard_why import why_not
from .trade import GUARD_EPS, Trade


class Guard(Trade):
    """State of one proxy-guard run (see proxy_guard)."""

    def __init__(self, ctx: RuleContext, decisions: dict, singles_first: bool = False):
        super().__init__(ctx, decisions)
        self.singles_first = singles_first
        self.budget = self.p.budget
        self.gains: dict = {}      # layer -> [(dp, dl, dpr, dfl, layer, cand)] with dp > 0
        self.supply: dict = {}     # layer -> its sparsity supply curve (see supply_curve)
        self.blocked: dict = {}    # bound -> gain moves it refused, at the last step
        self.bound: Optional[float] = None   # LP bound on the proxy (why_not, local mode)

    def options(self, name: str) -> None:
        """This layer's gain moves and its sparsity supply curve, from its current candidate."""
        cur = self.a[name]
        spec = self.p.spec(name)
        if self.local:   # deltas are free: every allowed, guarded candidate, and dense
            gain_t = raise_t = [c for c in [self.ctx.dense(spec)] + self.ctx.family(spec) if c.key != cur.key]
        else:
            gain_t, raise_t = elementary(self.ctx, spec, cur)
        opts = self.moves(name, list(gain_t) + list(raise_t))
        self.gains[name] = [o for o in opts if o[0] > GUARD_EPS]
        self.supply[name] = supply_curve([o for o in opts if o[2] > 0])

    def apply(self, dp: float, step: tuple) -> bool:
        """Apply a step (gain moves, sparsity raises); False (and undone) if the full proxy
        says it did not help."""
        gains, raises = step
        parts = gains + raises
        old, change = self.assign(parts, dp)
        if not self.local and change <= GUARD_EPS:
            self.refute(old, gains[0], self.deltas.value - change)
            return False
        self.steps += 1
        up = [o[4] for o in gains]
        down = [o[4] for o in raises]
        self.book(parts, old, lambda o: ("kept_by", down) if o in gains else ("kept_for", up))
        for name in up + down:
            self.options(name)
        return True

    def rank(self) -> tuple:
        """Lower is better, as Problem.rank: floor met first and then the least latency;
        otherwise the closest to the floor."""
        if self.met():
            return (0, self.lat, -self.deltas.value)
        return (1, -self.deltas.value, self.lat)

    def run(self) -> None:
        for name in self.open:
            self.options(name)
        while not self.met() and self.steps < self.step_limit:
            if self.deltas.exhausted:
                break
            step = best_step(self)
            if step is None:
                break
            self.apply(step[0], step[2])
        self.settle()


def proxy_guard(ctx: RuleContext, decisions: dict) -> Optional[dict]:
    """Raise the accuracy proxy to budget.min_proxy at the least latency (see the module
    docstring). Mutates decisions; returns what it did (for plan.meta), None when off."""
    if ctx.problem.budget.min_proxy is None:
        return None
    g = Guard(ctx, decisions)
    before = g.deltas.value
    calls = 0
    if not g.met():
        g.run()
        if g.local:
            # Deltas are free: also run the greedy that tries combined steps only when no
            # single move helps, and keep the better plan. Neither order wins everywhere.
            h = Guard(ctx, decisions, singles_first=True)
            h.run()
            calls = g.deltas.calls
            if h.rank() < g.rank():
                g = h
    calls += g.deltas.calls
    tilde = "" if g.local else "~"
    g.rewrite(decisions, lambda rec: (f" | rule proxy-guard: {' -> '.join(rec['path'])}, "
                                      f"proxy {tilde}{rec['dp']:+.3g} for {rec['dl']:+.1f} us"))
    return _report(ctx, g, before, calls)


def _report(ctx: RuleContext, g: Guard, before: float, calls: int) -> dict:
    """The run in plan.meta["proxy_guard"] and the plan notes."""
    met = g.met()
    after = g.deltas.value
    summary = (f"proxy {before:.4f} -> {after:.4f}, floor {g.floor:.4f}, {g.steps} move"
               f"{'s' if g.steps != 1 else ''} on {len(g.log)} layer"
               f"{'s' if len(g.log) != 1 else ''}, latency {g.lat - g.start[0]:+.1f} us, "
               f"sparsity {g.start[1]:.4f} -> {g.pruned / g.p.total_params:.4f}")
    info = {"floor": g.floor, "before": before, "after": after, "met": met,
            "moves": g.steps, "layers_changed": sorted(g.log),
            "latency_added_us": g.lat - g.start[0], "proxy_calls": calls,
            "mode": g.mode,
            "combined_steps": "only when no single move helps" if g.singles_first
            else "at every step",
            "why": "", "bound": None}
    if before >= g.floor - g.tol:
        ctx.notes.append(f"rule proxy-guard: nothing to do, proxy {before:.4f} >= floor "
                         f"{g.floor:.4f}")
    elif met:
        ctx.notes.append(f"rule proxy-guard: floor met: {summary}")
    else:
        info["why"] = why_not(g)
        info["bound"] = g.bound
        ctx.notes.append(f"rule proxy-guard: cannot reach proxy >= {g.floor:.4f}: "
                         f"{info['why']} ({summary})")
    return info
