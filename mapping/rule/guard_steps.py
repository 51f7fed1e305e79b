"""The proxy-guard's choice of its next step (see guard.py): single gain moves, a gain move with
sparsity partners taken from the other layers' supply curves, and bundles (one big raise whose
freed sparsity pays for several gain moves), ranked by proxy gained per us added."""
from __future__ import annotations

from ..layer import LayerSpec
from ..space import Candidate
from .context import BLOCK_SCHEMES, RuleContext
from .trade import GUARD_EPS, SuffixBest, fastest, mask_of

GUARD_PREFIX = 8         # most partners one combined step may raise
GUARD_BUNDLES = 4        # big sparsity raises tried as the centre of a bundle per step


def elementary(ctx: RuleContext, spec: LayerSpec, cur: Candidate) -> tuple:
    """(gain targets, raise targets) one step away from `cur`, for proxies that must be
    evaluated in full: the next smaller block at the same sparsity, pattern <-> block at the
    same sparsity, the same mask one sparsity level lower (dense below the lowest level); and
    the same mask one level higher (or, from dense, the lowest level's smallest block)."""
    p, name = ctx.problem, spec.name
    fam = ctx.family(spec)
    if not cur.pruned:
        if not fam:
            return [], []
        low = min(c.sparsity for c in fam)
        at = [c for c in fam if abs(c.sparsity - low) < 1e-9]
        return [], fastest(p, name, [min(at, key=lambda c: c.block_elems)])
    same = [c for c in fam if abs(c.sparsity - cur.sparsity) < 1e-9
            and mask_of(c) != mask_of(cur)]
    gains = []
    blocks = [c for c in same if c.scheme in BLOCK_SCHEMES]
    if cur.scheme in BLOCK_SCHEMES:
        smaller = [c for c in blocks if c.block_elems < cur.block_elems]
        if smaller:
            rung = max(c.block_elems for c in smaller)
            gains += [c for c in smaller if c.block_elems == rung]
        gains += [c for c in same if c.scheme == "pattern"]
    elif blocks:
        gains.append(min(blocks, key=lambda c: c.block_elems))
    kin = [c for c in fam if (c.scheme, c.block, c.options) == (cur.scheme, cur.block,
                                                                cur.options)]
    lower = [c for c in kin if c.sparsity < cur.sparsity - 1e-9]
    if lower:
        top = max(c.sparsity for c in lower)
        gains += [c for c in lower if abs(c.sparsity - top) < 1e-9]
    else:
        gains.append(ctx.dense(spec))
    higher = [c for c in kin if c.sparsity > cur.sparsity + 1e-9]
    raises = []
    if higher:
        step = min(c.sparsity for c in higher)
        raises = [c for c in higher if abs(c.sparsity - step) < 1e-9]
    return fastest(p, name, gains), fastest(p, name, raises)


def supply_curve(raises: list) -> list:
    """A layer's sparsity supply curve: the lower convex hull, from the current candidate, of
    its raise options in (pruned weights gained, proxy lost). Returns segments
    (proxy lost per pruned weight, latency change, pruned weights gained, proxy lost,
    option at the segment's end), in order; slopes increase along the curve."""
    best: dict = {}
    for o in raises:     # per pruned-weight gain, the least proxy loss (then least latency)
        if o[2] not in best or (-o[0], o[1]) < (-best[o[2]][0], best[o[2]][1]):
            best[o[2]] = o
    hull = [(0.0, 0.0, None)]
    for x in sorted(best):
        o = best[x]
        pt = (x, -o[0], o)
        while len(hull) >= 2:
            (x0, y0, _), (x1, y1, _) = hull[-2], hull[-1]
            if (x1 - x0) * (pt[1] - y0) - (y1 - y0) * (pt[0] - x0) <= 0:
                hull.pop()
            else:
                break
        hull.append(pt)
    out = []
    for (x0, y0, o0), (x1, y1, o1) in zip(hull, hull[1:]):
        dl = o1[1] - (o0[1] if o0 is not None else 0.0)
        out.append(((y1 - y0) / (x1 - x0), dl, x1 - x0, y1 - y0, o1))
    return out


def cover(supply: dict) -> SuffixBest:
    """For a pruned-weight deficit d, `.get(d, layer)` is (proxy lost, option) of the point of
    one other layer's supply curve that gives at least d pruned weights at the least proxy
    lost, or None."""
    pts = []
    for name, curve in supply.items():
        gained = lost = 0.0
        for seg in curve:
            gained += seg[2]
            lost += seg[3]
            pts.append((gained, name, (lost, seg[4])))
    return SuffixBest(pts, lambda t: -t[0])


def merit(dp: float, dl: float) -> tuple:
    """Sort key (higher is better) of a step gaining dp > 0 proxy for dl us. A step that adds
    no latency is a pure win and beats any that does; among pure wins the one saving the most
    latency goes first (the floor is a constraint, latency the objective: pure wins compete
    for the same sparsity slack and partners, so the biggest saving should get them). The
    others rank by proxy gained per us added."""
    if dl <= 1e-9:
        return (1, -dl, dp)
    return (0, dp / dl, 0.0)


