"""The proxy-spend's moves and its choice of the next step (see spend.py): the elementary moves
of a layer when the proxy must be evaluated in full, single moves ranked by latency saved per
unit of proxy lost, and two-layer steps for when no single move fits."""
from __future__ import annotations

from ..layer import LayerSpec
from ..space import Candidate
from .context import BLOCK_SCHEMES, RuleContext
from .trade import GUARD_EPS, SuffixBest, fastest, mask_of

SPEND_EPS_US = 1e-9      # latency changes below this (us) are rounding, not a saving


def spend_targets(ctx: RuleContext, spec: LayerSpec, cur: Candidate) -> tuple:
    """(saving targets, give-back targets) one step away from `cur`, for proxies that must be
    evaluated in full. Saving: the same mask on a faster backend, the next bigger block at the
    same sparsity, pattern -> the fastest block and block -> pattern at the same sparsity, the
    same mask one level higher (the fastest candidate of that level if the mask has none
    there); from dense, each mask of the lowest level. Give-back (only for combined steps,
    probed once no single move fits): the same mask one level lower (dense below the
    lowest)."""
    p, name = ctx.problem, spec.name
    fam = ctx.family(spec)
    if not fam:
        return [], []
    if not cur.pruned:
        low = min(c.sparsity for c in fam)
        return fastest(p, name, [c for c in fam if abs(c.sparsity - low) < 1e-9]), []
    same = [c for c in fam if abs(c.sparsity - cur.sparsity) < 1e-9]
    save = [c for c in same if mask_of(c) == mask_of(cur) and c.key != cur.key]
    blocks = [c for c in same if c.scheme in BLOCK_SCHEMES]
    if cur.scheme in BLOCK_SCHEMES:
        bigger = [c for c in blocks if c.block_elems > cur.block_elems]
        if bigger:
            rung = min(c.block_elems for c in bigger)
            save += [c for c in bigger if c.block_elems == rung]
        save += [c for c in same if c.scheme == "pattern"]
    elif blocks:
        save.append(min(blocks, key=lambda c: p.layer_latency(name, c)))
    kin = [c for c in fam if (c.scheme, c.block, c.options) == (cur.scheme, cur.block,
                                                                cur.options)]
    higher = [c for c in fam if c.sparsity > cur.sparsity + 1e-9]
    if higher:
        step = min(c.sparsity for c in higher)
        at = [c for c in higher if abs(c.sparsity - step) < 1e-9]
        save += [c for c in at if c in kin] or [min(at, key=lambda c: p.layer_latency(name, c))]
    lower = [c for c in kin if c.sparsity < cur.sparsity - 1e-9]
    back = [ctx.dense(spec)]
    if lower:
        top = max(c.sparsity for c in lower)
        back = [c for c in lower if abs(c.sparsity - top) < 1e-9]
    return fastest(p, name, save), fastest(p, name, back)


def spend_merit(dp: float, dl: float) -> tuple:
    """Sort key (higher is better) of a step saving -dl > 0 us for a proxy change dp. A step
    that loses no proxy is a pure win and beats any that does, the biggest saving first; the
    others rank by latency saved per unit of proxy lost."""
    if dp >= -GUARD_EPS:
        return (1, -dl, dp)
    return (0, dl / dp, -dl)


def best_step(s, combined: bool):
    """(merit, dp, dl, (moves, sparsity raises)) of the best step that saves latency and
    keeps every bound that holds (proxy floor included); None if none. Single moves only,
    or (combined) a move that needs pruned weights plus one raise on another layer."""
    min_dpr, _, max_dfl = s.limits()
    need = s.need()
    if combined:
        return _combined(s, min_dpr, max_dfl, need)
    best = None
    for name in s.open:
        for o in s.opts[name]:
            dp, dl, dpr, dfl = o[:4]
            if dl >= -SPEND_EPS_US or dp < need or dpr < min_dpr or dfl > max_dfl:
                continue
            m = spend_merit(dp, dl)
            if best is None or m > best[0]:
                best = (m, dp, dl, ((o,), ()))
    return best


def _combined(s, min_dpr: float, max_dfl: float, need: float):
    """Two-layer steps, for when no single move fits: a move that cannot go alone (it
    gives up pruned weights the sparsity budget needs, or it gains proxy at a latency
    cost) with one move of another layer that makes up for it:
      sparsity  the raise that covers the pruned-weight deficit with the least proxy
                lost, the most latency saved or (once a ratio step was taken) the best
                value at that step's price;
      proxy     the move that saves the most latency within the proxy the first one
                gains (an exchange: accuracy bought cheaply on one layer and spent where
                it buys more time).
    Only pairs that save latency and keep every bound that holds count."""
    every = [o for n in s.open for o in s.opts[n]]
    raises = [o for o in every if o[2] > 0]
    keys = [lambda o: o[0], lambda o: -o[1]]
    if s.price:
        keys.append(lambda o, lam=s.price: lam * o[0] - o[1])
    covers = [SuffixBest([(o[2], o[4], o) for o in raises], k) for k in keys] \
        if raises else []
    savers = SuffixBest([(o[0], o[4], o) for o in every if o[1] < -SPEND_EPS_US],
                        lambda o: -o[1])
    best = None
    for g in every:
        dp, dl, dpr, dfl, name = g[:5]
        if dp <= GUARD_EPS and dl >= -SPEND_EPS_US:
            continue
        tried = []
        if dpr < min_dpr:
            tried += [(c.get(min_dpr - dpr, name), "sparsity") for c in covers]
        if dp > GUARD_EPS:
            tried.append((savers.get(need - dp, name), "proxy"))
        for i, (r, kind) in enumerate(tried):
            if r is None or any(r is t for t, _ in tried[:i]):
                continue
            sdp, sdl = dp + r[0], dl + r[1]
            if sdl >= -SPEND_EPS_US or sdp < need or dpr + r[2] < min_dpr or \
                    dfl + r[3] > max_dfl:
                continue
            m = spend_merit(sdp, sdl)
            if best is None or m > best[0]:
                best = (m, sdp, sdl, ((g,), (r,), kind))
    return best
