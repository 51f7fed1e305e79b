"""The rule mapper's proxy-spend: with an accuracy floor and proxy above it, it trades the slack
for latency (best latency saved per proxy lost first, pure wins before that), never breaks the
floor or a bound that holds, says what it did per layer, only picks allowed candidates, and is
off without a floor or under a latency budget."""
import itertools
import re

import pytest

from mapping import (Budget, CallableProxy, Candidate, Problem, RuleMapper, TableProxy,
                     uniform_plans)
from mapping.rule import RuleContext, RuleConfig
from mapping_synthetic import (conv, default_retained, plan_assignment, resnet50_problem,
                               small_problem, table_problem)
from test_guarantee import ALL_SLOWER, _adversarial, _check

SPEND = re.compile(r"rule proxy-spend: (\S+(?: -> \S+)+), ([+-][\d.]+) us for proxy "
                   r"(~?)([+-]\S+?)(?:,|$)")
B4, B16 = "block4x1@0.80/native", "block16x1@0.80/native"


def _pred(plan):
    d = plan.meta["predicted"]
    return d["latency_us"], d["sparsity"], d["proxy"]


def _with_proxy(problem, proxy, budget=None):
    return Problem(problem.target, problem.layers,
                   {n: problem.allowed(n)[1:] for n in problem.names}, problem.costs, proxy,
                   budget or problem.budget, problem.min_speedup)


def _floor_problem(seed=0, weighted=True):
    """The synthetic ResNet-50 with sparsity >= 0.8 and proxy >= the proxy of the FASTEST
    uniform plan. weighted=False: the proxy is a plain mean over layers, as the engine's
    kept-weight-energy proxy is (there the rules alone are above the floor and, without
    proxy-spend, slower than the fastest uniform plan)."""
    def make(budget):
        p = resnet50_problem(budget, seed=seed)
        return p if weighted else _with_proxy(p, TableProxy(p.proxy_fn.retained))

    plans = uniform_plans(make(Budget(sparsity=0.8)))
    fastest = min(plans.values(), key=lambda q: q.meta["predicted"]["latency_us"])
    floor = fastest.meta["predicted"]["proxy"]
    return make(Budget(sparsity=0.8, min_proxy=floor)), floor


