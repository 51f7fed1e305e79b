"""RuleMapper: explicit, documented per-layer rules over measured costs (Gong et al. 2022 style).

Each rule is a small named function `rule(ctx, spec) -> Decision | None`; the first rule that
decides a layer wins, and its reason goes into the layer's Choice. Rules only ever see the
layer's ALLOWED candidates (measured and >= min_speedup faster than dense, see problem.py), so
the rule mapper cannot pick anything slower than dense.

The rules, in order:
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
Then three global rules, in this order:
  compensation  if the cheap budget bounds (sparsity, latency, FLOPs) are not met, e.g. because
                some layers stayed dense, raise one layer at a time by one sparsity level,
                picking the move with the best measured latency change per extra pruned weight
                (latency-reducing moves only when latency is what is missing), among the same
                allowed, guarded candidates; stop when the budget is met, or say it cannot.
                Layers kept dense by first-layer, grouped or not-faster are never touched.
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

The target sparsity is RuleConfig.sparsity, else budget.sparsity, else the lowest sparsity the
problem offers; a layer uses the lowest level it offers at or above the target. Unstructured
counts as a 1-element block; N:M candidates are left to the search mappers. Only the
proxy-guard and proxy-spend evaluate the accuracy proxy, and only when budget.min_proxy is set
(without a floor, plans are exactly as without them).
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field, replace
from typing import Optional

from .budget import REL_TOL, Totals
from .layer import LayerSpec
from .plan import Plan
from .problem import MIN_LATENCY, Problem
from .proxy_delta import LOCAL, ProxyDeltas
from .space import DENSE, Candidate

BLOCK_SCHEMES = ("block", "unstructured")


@dataclass(frozen=True)
class RuleConfig:
    """Knobs of the rule mapper (all documented in the module docstring)."""

    sparsity: Optional[float] = None   # per-layer target; None: budget's, else lowest offered
    max_block_elems: int = 16          # accuracy guard on block size
    tie_tolerance: float = 0.03        # speedups this close count as equal
    compensate: bool = True            # run the global compensation rule
    proxy_guard: bool = True           # run the global proxy-guard rule (budget.min_proxy)
    guard_proxy_calls: int = 400       # most full proxy evaluations per global proxy rule
                                       # (proxy-guard, proxy-spend; not used for a TableProxy)
    proxy_spend: bool = True           # run the global proxy-spend rule (budget.min_proxy)
    first_layer_share: float = 0.03    # first layer dense only below this dense-latency share
                                       # (1.0: always dense, the old rule)

    def __post_init__(self):
        if self.sparsity is not None and not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"RuleConfig.sparsity must be in (0, 1), got {self.sparsity}")
        if self.max_block_elems < 1:
            raise ValueError("RuleConfig.max_block_elems must be >= 1")
        if not 0.0 <= self.tie_tolerance < 1.0:
            raise ValueError("RuleConfig.tie_tolerance must be in [0, 1)")
        calls = self.guard_proxy_calls
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
            raise ValueError("RuleConfig.guard_proxy_calls must be an int >= 1")
        share = self.first_layer_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or \
                not 0.0 <= share <= 1.0:
            raise ValueError(f"RuleConfig.first_layer_share must be in [0, 1], got {share}")


@dataclass
class Decision:
    """One layer's choice, why, and whether compensation may change it."""

    cand: Candidate
    reason: str
    locked: bool = False


@dataclass
class RuleContext:
    """What every rule can look at."""

    problem: Problem
    config: RuleConfig
    target: float                       # target sparsity
    notes: list = field(default_factory=list)
    remarks: dict = field(default_factory=dict)   # layer -> (text, text if kept dense)
                                                  # appended to the deciding rule's reason

    def family(self, spec: LayerSpec) -> list:
        """The allowed candidates the rules consider for this layer, guard applied."""
        schemes = BLOCK_SCHEMES + (("pattern",) if _is_3x3(spec) else ())
        return [c for c in self.problem.allowed(spec.name)
                if c.scheme in schemes and c.block_elems <= self.config.max_block_elems]

    def level(self, cands: list) -> Optional[float]:
        """The lowest sparsity level among cands at or above the target."""
        levels = [c.sparsity for c in cands if c.sparsity >= self.target - 1e-9]
        return min(levels) if levels else None

    def speedup(self, spec: LayerSpec, cand: Candidate) -> float:
        return self.problem.speedup(spec.name, cand)


def _is_3x3(spec: LayerSpec) -> bool:
    return spec.op == "conv2d" and spec.kernel == (3, 3)


def _kind(spec: LayerSpec) -> str:
    if spec.op == "linear":
        return "linear"
    return "x".join(map(str, spec.kernel)) + " conv"


# -- the per-layer rules -----------------------------------------------------------------------
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
    if len(ctx.problem.allowed(spec.name)) > 1:
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
    if not _is_3x3(spec):
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


