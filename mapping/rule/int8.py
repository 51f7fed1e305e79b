"""The rule mapper's last global rule, after proxy-spend:

  int8   when the problem offers int8 candidates, a layer's fp32 choice may move to its int8
         alternative: the int8 candidate at the same sparsity (dense+int8 for a dense layer)
         measured fastest, the smallest block among those within RuleConfig.tie_tolerance of
         it (int8 blocks are whole column quads, e.g. 4x4, so the alternative of a 4x1 choice
         is another block shape). A layer stays fp32
         when it is the last layer (by order; RuleConfig.int8_ends=True lifts it: the
         classifier's output is the model's, and it costs little time), or the first one with
         RuleConfig.int8_first=False (by default the input layer may run int8 like the peers'
         int8 models, where its measured proxy loss allows: it sees the raw image, and its
         int8 kernel also shrinks the quantized tensor to the image's channels), when its
         alternative is not allowed (not measured, or not >= min_speedup x dense: the
         rejections say which), or when it is sensitive: it alone lowers the proxy by more than
         RuleConfig.int8_max_drop (measured with the problem's proxy, one layer at a time).
         Among the rest the flips are taken greedily on the plan's total latency, the layer's
         measured saving plus the domain changes it adds or removes (mapping.domains: a tensor
         is quantized where a float value enters an int8 layer and dequantized where an int8
         one meets fp32): the flip that saves the most first, while the proxy floor
         (budget.min_proxy) holds. A second start, every eligible layer int8 and then the flips
         back that save time (or, below the floor, buy the most proxy per us), sees chains
         whose inner conversions vanish only together; the faster end that keeps the floor wins.
         Each flipped layer's reason gets "rule int8: ...", each kept one why it stayed fp32.
"""
from __future__ import annotations

from typing import Optional

from ..problem import Problem
from ..proxy_delta import ProxyDeltas
from .context import Decision, RuleContext
from .trade import REL_TOL


def _ends(p: Problem, first: bool) -> set:
    """The layers the ends rule keeps fp32: the last, and the first unless it may run int8."""
    by_order = sorted(p.layers, key=lambda s: s.order)
    return {by_order[-1].name} | (set() if first else {by_order[0].name})


