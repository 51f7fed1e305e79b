"""What the proxy-guard and the proxy-spend share: trading one layer's candidate for another
from a current assignment, with the bounds it must keep and a record of what changed.

`Trade` is the state of one run of either rule: the assignment (only its open layers move: not
first-layer, grouped or not-faster), its running totals (latency, pruned weights, FLOPs), the
proxy value and the proxy change of one-layer moves (proxy_delta.ProxyDeltas: exact table
deltas, or probes of a proxy that must be evaluated in full), the steps a full evaluation
refuted, and per changed layer the path of candidates it took and whom it traded with. A move
("option") is the tuple (dproxy, dlatency_us, dpruned_weights, dflops, layer, candidate).
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Callable, Optional

from ..budget import REL_TOL
from ..problem import Problem
from ..proxy_delta import LOCAL, ProxyDeltas
from ..space import Candidate
from .context import Decision, RuleContext

GUARD_EPS = 1e-12        # proxy changes below this are rounding, not a gain


def mask_of(c: Candidate) -> tuple:
    """What decides a candidate's weights (the backend only decides its speed)."""
    return (c.scheme, c.block, round(c.sparsity, 9), c.options)


def fastest(p: Problem, name: str, cands: list) -> list:
    """One candidate per mask, the fastest backend of each."""
    best: dict = {}
    for c in cands:
        m = mask_of(c)
        if m not in best or p.layer_latency(name, c) < p.layer_latency(name, best[m]):
            best[m] = c
    return list(best.values())


def limits(p: Problem, pruned: float, lat: float, flops: float) -> tuple:
    """(least pruned-weight change, most latency change, most FLOPs change) a step from
    totals (pruned, lat, flops) may make: a bound that holds must keep holding, one already
    broken must not get worse."""
    b, inf = p.budget, float("inf")
    dpr = -inf if b.sparsity is None else \
        min((b.sparsity - REL_TOL) * p.total_params - pruned, 0.0)
    dl = inf if b.latency_us is None else max(b.latency_us * (1 + REL_TOL) - lat, 0.0)
    dfl = inf if b.flops is None else max(b.flops * (1 + REL_TOL) - flops, 0.0)
    return dpr, dl, dfl


def names(layers: list, limit: int = 3) -> str:
    more = f" (+{len(layers) - limit} more)" if len(layers) > limit else ""
    return ", ".join(layers[:limit]) + more


class SuffixBest:
    """Among points (x, layer, option), the option with the highest key(option) among the
    points with x >= a threshold on another layer than a given one, in O(log n): points sorted
    by x, with the best and the best-of-another-layer over every suffix."""

    def __init__(self, points: list, key):
        points = sorted(points, key=lambda t: t[0])
        self.x = [t[0] for t in points]
        self.best: list = [None] * len(points)
        b1 = b2 = None             # best, and best from a layer other than b1's
        for i in range(len(points) - 1, -1, -1):
            _, layer, o = points[i]
            v = key(o)
            if b1 is None or v > b1[0]:
                if b1 is not None and b1[1] != layer:
                    b2 = b1
                b1 = (v, layer, o)
            elif layer != b1[1] and (b2 is None or v > b2[0]):
                b2 = (v, layer, o)
            self.best[i] = (b1, b2)

    def get(self, x: float, not_layer: str):
        i = bisect_left(self.x, x)
        if i >= len(self.x):
            return None
        for b in self.best[i]:
            if b is not None and b[1] != not_layer:
                return b[2]
        return None


def partners_text(rec: dict) -> str:
    """Whom a changed layer traded with, in the words of its reason."""
    text = ""
    if rec["kept_by"]:
        text += f", sparsity kept by raising {names(rec['kept_by'])}"
    if rec["kept_for"]:
        text += f", raised to keep the sparsity budget for {names(rec['kept_for'])}"
    if rec.get("pays_for"):
        text += f", the proxy it gains pays for {names(rec['pays_for'])}"
    if rec.get("paid_by"):
        text += f", paid for by the proxy {names(rec['paid_by'])} gains"
    return text