# -- the global compensation rule --------------------------------------------------------------
def _next_move(ctx: RuleContext, spec: LayerSpec, cur: Candidate, latency_only: bool):
    """(score, candidate) of one layer's best one-level sparsity raise, or None.
    score = latency change per extra pruned weight (lower is better)."""
    p = ctx.problem
    higher = [c for c in ctx.family(spec) if c.sparsity > cur.sparsity + 1e-9]
    if not higher:
        return None
    step = min(c.sparsity for c in higher)
    at = [c for c in higher if abs(c.sparsity - step) < 1e-9]
    cand = min(at, key=lambda c: p.layer_latency(spec.name, c))
    d_lat = p.layer_latency(spec.name, cand) - p.layer_latency(spec.name, cur)
    d_pruned = p.pruned_weights(spec.name, cand) - p.pruned_weights(spec.name, cur)
    if d_pruned <= 0 or (latency_only and d_lat >= 0):
        return None
    return d_lat / d_pruned, cand


def compensate(ctx: RuleContext, decisions: dict) -> list:
    """Raise sparsity where it is cheapest in measured latency until the cheap bounds hold.
    Mutates decisions; returns the violations left ([] = met)."""
    p = ctx.problem
    assignment = {n: d.cand for n, d in decisions.items()}
    # Running sums: re-totalling the whole problem per step would make this O(L^2).
    lat, pruned = p.latency(assignment), p.sparsity(assignment) * p.total_params
    flops = p.flops(assignment)
    budget = p.budget
    moves: dict = {}

    def missing():
        return budget.violations(Totals(lat, pruned / p.total_params, flops))

    def latency_only():
        need_prune = (budget.sparsity is not None and
                      pruned / p.total_params < budget.sparsity - REL_TOL) or \
                     (budget.flops is not None and flops > budget.flops * (1 + REL_TOL))
        return not need_prune

    lo = latency_only()
    for spec in p.layers:
        if not decisions[spec.name].locked:
            moves[spec.name] = _next_move(ctx, spec, decisions[spec.name].cand, lo)
    while missing():
        if latency_only() != lo:   # what is missing changed: rescore every layer
            lo = latency_only()
            moves = {n: _next_move(ctx, p.spec(n), decisions[n].cand, lo) for n in moves}
        live = [(m[0], i, n) for i, (n, m) in enumerate(moves.items()) if m is not None]
        if not live:
            left = missing()
            ctx.notes.append("rule compensation: cannot meet the budget with allowed, guarded "
                             "candidates on the open layers: " + "; ".join(left))
            return left
        _, _, name = min(live)
        cand, cur = moves[name][1], decisions[name].cand
        gap = missing()[0]
        d_lat = p.layer_latency(name, cand) - p.layer_latency(name, cur)
        lat += d_lat
        pruned += p.pruned_weights(name, cand) - p.pruned_weights(name, cur)
        flops += p.remaining_flops(name, cand) - p.remaining_flops(name, cur)
        decisions[name] = Decision(cand, decisions[name].reason + (
            f" | rule compensation: raised to {cand.key} ({p.speedup(name, cand):.2f}x, "
            f"{d_lat:+.1f} us) because {gap}"))
        moves[name] = _next_move(ctx, p.spec(name), cand, lo)
    return []


# -- the global proxy-guard rule ---------------------------------------------------------------
GUARD_EPS = 1e-12        # proxy changes below this are rounding, not a gain
GUARD_PREFIX = 8         # most partners one combined step may raise
GUARD_BUNDLES = 4        # big sparsity raises tried as the centre of a bundle per step


def _mask(c: Candidate) -> tuple:
    """What decides a candidate's weights (the backend only decides its speed)."""
    return (c.scheme, c.block, round(c.sparsity, 9), c.options)


def _fastest(p: Problem, name: str, cands: list) -> list:
    """One candidate per mask, the fastest backend of each."""
    best: dict = {}
    for c in cands:
        m = _mask(c)
        if m not in best or p.layer_latency(name, c) < p.layer_latency(name, best[m]):
            best[m] = c
    return list(best.values())


def _elementary(ctx: RuleContext, spec: LayerSpec, cur: Candidate) -> tuple:
    """(gain targets, raise targets) one step away from `cur`, for proxies that must be
    evaluated in full: the next smaller block at the same sparsity, pattern <-> block at the
    same sparsity, the same mask one sparsity level lower (dense below the lowest level); and
    the same mask one level higher (or, from dense, the lowest level's smallest block)."""
    p, name = ctx.problem, spec.name
    fam = ctx.family(spec)
    if cur.is_dense:
        if not fam:
            return [], []
        low = min(c.sparsity for c in fam)
        at = [c for c in fam if abs(c.sparsity - low) < 1e-9]
        return [], _fastest(p, name, [min(at, key=lambda c: c.block_elems)])
    same = [c for c in fam if abs(c.sparsity - cur.sparsity) < 1e-9 and _mask(c) != _mask(cur)]
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
        gains.append(DENSE)
    higher = [c for c in kin if c.sparsity > cur.sparsity + 1e-9]
    raises = []
    if higher:
        step = min(c.sparsity for c in higher)
        raises = [c for c in higher if abs(c.sparsity - step) < 1e-9]
    return _fastest(p, name, gains), _fastest(p, name, raises)


def _supply(raises: list) -> list:
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


