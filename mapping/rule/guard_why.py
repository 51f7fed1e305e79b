"""Why a proxy-guard run (guard.py) did not reach the floor: the evaluation cap, the step limit,
an LP bound showing the floor is out of reach, or which bounds the moves left would break."""
from __future__ import annotations

from typing import Optional

from ..budget import REL_TOL
from .guard_steps import supply_curve


def proxy_bound(g) -> Optional[float]:
    """Local mode: an upper bound on the proxy of any assignment that keeps the locked
    layers and meets the sparsity bound (the LP relaxation of "max proxy s.t. sparsity",
    solved exactly by the greedy over each layer's convex supply curve, starting from each
    layer's most accurate candidate; latency / FLOPs bounds ignored, so still a bound).
    When the sparsity budget is out of reach itself, the sparsity required is the plan's
    current one (the guard never lowers it). None outside local mode."""
    if not g.local:
        return None
    p = g.p
    value, pruned, segs = g.deltas.value, g.pruned, []
    for name in g.open:
        cur = g.a[name]
        pr0 = p.pruned_weights(name, cur)
        opts = [(0.0, 0.0, 0.0, 0.0, name, cur)]
        for c in [g.ctx.dense(p.spec(name))] + g.ctx.family(p.spec(name)):
            dp = g.deltas.delta(g.a, name, c)
            if dp is not None and c.key != cur.key:
                opts.append((dp, 0.0, p.pruned_weights(name, c) - pr0, 0.0, name, c))
        top = max(opts, key=lambda o: (o[0], o[2]))
        value += top[0]
        pruned += top[2]
        segs += supply_curve([(o[0] - top[0], 0.0, o[2] - top[2], 0.0, name, o[5])
                              for o in opts if o[2] > top[2]])
    if g.budget.sparsity is None:
        return value
    short = min((g.budget.sparsity - REL_TOL) * p.total_params, g.pruned) - pruned
    for slope, _, dpr, loss, _ in sorted(segs, key=lambda s: s[0]):
        if short <= 0:
            break
        take = min(1.0, short / dpr)
        value -= take * loss
        short -= take * dpr
    return value


def why_not(g) -> str:
    """Why guard g did not reach the floor, in the words of the plan notes (sets g.bound)."""
    stopped = g.stopped_early()
    if stopped is not None:
        return stopped
    bound = g.bound = proxy_bound(g)
    if bound is not None and bound < g.floor - g.tol:
        return _unreachable(g, bound)
    out = _blocked(g)
    if bound is not None:
        out += (f"; up to {bound:.4f} may be reachable (LP bound) with exchanges across "
                f"many layers at once: a search mapper (mapping.search) can look for them")
    return out


def _unreachable(g, bound: float) -> str:
    b = g.budget
    if b.sparsity is None:
        return (f"unreachable: the most accurate allowed, guarded candidate on every "
                f"open layer gives proxy {bound:.4f}")
    held = b.sparsity
    out = ""
    if g.pruned < (b.sparsity - REL_TOL) * g.p.total_params:
        held = g.pruned / g.p.total_params
        out = (f" (sparsity {b.sparsity:.4f} is out of reach itself; the guard keeps "
               f"the {held:.4f} reached)")
    return (f"unreachable: no assignment of allowed, guarded candidates to the open "
            f"layers with sparsity >= {held:.4f} has a proxy above {bound:.4f} (LP "
            f"bound; first-layer, grouped and not-faster layers kept){out}")


def _blocked(g) -> str:
    """What the gain moves left would break (g.blocked, from the last step searched)."""
    b = g.budget
    left = sum(len(v) for v in g.gains.values())
    if not left:
        return ("no open layer has an allowed, guarded candidate that raises the proxy "
                "(each is at its most accurate choice)")
    words = {"sparsity": f"sparsity >= {b.sparsity:.4f}" if b.sparsity is not None
             else "", "latency": f"latency <= {b.latency_us:.1f} us"
             if b.latency_us is not None else "",
             "flops": f"flops <= {b.flops:.4g}" if b.flops is not None else ""}
    parts = [f"{words[k]} ({n} move{'s' if n > 1 else ''}"
             + (", even with sparsity raised on other layers" if k == "sparsity"
                else "") + ")" for k, n in g.blocked.items() if n]
    return (f"the {left} remaining moves that raise the proxy lose it again or "
            f"break " + "; ".join(parts) if parts else
            f"the {left} remaining moves that raise the proxy lose it again in the "
            f"sparsity they need raised elsewhere")