def best_step(g):
    """(dp, dl, (gain moves, sparsity raises)) of guard g's best step, preferring the
    cheapest step that reaches the floor when it adds no more latency; None if no step raises
    the proxy. With g.singles_first, combined steps are only considered when no single move
    helps."""
    if g.singles_first:
        step = _best_step(g, combined=False)
        if step is not None:
            return step
    return _best_step(g, combined=True)


def _best_step(g, combined: bool):
    min_dpr, max_dl, max_dfl = g.limits()
    need = g.floor - g.tol - g.deltas.value
    # Every layer's supply segments, cheapest proxy per pruned weight first. Each layer's
    # curve is convex, so its segments come out in order.
    pool = sorted(((seg[0], seg[1], k, seg, name) for name, curve in g.supply.items()
                   for k, seg in enumerate(curve)), key=lambda s: s[:3]) if combined else []
    covers = cover(g.supply) if combined else None
    steps = []
    blocked = {"sparsity": 0, "latency": 0, "flops": 0}
    for name in g.open:
        for m in g.gains[name]:
            dp, dl, dpr, dfl = m[:4]
            if dpr >= min_dpr:
                if dl > max_dl:
                    blocked["latency"] += 1
                elif dfl > max_dfl:
                    blocked["flops"] += 1
                else:
                    steps.append((dp, dl, ((m,), ())))
                continue
            combos = _with_partners(m, min_dpr - dpr, pool, covers, max_dl,
                                    max_dfl) if combined else []
            if not combos:
                blocked["sparsity"] += 1
            steps += combos
    if combined:
        steps += _bundles(g, pool, min_dpr, max_dl, max_dfl, need)
    g.blocked = blocked
    if not steps:
        return None
    best = max(steps, key=lambda s: merit(s[0], s[1]))
    finishers = [s for s in steps if s[0] >= need]
    if finishers and merit(best[0], best[1])[0] == 0:
        finish = min(finishers, key=lambda s: (s[1], -s[0]))
        if finish[1] <= best[1]:
            return finish
    return best


def _with_partners(m, deficit, pool, covers, max_dl, max_dfl) -> list:
    """Combined steps: gain move m plus sparsity raises on other layers that make up at
    least `deficit` pruned weights: (a) the cheapest supply segments of all layers, in
    order of proxy lost per pruned weight, until the deficit is covered (the
    multiple-choice knapsack greedy; GUARD_PREFIX layers at most), and (b) the one point
    of one other layer's curve that covers the deficit alone at the least proxy lost (a
    small deficit is better covered by a small raise than by the cheapest rate's big
    one). Only steps that gain proxy and keep latency / FLOPs within their limits."""
    name = m[4]
    out = []
    chosen: dict = {}
    got = 0.0
    for _, _, k, seg, other in pool:
        if other == name or (k and other not in chosen):
            continue
        chosen[other] = seg
        got += seg[2]
        if got >= deficit or len(chosen) >= GUARD_PREFIX:
            break
    if got >= deficit:
        out.append(tuple(s[4] for s in chosen.values()))
    single = covers.get(deficit, name)
    single = single[1] if single is not None else None
    if single is not None and not (len(chosen) == 1 and
                                   next(iter(chosen.values()))[4] is single):
        out.append((single,))
    steps = []
    for raises in out:
        dp = m[0] + sum(o[0] for o in raises)
        dl = m[1] + sum(o[1] for o in raises)
        dfl = m[3] + sum(o[3] for o in raises)
        if dp > GUARD_EPS and dl <= max_dl and dfl <= max_dfl:
            steps.append((dp, dl, ((m,), raises)))
    return steps


def _bundles(g, pool, min_dpr, max_dl, max_dfl, need) -> list:
    """The other way round: one big, cheap sparsity raise (the first segment of one of
    the GUARD_BUNDLES cheapest curves) and the slack it frees spent on gain moves of
    other layers, best proxy per pruned weight lost first, one per layer, while they fit
    and until the floor is reached.
    Finds the exchanges a single gain move cannot pay for (e.g. one layer raised a whole
    level so that ten smaller ones can each go one level down)."""
    rated = sorted((m for v in g.gains.values() for m in v if m[2] < 0),
                   key=lambda m: m[0] / m[2])
    out, tried = [], 0
    for _, _, k, seg, other in pool:
        if tried >= GUARD_BUNDLES:
            break
        if k:
            continue
        tried += 1
        part = seg[4]
        room = part[2] - min_dpr      # pruned weights the gains may give up
        dp, dl, dfl, gains, used = part[0], part[1], part[3], [], {other}
        for m in rated:
            if dp >= need:
                break
            if m[4] in used or m[0] / -m[2] <= seg[0] or -m[2] > room:
                continue
            if dl + m[1] > max_dl or dfl + m[3] > max_dfl:
                continue
            used.add(m[4])
            gains.append(m)
            room += m[2]
            dp, dl, dfl = dp + m[0], dl + m[1], dfl + m[3]
        if gains and dp > GUARD_EPS and dl <= max_dl and dfl <= max_dfl:
            out.append((dp, dl, (tuple(gains), (part,))))
    return out