class _Cover:
    """For a pruned-weight deficit d, the point of one layer's supply curve that gives at
    least d pruned weights at the least proxy lost, in O(log n): points sorted by weights
    gained, with the best and the best-of-another-layer over every suffix."""

    def __init__(self, supply: dict):
        pts = []
        for name, curve in supply.items():
            gained = lost = 0.0
            for seg in curve:
                gained += seg[2]
                lost += seg[3]
                pts.append((gained, lost, name, seg[4]))
        pts.sort(key=lambda t: t[0])
        self.gained = [t[0] for t in pts]
        self.best: list = [None] * len(pts)
        b1 = b2 = None             # best, and best from a layer other than b1's
        for i in range(len(pts) - 1, -1, -1):
            t = pts[i]
            if b1 is None or t[1] < b1[1]:
                if b1 is not None and b1[2] != t[2]:
                    b2 = b1
                b1 = t
            elif t[2] != b1[2] and (b2 is None or t[1] < b2[1]):
                b2 = t
            self.best[i] = (b1, b2)

    def least_loss(self, deficit: float, not_layer: str):
        i = bisect_left(self.gained, deficit)
        if i >= len(self.gained):
            return None
        for t in self.best[i]:
            if t is not None and t[2] != not_layer:
                return t[3]
        return None


def _limits(p: Problem, pruned: float, lat: float, flops: float) -> tuple:
    """(least pruned-weight change, most latency change, most FLOPs change) a step from
    totals (pruned, lat, flops) may make: a bound that holds must keep holding, one already
    broken must not get worse."""
    b, inf = p.budget, float("inf")
    dpr = -inf if b.sparsity is None else \
        min((b.sparsity - REL_TOL) * p.total_params - pruned, 0.0)
    dl = inf if b.latency_us is None else max(b.latency_us * (1 + REL_TOL) - lat, 0.0)
    dfl = inf if b.flops is None else max(b.flops * (1 + REL_TOL) - flops, 0.0)
    return dpr, dl, dfl


def _merit(dp: float, dl: float) -> tuple:
    """Sort key (higher is better) of a step gaining dp > 0 proxy for dl us. A step that adds
    no latency is a pure win and beats any that does; among pure wins the one saving the most
    latency goes first (the floor is a constraint, latency the objective: pure wins compete
    for the same sparsity slack and partners, so the biggest saving should get them). The
    others rank by proxy gained per us added."""
    if dl <= 1e-9:
        return (1, -dl, dp)
    return (0, dp / dl, 0.0)