class _Int8:
    def __init__(self, ctx: RuleContext, decisions: dict, floor: bool):
        self.ctx, self.p = ctx, ctx.problem
        self.base = {n: d.cand for n, d in decisions.items()}
        self.floor = self.p.budget.min_proxy if floor else None
        self.deltas = ProxyDeltas(self.p, self.base, ctx.config.guard_proxy_calls)
        self.why: dict = {}          # layer -> why it stays fp32
        self.alt: dict = {}          # layer -> its int8 alternative
        self.eligible = self._eligible()

    def alternative(self, name: str, cur):
        """(the int8 alternative of `cur` on layer `name` or None, why not)."""
        p, tol = self.p, self.ctx.config.tie_tolerance
        at = [c for c in p.allowed(name) if c.is_int8 and c.scheme in (cur.scheme, "block")
              and abs(c.sparsity - cur.sparsity) < 1e-9 and c.pruned == cur.pruned]
        if not at:
            want = f"int8 blocks at {cur.sparsity:.2f}" if cur.pruned else "dense+int8"
            rej = [str(r) for r in p.rejected(name) if r.key.endswith("+int8") and
                   (not cur.pruned) == r.key.startswith("dense")]
            return None, (f"no int8 candidate allowed ({want}" +
                          (f"; e.g. {rej[0]})" if rej else ")"))
        best = min(p.layer_latency(name, c) for c in at)
        near = [c for c in at if p.layer_latency(name, c) <= best * (1 + tol)]
        return min(near, key=lambda c: (c.block_elems, p.layer_latency(name, c))), ""

    def _eligible(self) -> list:
        cfg, p = self.ctx.config, self.p
        ends = set() if cfg.int8_ends else _ends(p, cfg.int8_first)
        out = []
        for spec in p.layers:
            name, cur = spec.name, self.base[spec.name]
            twin, why = self.alternative(name, cur) if name not in ends else (None, "")
            if name in ends:
                self.why[name] = ("first layer stays fp32 (RuleConfig.int8_first=False)"
                                  if spec.order == min(s.order for s in p.layers) else
                                  "last layer stays fp32 (RuleConfig.int8_ends)")
            elif twin is None:
                self.why[name] = why
            else:
                drop = self.deltas.delta(self.base, name, twin)
                if drop is not None and -drop > cfg.int8_max_drop:
                    self.why[name] = (f"sensitive: {twin.key} alone changes the proxy by "
                                      f"{drop:+.4f} (> {cfg.int8_max_drop} allowed, "
                                      f"RuleConfig.int8_max_drop)")
                else:
                    self.alt[name] = twin
                    out.append(name)
        return out

    def flip(self, a: dict, name: str, bits: int):
        """The candidate of `name` at `bits`: its int8 alternative or its fp32 choice."""
        return self.alt[name] if bits == 8 else self.base[name]

    def gain(self, a: dict, name: str, bits: int) -> float:
        """us saved by moving `name` to `bits` in assignment a."""
        p, cur = self.p, a[name]
        new = self.flip(a, name, bits)
        bits_of = {n: c.bits for n, c in a.items()}
        return p.layer_latency(name, cur) - p.layer_latency(name, new) - \
            p.conversions.flip_delta(bits_of, name, bits)

    def ok(self, a: dict) -> bool:
        if self.floor is None:
            return True
        return self.p.proxy(a) >= self.floor - REL_TOL * max(1.0, abs(self.floor))

    def up(self) -> dict:
        """From the fp32 plan: the best flip to int8 while one saves time and keeps the floor."""
        a, left = dict(self.base), list(self.eligible)
        while left:
            scored = sorted(((self.gain(a, n, 8), n) for n in left), reverse=True)
            for g, n in scored:
                if g <= 0:
                    return a
                trial = dict(a, **{n: self.alt[n]})
                left.remove(n)
                if self.ok(trial):
                    a = trial
                    break
            else:
                return a
        return a

    def down(self) -> Optional[dict]:
        """From every eligible layer int8: flips back while one saves time; below the floor,
        the flip back with the most proxy per us until it holds (None if it never does)."""
        a = dict(self.base)
        for n in self.eligible:
            a[n] = self.alt[n]
        while True:
            on = [n for n in self.eligible if a[n].is_int8]
            best = max(((self.gain(a, n, 32), n) for n in on), default=(0.0, None))
            if best[0] <= 0:
                break
            a[best[1]] = self.base[best[1]]
        while not self.ok(a):
            on = [n for n in self.eligible if a[n].is_int8]
            if not on or not self.deltas.mode == "local":
                return None      # (with full evaluations the repair would cost too many)
            value = self.p.proxy(a)

            def price(n):
                back = dict(a, **{n: self.base[n]})
                return (self.p.proxy(back) - value) / max(1e-9, -self.gain(a, n, 32))
            n = max(on, key=price)
            a[n] = self.base[n]
        return a


def int8_rule(ctx: RuleContext, decisions: dict, floor: bool = True) -> Optional[dict]:
    """Flip layers to int8 (see the module doc); None when the problem has no int8. floor:
    keep budget.min_proxy while flipping (False: proxy-guard, run after, restores it)."""
    p = ctx.problem
    if not p.has_int8:
        return None
    run = _Int8(ctx, decisions, floor)
    ends = [a for a in (run.up(), run.down()) if a is not None]
    best = min(ends, key=lambda a: p.latency(a))
    before = p.latency(run.base)
    after = p.latency(best)
    bits_of = {n: c.bits for n, c in best.items()}
    for name, d in decisions.items():
        ctx.bits[name] = best[name].bits
        if best[name].is_int8:
            cur = d.cand
            saved = p.layer_latency(name, cur) - p.layer_latency(name, best[name])
            decisions[name] = Decision(best[name], f"{d.reason} | rule int8: {best[name].key}, "
                                       f"layer -{saved:.1f} us", d.locked)
        elif name in run.why:
            decisions[name] = Decision(d.cand, f"{d.reason} | fp32: {run.why[name]}", d.locked)
        elif name in run.eligible:
            decisions[name] = Decision(d.cand, f"{d.reason} | fp32: int8 saves no time here "
                                       f"(its conversions cost more)", d.locked)
    n8 = sum(c.is_int8 for c in best.values())
    conv = p.conversions.cost(bits_of)
    ctx.notes.append(f"rule int8: {n8} of {len(best)} layers int8, {len(run.eligible)} eligible; "
                     f"{before:.1f} -> {after:.1f} us (conversions {conv:.1f} us)")
    return {"int8_layers": n8, "floor_kept": floor, "eligible": len(run.eligible), "latency_before_us": before,
            "latency_after_us": after, "conversions_us": conv,
            "proxy_calls": run.deltas.calls}