# -- the point of it: faster than uniform at the same sparsity and proxy -----------------------
@pytest.mark.parametrize("weighted", [True, False], ids=["params-weighted", "mean"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_rule_plan_beats_every_uniform_plan_it_matches(seed, weighted):
    p, floor = _floor_problem(seed, weighted)
    plan = RuleMapper().map(p)
    lat, sp, proxy = _pred(plan)
    assert plan.meta["feasible"], plan.meta["violations"]
    assert proxy >= floor - 1e-9 and sp >= 0.8 - 1e-9
    # Every uniform plan at most as sparse and as accurate as the rule plan is slower.
    matched = [q for q in uniform_plans(p).values()
               if _pred(q)[1] <= sp + 1e-12 and _pred(q)[2] <= proxy + 1e-12]
    assert matched
    assert all(lat < _pred(q)[0] for q in matched)
    # ... and faster than the fastest uniform plan of all.
    assert lat < min(_pred(q)[0] for q in uniform_plans(p).values())
    off = RuleMapper(proxy_spend=False).map(p)
    s = plan.meta["proxy_spend"]
    assert s["moves"] > 0 and lat < _pred(off)[0]
    assert s["before"] == pytest.approx(_pred(off)[2]) and s["after"] == pytest.approx(proxy)
    assert s["latency_saved_us"] == pytest.approx(_pred(off)[0] - lat)
    assert s["mode"] == "local table deltas" and s["proxy_calls"] <= 2
    assert any(n.startswith("rule proxy-spend: proxy ") for n in plan.meta["notes"])
    if not weighted:
        # The failure it fixes: the rules alone are above the floor, and slower than uniform.
        assert _pred(off)[2] > floor and plan.meta["proxy_guard"]["moves"] == 0
        assert _pred(off)[0] > min(_pred(q)[0] for q in uniform_plans(p).values())


def test_reasons_say_what_spend_did():
    p, _ = _floor_problem(weighted=False)
    before = plan_assignment(RuleMapper(proxy_spend=False).map(p))
    plan = RuleMapper().map(p)
    after = plan_assignment(plan)
    s = plan.meta["proxy_spend"]
    total_dp = total_dl = 0.0
    for c in plan:
        m = SPEND.search(c.reason)
        if c.layer not in s["layers_changed"]:
            assert m is None and after[c.layer] == before[c.layer]
            continue
        assert m, c.reason
        path = m.group(1).split(" -> ")
        assert path[0] == before[c.layer] and path[-1] == after[c.layer]
        dl = float(m.group(2))
        assert dl == pytest.approx(
            c.latency_us - p.layer_latency(c.layer, Candidate.from_key(before[c.layer])),
            abs=0.06)
        assert m.group(3) == ""                    # exact deltas: no "~"
        total_dp += float(m.group(4))
        total_dl += dl
        assert c.reason.startswith("rule ")          # the deciding rule's reason stays first
    assert total_dl == pytest.approx(-s["latency_saved_us"], abs=0.06 * len(s["layers_changed"]))
    assert total_dp == pytest.approx(s["after"] - s["before"], rel=0.01)


# -- exact small cases -------------------------------------------------------------------------
def _two_layer(budget, proxy=None):
    """first (nothing allowed: locked) + a, b; with tie_tolerance=0.5 the rules pick block4x1
    on both, block16x1 saves 10 us on a and 30 us on b."""
    specs = [conv("first", 32, 64, 1, 14, order=0), conv("a", 64, 64, 1, 14, order=1),
             conv("b", 64, 64, 1, 7, order=2)]
    lat = {"first": {"dense": 100.0},
           "a": {"dense": 200.0, B16: 40.0, B4: 50.0},
           "b": {"dense": 200.0, B16: 40.0, B4: 70.0}}
    return table_problem(specs, lat, budget, proxy=proxy)


def _spend(p, **kw):
    return RuleMapper(tie_tolerance=0.5, **kw).map(p)


def test_the_most_latency_per_proxy_goes_first_with_exact_numbers():
    probe = _spend(_two_layer(Budget(sparsity=0.5)))
    assert probe["a"].block == probe["b"].block == (4, 1)             # premise
    before = probe.meta["predicted"]["proxy"]
    loss = (default_retained(Candidate.from_key(B4))
            - default_retained(Candidate.from_key(B16))) / 3
    # Room for one move: both lose the same proxy, b saves three times as much.
    plan = _spend(_two_layer(Budget(sparsity=0.5, min_proxy=before - 1.5 * loss)))
    assert plan["a"].block == (4, 1) and plan["b"].block == (16, 1)
    assert plan["b"].reason.endswith(
        f" | rule proxy-spend: {B4} -> {B16}, -30.0 us for proxy {-loss:+.3g}")
    assert "proxy-spend" not in plan["a"].reason
    assert plan.meta["predicted"]["proxy"] == pytest.approx(before - loss)
    assert plan.meta["proxy_spend"]["latency_saved_us"] == pytest.approx(30.0)
    why = plan.meta["proxy_spend"]["why"]
    assert why.startswith("no move fits") and "would take the proxy below the floor" in why
    # Room for both.
    plan = _spend(_two_layer(Budget(sparsity=0.5, min_proxy=before - 2.5 * loss)))
    assert plan["a"].block == plan["b"].block == (16, 1) and plan.meta["feasible"]
    # Room for none: nothing changes.
    plan = _spend(_two_layer(Budget(sparsity=0.5, min_proxy=before - 0.5 * loss)))
    assert plan_assignment(plan) == plan_assignment(probe)
    assert plan.meta["proxy_spend"]["moves"] == 0


def test_a_pure_win_is_taken_without_slack():
    """a's block16x1 is faster AND (by this proxy) more accurate: taken at zero slack, b's
    block16x1, which loses proxy, is not."""
    keys = {"a": {B4: 0.5, B16: 0.6}, "b": {B4: 0.8, B16: 0.7}}
    probe = _spend(_two_layer(Budget(sparsity=0.5), TableProxy(keys)))
    before = probe.meta["predicted"]["proxy"]
    plan = _spend(_two_layer(Budget(sparsity=0.5, min_proxy=before), TableProxy(keys)))
    assert plan["a"].block == (16, 1) and plan["b"].block == (4, 1)
    assert plan.meta["predicted"]["proxy"] == pytest.approx(before + 0.1 / 3)
    assert "rule proxy-spend" in plan["a"].reason and plan.meta["feasible"]


def _sparsity_trade(budget):
    """first (locked) + a, b (b has twice a's weights). With the target 0.9 the rules pick
    block4x1@0.90 on both. a's block16x1@0.80 is faster and more accurate but gives up pruned
    weights; b's block4x1@0.96 is faster, covers them and loses proxy."""
    specs = [conv("first", 32, 64, 1, 14, order=0), conv("a", 64, 64, 1, 14, order=1),
             conv("b", 64, 128, 1, 14, order=2)]
    b9, b96 = "block4x1@0.90/native", "block4x1@0.96/native"
    lat = {"first": {"dense": 100.0},
           "a": {"dense": 200.0, b9: 60.0, B16: 40.0},
           "b": {"dense": 300.0, b9: 60.0, b96: 50.0}}
    return table_problem(specs, lat, budget)


def test_a_combined_step_keeps_the_sparsity():
    probe = _sparsity_trade(Budget())
    a = RuleMapper(sparsity=0.9).assign(probe)[0]
    assert a["a"].key == a["b"].key == "block4x1@0.90/native"          # premise
    sparsity, before = probe.sparsity(a), probe.proxy(a)
    move = dict(a, a=Candidate.from_key(B16))
    raise_ = dict(a, b=Candidate.from_key("block4x1@0.96/native"))
    both = dict(move, b=raise_["b"])
    d_move, d_raise = probe.proxy(move) - before, probe.proxy(raise_) - before
    d_both = probe.proxy(both) - before
    assert d_move > 0 > d_both > d_raise and probe.sparsity(move) < sparsity   # premise
    # Slack for the pair, not for b's raise alone; a's move alone breaks the sparsity budget.
    floor = before + (d_both + d_raise) / 2
    plan = RuleMapper(sparsity=0.9).map(_sparsity_trade(Budget(sparsity=sparsity,
                                                                min_proxy=floor)))
    assert plan.meta["feasible"], plan.meta["violations"]
    assert plan_assignment(plan) == {n: c.key for n, c in both.items()}
    assert plan.meta["predicted"]["sparsity"] >= sparsity - 1e-12
    assert plan.meta["predicted"]["proxy"] == pytest.approx(before + d_both)
    assert plan.meta["proxy_spend"]["combined_steps"] == 1
    assert "-20.0 us" in plan["a"].reason and "sparsity kept by raising b" in plan["a"].reason
    assert "raised to keep the sparsity budget for a" in plan["b"].reason


def test_an_exchange_spends_proxy_bought_cheaply_elsewhere():
    """a's sparse kernel barely beats dense and loses much proxy: back to dense gains it for
    +15 us, and b spends it on block16x1 for -20 us (b's move alone does not fit)."""
    specs = [conv("first", 32, 64, 1, 14, order=0), conv("a", 64, 64, 1, 14, order=1),
             conv("b", 64, 64, 1, 7, order=2)]
    lat = {"first": {"dense": 100.0}, "a": {"dense": 110.0, B4: 95.0},
           "b": {"dense": 200.0, B4: 50.0, B16: 30.0}}
    proxy = TableProxy({"a": {B4: 0.5}, "b": {B4: 0.8, B16: 0.6}})
    before = (1.0 + 0.5 + 0.8) / 3
    plan = _spend(table_problem(specs, lat, Budget(min_proxy=before - 0.15 / 3), proxy=proxy))
    assert plan["a"].scheme == "dense" and plan["b"].block == (16, 1)
    assert plan["a"].reason.endswith(
        f"rule proxy-spend: {B4} -> dense, +15.0 us for proxy {0.5 / 3:+.3g}, the proxy it "
        f"gains pays for b")
    assert plan["b"].reason.endswith(
        f"rule proxy-spend: {B4} -> {B16}, -20.0 us for proxy {-0.2 / 3:+.3g}, paid for by the "
        f"proxy a gains")
    assert plan.meta["predicted"]["latency_us"] == pytest.approx(100 + 110 + 30)
    assert plan.meta["proxy_spend"]["combined_steps"] == 1 and plan.meta["feasible"]


# -- the floor and the other bounds ------------------------------------------------------------
def _interacting(problem):
    """A proxy that is not a sum over layers: pruning many layers hard costs extra, so the
    one-layer probes are too optimistic about later moves."""
    table = problem.proxy_fn

    def score(a):
        hard = sum(1 for c in a.values() if c.sparsity >= 0.9 - 1e-9) / len(a)
        return table.score(a) - 0.3 * hard ** 2

    return CallableProxy(score)


@pytest.mark.parametrize("kind", ["table", "callable", "interacting"])
def test_the_floor_is_never_broken(kind):
    for seed, sparsity, slack in itertools.product(range(4), (0.5, 0.7),
                                                   (0.0, 0.01, 0.05, 0.3)):
        base = small_problem(Budget(sparsity=sparsity), seed=seed)
        proxy = {"table": base.proxy_fn, "callable": CallableProxy(base.proxy_fn.score),
                 "interacting": _interacting(base)}[kind]
        base = _with_proxy(base, proxy)
        off = RuleMapper(proxy_spend=False).map(base)
        floor = _pred(off)[2] - slack
        p = _with_proxy(base, proxy, Budget(sparsity=sparsity, min_proxy=floor))
        plan = RuleMapper().map(p)
        lat, sp, proxy_value = _pred(plan)
        assert proxy_value >= floor - 1e-9, (seed, sparsity, slack)
        assert plan.meta["feasible"], plan.meta["violations"]
        assert sp >= sparsity - 1e-9 and lat <= _pred(off)[0] + 1e-9
        if slack == 0.0 and kind == "table":
            assert proxy_value >= _pred(off)[2] - 1e-12      # pure wins only


def test_a_held_flops_bound_is_never_broken():
    p, floor = _floor_problem(weighted=False)
    off = RuleMapper(proxy_spend=False).map(p)
    flops = off.meta["predicted"]["flops"]
    budget = Budget(sparsity=0.8, min_proxy=floor, flops=flops)
    plan = RuleMapper().map(_with_proxy(p, p.proxy_fn, budget))
    assert plan.meta["feasible"] and plan.meta["predicted"]["flops"] <= flops * (1 + 1e-9)
    assert plan.meta["proxy_spend"]["moves"] > 0


def test_a_broken_sparsity_bound_is_not_made_worse():
    """Rules at 0.80 without compensation miss sparsity 0.95: spend may not lower it."""
    rules = RuleMapper(sparsity=0.8, compensate=False, proxy_spend=False)
    floor = rules.map(resnet50_problem(Budget(sparsity=0.95))).meta["predicted"]["proxy"] - 0.05
    p = resnet50_problem(Budget(sparsity=0.95, min_proxy=floor))
    off = rules.map(p)
    plan = RuleMapper(sparsity=0.8, compensate=False).map(p)
    assert _pred(off)[1] < 0.95                                       # premise: broken
    assert _pred(plan)[1] >= _pred(off)[1] - 1e-12 and _pred(plan)[2] >= floor - 1e-9
    assert _pred(plan)[0] < _pred(off)[0]


# -- the guarantee -----------------------------------------------------------------------------
@pytest.mark.parametrize("proxy,floor", [("table", "uniform"), ("table", "slack"),
                                         ("callable", "slack")])
def test_spend_never_picks_anything_slower_than_dense(proxy, floor):
    """floor "uniform": the fastest uniform plan's proxy (the guard works first, then spend);
    "slack": 0.05 under the rules' own proxy (spend alone)."""
    probe, _ = _adversarial(Budget(sparsity=0.7))
    if floor == "uniform":
        plans = uniform_plans(probe)
        fastest = min(plans.values(), key=lambda q: q.meta["predicted"]["latency_us"])
        value = fastest.meta["predicted"]["proxy"]
    else:
        value = RuleMapper(proxy_spend=False).map(probe).meta["predicted"]["proxy"] - 0.05
    problem, _ = _adversarial(Budget(sparsity=0.7, min_proxy=value))
    if proxy == "callable":
        problem = _with_proxy(problem, CallableProxy(problem.proxy_fn.score))
    plan = RuleMapper().map(problem)
    _check(problem, plan)
    s = plan.meta["proxy_spend"]
    assert s["layers_changed"], "proxy-spend should have had work"
    assert plan[ALL_SLOWER].scheme == "dense" and plan.meta["feasible"]
    ctx = RuleContext(problem, RuleConfig(), 0.7)
    for c in plan:
        if c.reason.startswith(("rule first-layer", "rule grouped", "rule not-faster")):
            assert "proxy-spend" not in c.reason and c.scheme == "dense"
        if c.layer in s["layers_changed"] and c.scheme != "dense":
            # Within the accuracy guard, like every rule.
            assert any(k.block == c.block and k.sparsity == c.sparsity
                       and k.scheme == c.scheme for k in ctx.family(problem.spec(c.layer)))


# -- off when it does not apply ----------------------------------------------------------------
@pytest.mark.parametrize("budget", [Budget(sparsity=0.8), Budget(latency_us=3500.0),
                                    Budget(latency_us=3500.0, min_proxy=0.3)],
                         ids=["no-floor", "latency", "latency+floor"])
def test_off_without_a_floor_or_under_a_latency_budget(budget):
    base = resnet50_problem(budget)
    plan, plain = RuleMapper().map(base), RuleMapper(proxy_spend=False).map(base)
    assert "proxy_spend" not in plan.meta
    assert [c.to_dict() for c in plan] == [c.to_dict() for c in plain]
    assert plan.meta["notes"] == plain.meta["notes"]
    assert not any("proxy-spend" in c.reason for c in plan)
    if budget.min_proxy is None:
        proxy = CallableProxy(base.proxy_fn.score)
        RuleMapper().assign(_with_proxy(base, proxy))
        assert proxy.calls == 0                   # the proxy is not even looked at


def test_spend_can_be_switched_off():
    p, _ = _floor_problem(weighted=False)
    plan = RuleMapper(proxy_spend=False).map(p)
    assert "proxy_spend" not in plan.meta and plan.meta["rule_config"]["proxy_spend"] is False
    assert RuleMapper().map(p).meta["rule_config"]["proxy_spend"] is True


# -- speed -------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [True, False], ids=["params-weighted", "mean"])
def test_maps_resnet50(weighted):
    p, _ = _floor_problem(weighted=weighted)
    assert len(p.layers) == 54
    plan = RuleMapper().map(p)
    assert plan.meta["feasible"] and plan.meta["proxy_spend"]["moves"] > 0
    # Also with the first layer open and bigger blocks allowed (more moves to weigh).
    RuleMapper(first_layer_share=0.0, max_block_elems=32).map(p)