class _Guard:
    """State of one proxy-guard run (see proxy_guard)."""

    def __init__(self, ctx: RuleContext, decisions: dict, singles_first: bool = False):
        p = self.p = ctx.problem
        self.singles_first = singles_first
        self.ctx, self.budget = ctx, p.budget
        self.a = {n: d.cand for n, d in decisions.items()}
        self.open = [s.name for s in p.layers if not decisions[s.name].locked]
        self.lat, self.flops = p.latency(self.a), p.flops(self.a)
        self.pruned = p.sparsity(self.a) * p.total_params
        self.start = (self.lat, self.pruned / p.total_params)
        self.deltas = ProxyDeltas(p, self.a, ctx.config.guard_proxy_calls)
        self.local = self.deltas.mode == LOCAL
        self.floor = self.budget.min_proxy
        self.tol = REL_TOL * max(1.0, abs(self.floor))
        self.gains: dict = {}      # layer -> [(dp, dl, dpr, dfl, layer, cand)] with dp > 0
        self.supply: dict = {}     # layer -> its sparsity supply curve (see _supply)
        self.bad: set = set()      # (layer, from, to) steps the full proxy refuted
        self.log: dict = {}        # layer -> {"path", "dp", "dl", "kept_by", "kept_for"}
        self.steps = 0
        self.step_limit = 20 * len(self.open) + 100
        self.blocked: dict = {}    # bound -> gain moves it refused, at the last step
        self.bound: Optional[float] = None   # LP bound on the proxy (why_not, local mode)

    # -- per-layer options ---------------------------------------------------------------------
    def options(self, name: str) -> None:
        """This layer's gain moves and its sparsity supply curve, from its current candidate.
        An option is (dproxy, dlatency_us, dpruned_weights, dflops, layer, candidate)."""
        p, cur = self.p, self.a[name]
        spec = p.spec(name)
        if self.local:   # deltas are free: every allowed, guarded candidate, and dense
            gain_t = raise_t = [c for c in [DENSE] + self.ctx.family(spec) if c.key != cur.key]
        else:
            gain_t, raise_t = _elementary(self.ctx, spec, cur)
        l0, f0 = p.layer_latency(name, cur), p.remaining_flops(name, cur)
        pr0 = p.pruned_weights(name, cur)
        gains, raises, seen = [], [], set()
        for c in list(gain_t) + list(raise_t):
            if c.key in seen or (name, cur.key, c.key) in self.bad:
                continue
            seen.add(c.key)
            dp = self.deltas.delta(self.a, name, c)
            if dp is None:
                continue
            opt = (dp, p.layer_latency(name, c) - l0, p.pruned_weights(name, c) - pr0,
                   p.remaining_flops(name, c) - f0, name, c)
            if dp > GUARD_EPS:
                gains.append(opt)
            if opt[2] > 0:
                raises.append(opt)
        self.gains[name] = gains
        self.supply[name] = _supply(raises)

    # -- one step ------------------------------------------------------------------------------
    def limits(self) -> tuple:
        """(least pruned-weight change, most latency change, most FLOPs change) a step may
        make: a bound that holds must keep holding, one already broken must not get worse."""
        return _limits(self.p, self.pruned, self.lat, self.flops)

    def best_step(self):
        """(dp, dl, (gain moves, sparsity raises)) of the best step, preferring the cheapest step that reaches
        the floor when it adds no more latency; None if no step raises the proxy. With
        singles_first, combined steps are only considered when no single move helps."""
        if self.singles_first:
            step = self._best_step(combined=False)
            if step is not None:
                return step
        return self._best_step(combined=True)

    def _best_step(self, combined: bool):
        min_dpr, max_dl, max_dfl = self.limits()
        need = self.floor - self.tol - self.deltas.value
        # Every layer's supply segments, cheapest proxy per pruned weight first. Each layer's
        # curve is convex, so its segments come out in order.
        pool = sorted(((seg[0], seg[1], k, seg, name) for name, curve in self.supply.items()
                       for k, seg in enumerate(curve)), key=lambda s: s[:3]) if combined else []
        cover = _Cover(self.supply) if combined else None
        steps = []
        blocked = {"sparsity": 0, "latency": 0, "flops": 0}
        for name in self.open:
            for g in self.gains[name]:
                dp, dl, dpr, dfl = g[:4]
                if dpr >= min_dpr:
                    if dl > max_dl:
                        blocked["latency"] += 1
                    elif dfl > max_dfl:
                        blocked["flops"] += 1
                    else:
                        steps.append((dp, dl, ((g,), ())))
                    continue
                combos = self._with_partners(g, min_dpr - dpr, pool, cover, max_dl,
                                             max_dfl) if combined else []
                if not combos:
                    blocked["sparsity"] += 1
                steps += combos
        if combined:
            steps += self._bundles(pool, min_dpr, max_dl, max_dfl, need)
        self.blocked = blocked
        if not steps:
            return None
        best = max(steps, key=lambda s: _merit(s[0], s[1]))
        finishers = [s for s in steps if s[0] >= need]
        if finishers and _merit(best[0], best[1])[0] == 0:
            finish = min(finishers, key=lambda s: (s[1], -s[0]))
            if finish[1] <= best[1]:
                return finish
        return best

    def _with_partners(self, g, deficit, pool, cover, max_dl, max_dfl) -> list:
        """Combined steps: gain move g plus sparsity raises on other layers that make up at
        least `deficit` pruned weights: (a) the cheapest supply segments of all layers, in
        order of proxy lost per pruned weight, until the deficit is covered (the
        multiple-choice knapsack greedy; GUARD_PREFIX layers at most), and (b) the one point
        of one other layer's curve that covers the deficit alone at the least proxy lost (a
        small deficit is better covered by a small raise than by the cheapest rate's big
        one). Only steps that gain proxy and keep latency / FLOPs within their limits."""
        name = g[4]
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
        single = cover.least_loss(deficit, name)
        if single is not None and not (len(chosen) == 1 and
                                       next(iter(chosen.values()))[4] is single):
            out.append((single,))
        steps = []
        for raises in out:
            dp = g[0] + sum(o[0] for o in raises)
            dl = g[1] + sum(o[1] for o in raises)
            dfl = g[3] + sum(o[3] for o in raises)
            if dp > GUARD_EPS and dl <= max_dl and dfl <= max_dfl:
                steps.append((dp, dl, ((g,), raises)))
        return steps

    def _bundles(self, pool, min_dpr, max_dl, max_dfl, need) -> list:
        """The other way round: one big, cheap sparsity raise (the first segment of one of
        the GUARD_BUNDLES cheapest curves) and the slack it frees spent on gain moves of
        other layers, best proxy per pruned weight lost first, one per layer, while they fit
        and until the floor is reached.
        Finds the exchanges a single gain move cannot pay for (e.g. one layer raised a whole
        level so that ten smaller ones can each go one level down)."""
        rated = sorted((g for v in self.gains.values() for g in v if g[2] < 0),
                       key=lambda g: g[0] / g[2])
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
            for g in rated:
                if dp >= need:
                    break
                if g[4] in used or g[0] / -g[2] <= seg[0] or -g[2] > room:
                    continue
                if dl + g[1] > max_dl or dfl + g[3] > max_dfl:
                    continue
                used.add(g[4])
                gains.append(g)
                room += g[2]
                dp, dl, dfl = dp + g[0], dl + g[1], dfl + g[3]
            if gains and dp > GUARD_EPS and dl <= max_dl and dfl <= max_dfl:
                out.append((dp, dl, (tuple(gains), (part,))))
        return out

    def apply(self, dp: float, step: tuple) -> bool:
        """Apply a step (gain moves, sparsity raises); False (and undone) if the full proxy
        says it did not help."""
        gains, raises = step
        parts = gains + raises
        old = {o[4]: self.a[o[4]] for o in parts}
        for o in parts:
            self.a[o[4]] = o[5]
        change = self.deltas.commit(self.a, dp)
        if not self.local and change <= GUARD_EPS:
            # The one-layer probes were wrong about this step (layers interact): undo it.
            self.a.update(old)
            self.deltas.value -= change
            first = gains[0][4]
            self.bad.add((first, old[first].key, gains[0][5].key))
            self.options(first)
            return False
        self.steps += 1
        up = [o[4] for o in gains]
        down = [o[4] for o in raises]
        for o in parts:
            name = o[4]
            self.lat += o[1]
            self.pruned += o[2]
            self.flops += o[3]
            rec = self.log.setdefault(name, {"path": [old[name].key], "dp": 0.0, "dl": 0.0,
                                             "kept_by": [], "kept_for": []})
            rec["path"].append(o[5].key)
            rec["dp"] += o[0]
            rec["dl"] += o[1]
            if o in gains:
                rec["kept_by"] += [n for n in down if n not in rec["kept_by"]]
            else:
                rec["kept_for"] += [n for n in up if n not in rec["kept_for"]]
        for name in up + down:
            self.options(name)
        return True

    # -- the run -------------------------------------------------------------------------------
    def met(self) -> bool:
        return self.deltas.value >= self.floor - self.tol

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
            step = self.best_step()
            if step is None:
                break
            self.apply(step[0], step[2])
        if self.local:
            # The running sum is exact up to rounding; settle met / not met on the real value.
            self.deltas.value = self.deltas.evaluate(self.a)

    def proxy_bound(self) -> Optional[float]:
        """Local mode: an upper bound on the proxy of any assignment that keeps the locked
        layers and meets the sparsity bound (the LP relaxation of "max proxy s.t. sparsity",
        solved exactly by the greedy over each layer's convex supply curve, starting from each
        layer's most accurate candidate; latency / FLOPs bounds ignored, so still a bound).
        When the sparsity budget is out of reach itself, the sparsity required is the plan's
        current one (the guard never lowers it). None outside local mode."""
        if not self.local:
            return None
        p = self.p
        value, pruned, segs = self.deltas.value, self.pruned, []
        for name in self.open:
            cur = self.a[name]
            pr0 = p.pruned_weights(name, cur)
            opts = [(0.0, 0.0, 0.0, 0.0, name, cur)]
            for c in [DENSE] + self.ctx.family(p.spec(name)):
                dp = self.deltas.delta(self.a, name, c)
                if dp is not None and c.key != cur.key:
                    opts.append((dp, 0.0, p.pruned_weights(name, c) - pr0, 0.0, name, c))
            top = max(opts, key=lambda o: (o[0], o[2]))
            value += top[0]
            pruned += top[2]
            segs += _supply([(o[0] - top[0], 0.0, o[2] - top[2], 0.0, name, o[5])
                             for o in opts if o[2] > top[2]])
        if self.budget.sparsity is None:
            return value
        short = min((self.budget.sparsity - REL_TOL) * p.total_params, self.pruned) - pruned
        for slope, _, dpr, loss, _ in sorted(segs, key=lambda s: s[0]):
            if short <= 0:
                break
            take = min(1.0, short / dpr)
            value -= take * loss
            short -= take * dpr
        return value

    def why_not(self) -> str:
        """Why the floor was not reached, in the words of the plan notes."""
        b = self.budget
        if self.deltas.capped or self.deltas.exhausted:
            return (f"stopped at the proxy-evaluation cap ({self.deltas.calls} full "
                    f"evaluations, RuleConfig.guard_proxy_calls)")
        if self.steps >= self.step_limit:
            return f"stopped after {self.steps} moves (step limit)"
        bound = self.bound = self.proxy_bound()
        if bound is not None and bound < self.floor - self.tol:
            if b.sparsity is None:
                return (f"unreachable: the most accurate allowed, guarded candidate on every "
                        f"open layer gives proxy {bound:.4f}")
            held = b.sparsity
            out = ""
            if self.pruned < (b.sparsity - REL_TOL) * self.p.total_params:
                held = self.pruned / self.p.total_params
                out = (f" (sparsity {b.sparsity:.4f} is out of reach itself; the guard keeps "
                       f"the {held:.4f} reached)")
            return (f"unreachable: no assignment of allowed, guarded candidates to the open "
                    f"layers with sparsity >= {held:.4f} has a proxy above {bound:.4f} (LP "
                    f"bound; first-layer, grouped and not-faster layers kept){out}")
        left = sum(len(v) for v in self.gains.values())
        if not left:
            out = ("no open layer has an allowed, guarded candidate that raises the proxy "
                   "(each is at its most accurate choice)")
        else:
            words = {"sparsity": f"sparsity >= {b.sparsity:.4f}" if b.sparsity is not None
                     else "", "latency": f"latency <= {b.latency_us:.1f} us"
                     if b.latency_us is not None else "",
                     "flops": f"flops <= {b.flops:.4g}" if b.flops is not None else ""}
            parts = [f"{words[k]} ({n} move{'s' if n > 1 else ''}"
                     + (", even with sparsity raised on other layers" if k == "sparsity"
                        else "") + ")" for k, n in self.blocked.items() if n]
            out = (f"the {left} remaining moves that raise the proxy lose it again or "
                   f"break " + "; ".join(parts) if parts else
                   f"the {left} remaining moves that raise the proxy lose it again in the "
                   f"sparsity they need raised elsewhere")
        if bound is not None:
            out += (f"; up to {bound:.4f} may be reachable (LP bound) with exchanges across "
                    f"many layers at once: a search mapper (mapping.search) can look for them")
        return out