class Trade:
    """The state of one proxy-guard or proxy-spend run (see the module docstring)."""

    PARTNERS = ("kept_by", "kept_for")    # whom a changed layer traded with, per kind

    def __init__(self, ctx: RuleContext, decisions: dict):
        p = self.p = ctx.problem
        self.ctx = ctx
        self.a = {n: d.cand for n, d in decisions.items()}
        self.open = [s.name for s in p.layers if not decisions[s.name].locked]
        self.lat, self.flops = p.latency(self.a), p.flops(self.a)
        self.pruned = p.sparsity(self.a) * p.total_params
        self.start = (self.lat, self.pruned / p.total_params)
        self.deltas = ProxyDeltas(p, self.a, ctx.config.guard_proxy_calls)
        self.local = self.deltas.mode == LOCAL
        self.floor = p.budget.min_proxy
        self.tol = REL_TOL * max(1.0, abs(self.floor))
        self.bad: set = set()      # (layer, from, to) steps the full proxy refuted
        self.log: dict = {}        # layer -> {"path", "dp", "dl", and the PARTNERS lists}
        self.steps = 0
        self.step_limit = 20 * len(self.open) + 100

    def met(self) -> bool:
        return self.deltas.value >= self.floor - self.tol

    def limits(self) -> tuple:
        """(least pruned-weight change, most latency change, most FLOPs change) a step may
        make: a bound that holds must keep holding, one already broken must not get worse."""
        return limits(self.p, self.pruned, self.lat, self.flops)

    @property
    def mode(self) -> str:
        return "local table deltas" if self.local else "full evaluations (one-layer probes)"

    def moves(self, name: str, targets: list) -> list:
        """The options of moving layer `name` from its current candidate to each target
        (each once; not to itself, nor along a refuted step, nor where the delta is unknown)."""
        p, cur = self.p, self.a[name]
        l0, f0 = p.layer_latency(name, cur), p.remaining_flops(name, cur)
        pr0 = p.pruned_weights(name, cur)
        out, seen = [], {cur.key}
        for c in targets:
            if c.key in seen or (name, cur.key, c.key) in self.bad:
                continue
            seen.add(c.key)
            dp = self.deltas.delta(self.a, name, c)
            if dp is None:
                continue
            out.append((dp, p.layer_latency(name, c) - l0, p.pruned_weights(name, c) - pr0,
                        p.remaining_flops(name, c) - f0, name, c))
        return out

    def options(self, name: str) -> None:
        raise NotImplementedError

    def assign(self, parts: tuple, dp: float) -> tuple:
        """Put a step's moves into the assignment: (the candidates they replaced, the change
        of the proxy: the running sum plus dp, or a full evaluation)."""
        old = {o[4]: self.a[o[4]] for o in parts}
        for o in parts:
            self.a[o[4]] = o[5]
        return old, self.deltas.commit(self.a, dp)

    def refute(self, old: dict, first: tuple, value: float) -> None:
        """Undo a step the full proxy refuted (the one-layer probes were wrong about it:
        layers interact) and never offer its first move again."""
        self.a.update(old)
        self.deltas.value = value
        self.bad.add((first[4], old[first[4]].key, first[5].key))
        self.options(first[4])

    def book(self, parts: tuple, old: dict, partners: Callable) -> None:
        """A step's moves into the running totals and the log; partners(option) -> (the log
        list, the layers) of whom that move traded with."""
        for o in parts:
            name = o[4]
            self.lat += o[1]
            self.pruned += o[2]
            self.flops += o[3]
            rec = self.log.setdefault(name, {"path": [old[name].key], "dp": 0.0, "dl": 0.0,
                                             **{k: [] for k in self.PARTNERS}})
            rec["path"].append(o[5].key)
            rec["dp"] += o[0]
            rec["dl"] += o[1]
            field_, layers = partners(o)
            rec[field_] += [n for n in layers if n not in rec[field_]]

    def settle(self) -> None:
        if self.local:
            # The running sum is exact up to rounding; settle met / not met on the real value.
            self.deltas.value = self.deltas.evaluate(self.a)

    def stopped_early(self) -> Optional[str]:
        """Why the run stopped before it ran out of moves (evaluation cap, step limit)."""
        if self.deltas.capped or self.deltas.exhausted:
            return (f"stopped at the proxy-evaluation cap ({self.deltas.calls} full "
                    f"evaluations, RuleConfig.guard_proxy_calls)")
        if self.steps >= self.step_limit:
            return f"stopped after {self.steps} moves (step limit)"
        return None

    def rewrite(self, decisions: dict, what: Callable) -> None:
        """Each changed layer's decision: its new candidate, its reason plus what(log record)
        and whom it traded with."""
        for name, rec in self.log.items():
            decisions[name] = Decision(self.a[name],
                                       decisions[name].reason + what(rec) + partners_text(rec),
                                       decisions[name].locked)