def _names(names: list, limit: int = 3) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def proxy_guard(ctx: RuleContext, decisions: dict) -> Optional[dict]:
    """Raise the accuracy proxy to budget.min_proxy at the least latency (see the module
    docstring). Mutates decisions; returns what it did (for plan.meta), None when off."""
    p = ctx.problem
    if p.budget.min_proxy is None:
        return None
    g = _Guard(ctx, decisions)
    before = g.deltas.value
    calls = 0
    if not g.met():
        g.run()
        if g.local:
            # Deltas are free: also run the greedy that tries combined steps only when no
            # single move helps, and keep the better plan. Neither order wins everywhere.
            h = _Guard(ctx, decisions, singles_first=True)
            h.run()
            calls = g.deltas.calls
            if h.rank() < g.rank():
                g = h
    calls += g.deltas.calls
    tilde = "" if g.local else "~"
    for name, rec in g.log.items():
        text = (f" | rule proxy-guard: {' -> '.join(rec['path'])}, proxy {tilde}"
                f"{rec['dp']:+.3g} for {rec['dl']:+.1f} us")
        if rec["kept_by"]:
            text += f", sparsity kept by raising {_names(rec['kept_by'])}"
        if rec["kept_for"]:
            text += f", raised to keep the sparsity budget for {_names(rec['kept_for'])}"
        decisions[name] = Decision(g.a[name], decisions[name].reason + text,
                                   decisions[name].locked)
    met = g.met()
    after = g.deltas.value
    summary = (f"proxy {before:.4f} -> {after:.4f}, floor {g.floor:.4f}, {g.steps} move"
               f"{'s' if g.steps != 1 else ''} on {len(g.log)} layer"
               f"{'s' if len(g.log) != 1 else ''}, latency {g.lat - g.start[0]:+.1f} us, "
               f"sparsity {g.start[1]:.4f} -> {g.pruned / p.total_params:.4f}")
    info = {"floor": g.floor, "before": before, "after": after, "met": met,
            "moves": g.steps, "layers_changed": sorted(g.log),
            "latency_added_us": g.lat - g.start[0], "proxy_calls": calls,
            "mode": "local table deltas" if g.local else "full evaluations (one-layer probes)",
            "combined_steps": "only when no single move helps" if g.singles_first
            else "at every step",
            "why": "", "bound": None}
    if before >= g.floor - g.tol:
        ctx.notes.append(f"rule proxy-guard: nothing to do, proxy {before:.4f} >= floor "
                         f"{g.floor:.4f}")
    elif met:
        ctx.notes.append(f"rule proxy-guard: floor met: {summary}")
    else:
        info["why"] = g.why_not()
        info["bound"] = g.bound
        ctx.notes.append(f"rule proxy-guard: cannot reach proxy >= {g.floor:.4f}: "
                         f"{info['why']} ({summary})")
    return info


# -- the global proxy-spend rule ---------------------------------------------------------------
SPEND_EPS_US = 1e-9      # latency changes below this (us) are rounding, not a saving


def _spend_targets(ctx: RuleContext, spec: LayerSpec, cur: Candidate) -> tuple:
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
    if cur.is_dense:
        low = min(c.sparsity for c in fam)
        return _fastest(p, name, [c for c in fam if abs(c.sparsity - low) < 1e-9]), []
    same = [c for c in fam if abs(c.sparsity - cur.sparsity) < 1e-9]
    save = [c for c in same if _mask(c) == _mask(cur) and c.key != cur.key]
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
    back = [DENSE]
    if lower:
        top = max(c.sparsity for c in lower)
        back = [c for c in lower if abs(c.sparsity - top) < 1e-9]
    return _fastest(p, name, save), _fastest(p, name, back)


def _spend_merit(dp: float, dl: float) -> tuple:
    """Sort key (higher is better) of a step saving -dl > 0 us for a proxy change dp. A step
    that loses no proxy is a pure win and beats any that does, the biggest saving first; the
    others rank by latency saved per unit of proxy lost."""
    if dp >= -GUARD_EPS:
        return (1, -dl, dp)
    return (0, dl / dp, -dl)


class _Best:
    """Among points (x, layer, option), the option with the highest key(option) among the
    points with x >= a threshold on another layer than a given one, in O(log n) (suffix best
    and best-of-another-layer, as _Cover)."""

    def __init__(self, points: list, key):
        points = sorted(points, key=lambda t: t[0])
        self.x = [t[0] for t in points]
        self.best: list = [None] * len(points)
        b1 = b2 = None
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


class _Spend:
    """State of one proxy-spend run (see proxy_spend)."""

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
        self.back = self.local     # give-back moves probed (always with free local deltas)
        self.opts: dict = {}       # layer -> [(dp, dl, dpr, dfl, layer, cand)]
        self.bad: set = set()      # (layer, from, to) steps the full proxy refuted
        self.log: dict = {}        # layer -> {"path", "dp", "dl", "kept_by", "kept_for"}
        self.steps = self.combined = 0
        self.step_limit = 20 * len(self.open) + 100
        self.price: Optional[float] = None   # us saved per proxy lost, last ratio step

    def met(self) -> bool:
        return self.deltas.value >= self.floor - self.tol

    def need(self) -> float:
        """The least proxy change a step may make (<= 0): down to the floor, and not at all
        when the proxy is (within rounding) at or below it."""
        return min(self.floor - self.deltas.value, 0.0)

    def options(self, name: str) -> None:
        """This layer's moves from its current candidate: every allowed, guarded candidate
        (and dense) with local deltas, the elementary ones otherwise (_spend_targets)."""
        p, cur = self.p, self.a[name]
        spec = p.spec(name)
        if self.local:
            targets = [DENSE] + self.ctx.family(spec)
        else:
            save, back = _spend_targets(self.ctx, spec, cur)
            targets = save + (back if self.back else [])
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
        self.opts[name] = out

    def best_step(self, combined: bool):
        """(merit, dp, dl, (moves, sparsity raises)) of the best step that saves latency and
        keeps every bound that holds (proxy floor included); None if none. Single moves only,
        or (combined) a move that needs pruned weights plus one raise on another layer."""
        min_dpr, _, max_dfl = _limits(self.p, self.pruned, self.lat, self.flops)
        need = self.need()
        if combined:
            return self._combined(min_dpr, max_dfl, need)
        best = None
        for name in self.open:
            for o in self.opts[name]:
                dp, dl, dpr, dfl = o[:4]
                if dl >= -SPEND_EPS_US or dp < need or dpr < min_dpr or dfl > max_dfl:
                    continue
                m = _spend_merit(dp, dl)
                if best is None or m > best[0]:
                    best = (m, dp, dl, ((o,), ()))
        return best

    def _combined(self, min_dpr: float, max_dfl: float, need: float):
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
        every = [o for n in self.open for o in self.opts[n]]
        raises = [o for o in every if o[2] > 0]
        keys = [lambda o: o[0], lambda o: -o[1]]
        if self.price:
            keys.append(lambda o, lam=self.price: lam * o[0] - o[1])
        covers = [_Best([(o[2], o[4], o) for o in raises], k) for k in keys] if raises else []
        savers = _Best([(o[0], o[4], o) for o in every if o[1] < -SPEND_EPS_US],
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
                m = _spend_merit(sdp, sdl)
                if best is None or m > best[0]:
                    best = (m, sdp, sdl, ((g,), (r,), kind))
        return best

    def apply(self, dp: float, step: tuple) -> bool:
        """Apply a step (moves, partners[, "sparsity" | "proxy": what the partner makes up
        for]); False (and undone) if the full proxy says it broke the floor."""
        moves, raises = step[:2]
        kind = step[2] if len(step) > 2 else ""
        parts = moves + raises
        old = {o[4]: self.a[o[4]] for o in parts}
        need, before = self.need(), self.deltas.value
        for o in parts:
            self.a[o[4]] = o[5]
        change = self.deltas.commit(self.a, dp)
        if not self.local and change < need:
            # The one-layer probes were wrong about this step (layers interact): undo it.
            self.a.update(old)
            self.deltas.value = before
            first = moves[0]
            self.bad.add((first[4], old[first[4]].key, first[5].key))
            self.options(first[4])
            return False
        self.steps += 1
        self.combined += bool(raises)
        dl = sum(o[1] for o in parts)
        if change < -GUARD_EPS:
            self.price = dl / change
        up, down = [o[4] for o in moves], [o[4] for o in raises]
        for o in parts:
            name = o[4]
            self.lat += o[1]
            self.pruned += o[2]
            self.flops += o[3]
            rec = self.log.setdefault(name, {"path": [old[name].key], "dp": 0.0, "dl": 0.0,
                                             "kept_by": [], "kept_for": [], "pays_for": [],
                                             "paid_by": []})
            rec["path"].append(o[5].key)
            rec["dp"] += o[0]
            rec["dl"] += o[1]
            mine, theirs = (("kept_by", down), ("pays_for", down)) \
                if any(o is m for m in moves) else (("kept_for", up), ("paid_by", up))
            field_, names = mine if kind == "sparsity" else theirs
            rec[field_] += [n for n in names if n not in rec[field_]]
        for name in up + down:
            self.options(name)
        return True

    def run(self) -> None:
        for name in self.open:
            self.options(name)
        while self.steps < self.step_limit and not self.deltas.exhausted:
            step = self.best_step(combined=False)
            if step is None:
                if not self.back:
                    # Probe mode: the give-back moves are only worth their evaluations now.
                    self.back = True
                    for name in self.open:
                        self.options(name)
                step = self.best_step(combined=True)
            if step is None:
                break
            self.apply(step[1], step[3])
        if self.local:
            # The running sum is exact up to rounding; settle met / not met on the real value.
            self.deltas.value = self.deltas.evaluate(self.a)

    def why_stopped(self) -> str:
        """Why no further move was taken, in the words of the plan notes."""
        if self.deltas.capped or self.deltas.exhausted:
            return (f"stopped at the proxy-evaluation cap ({self.deltas.calls} full "
                    f"evaluations, RuleConfig.guard_proxy_calls)")
        if self.steps >= self.step_limit:
            return f"stopped after {self.steps} moves (step limit)"
        min_dpr, _, max_dfl = _limits(self.p, self.pruned, self.lat, self.flops)
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
        ctx.notes.append(f"rule proxy-spend: nothing to spend, proxy {guard['after']:.4f} < "
                         f"floor {guard['floor']:.4f} (proxy-guard could not reach it)")
        return {"floor": guard["floor"], "before": guard["after"], "after": guard["after"],
                "moves": 0, "combined_steps": 0, "layers_changed": [],
                "latency_saved_us": 0.0, "proxy_calls": 0, "mode": guard["mode"],
                "why": "the proxy-guard did not reach the floor"}
    s = _Spend(ctx, decisions)
    before = s.deltas.value
    info = {"floor": s.floor, "before": before, "after": before, "moves": 0,
            "combined_steps": 0, "layers_changed": [], "latency_saved_us": 0.0,
            "proxy_calls": s.deltas.calls,
            "mode": "local table deltas" if s.local else "full evaluations (one-layer probes)",
            "why": ""}
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
    for name, rec in s.log.items():
        text = (f" | rule proxy-spend: {' -> '.join(rec['path'])}, {rec['dl']:+.1f} us for "
                f"proxy {tilde}{rec['dp']:+.3g}")
        if rec["kept_by"]:
            text += f", sparsity kept by raising {_names(rec['kept_by'])}"
        if rec["kept_for"]:
            text += f", raised to keep the sparsity budget for {_names(rec['kept_for'])}"
        if rec["pays_for"]:
            text += f", the proxy it gains pays for {_names(rec['pays_for'])}"
        if rec["paid_by"]:
            text += f", paid for by the proxy {_names(rec['paid_by'])} gains"
        decisions[name] = Decision(s.a[name], decisions[name].reason + text,
                                   decisions[name].locked)
    after = s.deltas.value
    info.update({"after": after, "moves": s.steps, "combined_steps": s.combined,
                 "layers_changed": sorted(s.log), "latency_saved_us": s.start[0] - s.lat,
                 "why": s.why_stopped()})
    ctx.notes.append(
        f"rule proxy-spend: proxy {before:.4f} -> {after:.4f}, floor {s.floor:.4f}, "
        f"{s.steps} move{'s' if s.steps != 1 else ''} ({s.combined} combined) on "
        f"{len(s.log)} layer{'s' if len(s.log) != 1 else ''}, latency "
        f"{s.lat - s.start[0]:+.1f} us, sparsity {s.start[1]:.4f} -> "
        f"{s.pruned / p.total_params:.4f}; {info['why']}")
    return info


# -- the mapper --------------------------------------------------------------------------------
def _target_sparsity(problem: Problem, config: RuleConfig) -> float:
    if config.sparsity is not None:
        return config.sparsity
    if problem.budget.sparsity is not None:
        return problem.budget.sparsity
    offered = [c.sparsity for n in problem.names for c in problem.allowed(n) if not c.is_dense]
    return min(offered) if offered else 0.0


class RuleMapper:
    """Explicit rules, each decision with its reason (see the module docstring)."""

    name = "rule"

    def __init__(self, config: Optional[RuleConfig] = None, rules: tuple = RULES, **overrides):
        self.config = replace(config or RuleConfig(), **overrides)
        self.rules: tuple = tuple(rules)

    def assign(self, problem: Problem) -> tuple:
        """(assignment, reasons, notes) without building a Plan (the search seeds from it)."""
        return self._assign(problem)[:3]

    def _assign(self, problem: Problem) -> tuple:
        """(assignment, reasons, notes, proxy-guard info or None, proxy-spend info or
        None)."""
        ctx = RuleContext(problem, self.config, _target_sparsity(problem, self.config))
        decisions = {spec.name: self._decide(ctx, spec) for spec in problem.layers}
        if self.config.compensate:
            compensate(ctx, decisions)
        guard = proxy_guard(ctx, decisions) if self.config.proxy_guard else None
        spend = proxy_spend(ctx, decisions, guard) if self.config.proxy_spend else None
        return ({n: d.cand for n, d in decisions.items()},
                {n: d.reason for n, d in decisions.items()}, ctx.notes, guard, spend)

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
        assignment, reasons, notes, guard, spend = self._assign(problem)
        meta = {
            "rules": [name for name, _ in self.rules],
            "rule_config": {"sparsity": self.config.sparsity,
                            "max_block_elems": self.config.max_block_elems,
                            "tie_tolerance": self.config.tie_tolerance,
                            "compensate": self.config.compensate,
                            "proxy_guard": self.config.proxy_guard,
                            "guard_proxy_calls": self.config.guard_proxy_calls,
                            "proxy_spend": self.config.proxy_spend,
                            "first_layer_share": self.config.first_layer_share},
            "notes": notes}
        if guard is not None:
            meta["proxy_guard"] = guard
        if spend is not None:
            meta["proxy_spend"] = spend
        return problem.to_plan(assignment, self.name, reasons, meta=meta)

