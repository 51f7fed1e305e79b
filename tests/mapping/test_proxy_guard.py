"""The rule mapper's proxy-guard: it honours budget.min_proxy (the accuracy floor) without
giving up the sparsity budget, says what it did per layer, flags a floor it cannot reach, stays
off without a floor, and keeps the never-slower-than-dense guarantee."""
import itertools
import re

import pytest

from mapping import (DENSE, Budget, CallableProxy, Candidate, InfeasibleBudget, Problem,
                     RuleConfig, RuleMapper, TableProxy, require_feasible, uniform_plans)
from mapping.proxy_delta import LOCAL, PROBE, ProxyDeltas
from mapping.rule import RuleContext
from mapping_synthetic import (conv, default_retained, plan_assignment, resnet50_problem,
                               small_problem, table_problem)
from test_guarantee import ALL_SLOWER, _adversarial, _check
from test_rule import _rules_problem

REF = "block4x1@0.80/native"
GUARD = re.compile(r"rule proxy-guard: (\S+(?: -> \S+)+), proxy ~?([+-]\S+) for "
                   r"([+-][\d.]+) us")


def _floor_problem(seed=0, **kw):
    """The synthetic ResNet-50 as engine.pipeline.automap builds it: sparsity >= 0.8 and proxy >= the
    uniform block4x1@0.80 plan's proxy."""
    ref = uniform_plans(resnet50_problem(Budget(sparsity=0.8), seed=seed))[REF]
    floor = ref.meta["predicted"]["proxy"]
    return resnet50_problem(Budget(sparsity=0.8, min_proxy=floor, **kw), seed=seed), floor


def _with_proxy(problem, proxy, budget=None):
    return Problem(problem.target, problem.layers,
                   {n: problem.allowed(n)[1:] for n in problem.names}, problem.costs, proxy,
                   budget or problem.budget, problem.min_speedup)


# -- meeting the floor -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_guard_raises_the_proxy_to_the_floor_and_keeps_the_sparsity(seed):
    p, floor = _floor_problem(seed)
    off = RuleMapper(proxy_guard=False).map(p)
    assert off.meta["predicted"]["proxy"] < floor, "premise: the rules alone miss the floor"
    plan = RuleMapper(proxy_spend=False).map(p)      # the guard alone (proxy-spend follows it)
    pred = plan.meta["predicted"]
    assert plan.meta["feasible"], plan.meta["violations"]
    assert pred["proxy"] >= floor and pred["sparsity"] >= 0.8 - 1e-9
    g = plan.meta["proxy_guard"]
    assert g["met"] and g["before"] == pytest.approx(off.meta["predicted"]["proxy"])
    assert g["after"] == pytest.approx(pred["proxy"]) and g["mode"] == "local table deltas"
    assert g["latency_added_us"] == pytest.approx(pred["latency_us"]
                                                  - off.meta["predicted"]["latency_us"])
    assert any(n.startswith("rule proxy-guard: floor met") for n in plan.meta["notes"])
    # A TableProxy's deltas are local: the guard evaluates it in full only at the start and
    # the end of each of its two runs.
    assert g["proxy_calls"] <= 4
    # At least as sparse and as accurate as the uniform reference, and faster.
    ref = uniform_plans(p)[REF].meta["predicted"]
    assert pred["latency_us"] < ref["latency_us"]
    # proxy-spend then spends what the guard's last step overshot: still feasible, faster.
    spent = RuleMapper().map(p)
    assert spent.meta["feasible"] and spent.meta["predicted"]["proxy"] >= floor - 1e-9
    assert spent.meta["predicted"]["latency_us"] <= pred["latency_us"]
    assert spent.meta["proxy_spend"]["before"] == pytest.approx(pred["proxy"])


def test_reasons_say_what_the_guard_did():
    p, _ = _floor_problem()
    off = plan_assignment(RuleMapper(proxy_guard=False).map(p))
    plan = RuleMapper(proxy_spend=False).map(p)
    changed = plan.meta["proxy_guard"]["layers_changed"]
    assert changed
    for c in plan:
        m = GUARD.search(c.reason)
        if c.layer not in changed:
            assert m is None and plan_assignment(plan)[c.layer] == off[c.layer]
            continue
        assert m, c.reason
        path = m.group(1).split(" -> ")
        # The path starts at the rules' choice and ends at the plan's.
        assert path[0] == off[c.layer] and path[-1] == plan_assignment(plan)[c.layer]
        assert float(m.group(3)) == pytest.approx(
            c.latency_us - p.layer_latency(c.layer, Candidate.from_key(off[c.layer])),
            abs=0.06)
        assert c.reason.startswith("rule ")          # the deciding rule's reason stays first


def _two_layer(budget, lat_b4=70.0):
    """first (locked) + a, b: same shape, the rules pick the fast block16x1 on both; block4x1
    is more accurate and costs a +10 us, b +lat_b4-40 us."""
    # Different input sizes: the cost table is keyed by shape.
    specs = [conv("first", 64, 64, 1, 14, order=0), conv("a", 64, 64, 1, 14, order=1),
             conv("b", 64, 64, 1, 7, order=2)]
    b16, b4 = "block16x1@0.80/native", "block4x1@0.80/native"
    lat = {"first": {"dense": 100.0},
           "a": {"dense": 200.0, b16: 40.0, b4: 50.0},
           "b": {"dense": 200.0, b16: 40.0, b4: lat_b4}}
    return table_problem(specs, lat, budget)


def test_the_cheapest_proxy_per_us_goes_first_with_exact_numbers():
    probe = _two_layer(Budget(sparsity=0.5))
    rules = RuleMapper(proxy_guard=False).map(probe)
    assert rules["a"].block == (16, 1) and rules["b"].block == (16, 1)
    before = rules.meta["predicted"]["proxy"]
    gain = (default_retained(Candidate.from_key("block4x1@0.80/native"))
            - default_retained(Candidate.from_key("block16x1@0.80/native"))) / 3
    # Half of one layer's gain: only the cheaper layer (a, +10 us) moves.
    plan = RuleMapper().map(_two_layer(Budget(sparsity=0.5, min_proxy=before + gain / 2)))
    assert plan["a"].block == (4, 1) and plan["b"].block == (16, 1)
    assert plan["a"].reason.endswith(
        f" | rule proxy-guard: block16x1@0.80/native -> block4x1@0.80/native, "
        f"proxy {gain:+.3g} for +10.0 us")
    assert plan.meta["predicted"]["proxy"] == pytest.approx(before + gain)
    # One and a half: both move.
    plan = RuleMapper().map(_two_layer(Budget(sparsity=0.5, min_proxy=before + 1.5 * gain)))
    assert plan["a"].block == plan["b"].block == (4, 1) and plan.meta["feasible"]


def _trade(budget):
    """first (locked) + a, b with one level of sparsity each way: a is sensitive (0.80 keeps
    0.50, 0.70 keeps 0.90), b is not (0.90 keeps 0.80 vs 0.85 at 0.80)."""
    specs = [conv("first", 64, 64, 1, 14, order=0), conv("a", 64, 64, 1, 14, order=1),
             conv("b", 64, 64, 1, 7, order=2)]
    keys = {s: f"block4x1@{s:.2f}/native" for s in (0.7, 0.8, 0.9)}
    lat = {"first": {"dense": 100.0},
           "a": {"dense": 200.0, keys[0.7]: 60.0, keys[0.8]: 50.0, keys[0.9]: 45.0},
           "b": {"dense": 200.0, keys[0.7]: 60.0, keys[0.8]: 50.0, keys[0.9]: 45.0}}
    proxy = TableProxy({"a": {keys[0.7]: 0.9, keys[0.8]: 0.5, keys[0.9]: 0.45},
                        "b": {keys[0.7]: 0.9, keys[0.8]: 0.85, keys[0.9]: 0.8}})
    return table_problem(specs, lat, budget, proxy=proxy)


def test_a_lower_level_is_paid_for_with_sparsity_raised_elsewhere():
    probe = _trade(Budget())
    at8 = {"first": DENSE, "a": Candidate.from_key("block4x1@0.80/native"),
           "b": Candidate.from_key("block4x1@0.80/native")}
    sparsity, before = probe.sparsity(at8), probe.proxy(at8)
    p = _trade(Budget(sparsity=sparsity, min_proxy=before + 0.05))
    assert RuleMapper(proxy_guard=False).assign(p)[0] == at8       # premise
    plan = RuleMapper().map(p)
    assert plan.meta["feasible"], plan.meta["violations"]
    # a alone to 0.70 would break the sparsity budget: b goes to 0.90 in the same step.
    assert plan["a"].sparsity == 0.7 and plan["b"].sparsity == 0.9
    assert plan.meta["predicted"]["sparsity"] >= sparsity - 1e-12
    assert "sparsity kept by raising b" in plan["a"].reason
    assert "raised to keep the sparsity budget for a" in plan["b"].reason
    assert plan.meta["predicted"]["proxy"] == pytest.approx(before + (0.4 - 0.05) / 3)


# -- floors it cannot reach --------------------------------------------------------------------
def test_an_unreachable_floor_is_flagged_with_why():
    p = resnet50_problem(Budget(sparsity=0.8, min_proxy=0.9))
    plan = RuleMapper().map(p)
    g = plan.meta["proxy_guard"]
    assert not plan.meta["feasible"] and not g["met"]
    assert any(v.startswith("proxy") for v in plan.meta["violations"])
    assert g["why"].startswith("unreachable: no assignment of allowed, guarded candidates")
    assert plan.meta["predicted"]["proxy"] <= g["bound"] < 0.9
    assert any("cannot reach proxy >= 0.9000: unreachable" in n for n in plan.meta["notes"])
    # It did what it could without giving up the sparsity budget.
    assert plan.meta["predicted"]["sparsity"] >= 0.8 - 1e-9
    assert g["after"] > g["before"]
    with pytest.raises(InfeasibleBudget, match="proxy"):
        require_feasible(plan)


def test_the_lp_bound_is_a_true_bound():
    """Brute force over the open layers' allowed, guarded candidates: nothing with the budget
    sparsity beats the bound the guard reports."""
    for seed, sparsity in itertools.product(range(3), (0.5, 0.7)):
        p = small_problem(Budget(sparsity=sparsity, min_proxy=0.99), seed=seed)
        plan = RuleMapper().map(p)
        bound = plan.meta["proxy_guard"]["bound"]
        ctx = RuleContext(p, RuleConfig(), sparsity)
        best = max(p.proxy(a) for a in (dict(zip(p.names, combo)) for combo in
                                         itertools.product(*([DENSE] + ctx.family(s)
                                                             for s in p.layers)))
                   if p.sparsity(a) >= sparsity - 1e-9)
        assert best <= bound + 1e-12
        assert plan.meta["predicted"]["proxy"] <= best + 1e-12


def test_a_held_latency_bound_is_never_broken():
    probe = _two_layer(Budget(sparsity=0.5))
    rules = RuleMapper(proxy_guard=False).map(probe).meta["predicted"]
    budget = Budget(sparsity=0.5, latency_us=rules["latency_us"] + 5.0,
                    min_proxy=rules["proxy"] + 0.01)
    plan = RuleMapper().map(_two_layer(budget))
    assert plan.meta["predicted"]["latency_us"] == pytest.approx(rules["latency_us"])
    g = plan.meta["proxy_guard"]
    assert not g["met"] and "latency <= " in g["why"]
    assert [v for v in plan.meta["violations"] if not v.startswith("proxy")] == []


def test_a_broken_bound_is_not_made_worse():
    """Compensation cannot reach sparsity 0.95: the guard must not lower it further."""
    p = resnet50_problem(Budget(sparsity=0.95, min_proxy=0.9))
    off = RuleMapper(proxy_guard=False).map(p).meta["predicted"]
    plan = RuleMapper().map(p)
    assert plan.meta["predicted"]["sparsity"] >= off["sparsity"] - 1e-12
    assert plan.meta["predicted"]["proxy"] >= off["proxy"]
    why = plan.meta["proxy_guard"]["why"]
    assert why.startswith("unreachable") and "sparsity 0.9500 is out of reach itself" in why
    assert plan.meta["proxy_guard"]["bound"] >= plan.meta["predicted"]["proxy"] - 1e-12


# -- other proxies -----------------------------------------------------------------------------
def test_any_proxy_works_through_full_evaluations_within_the_cap():
    base, floor = _floor_problem()
    proxy = CallableProxy(base.proxy_fn.score)
    p = _with_proxy(base, proxy)
    plan = RuleMapper(guard_proxy_calls=600).map(p)
    g, s = plan.meta["proxy_guard"], plan.meta["proxy_spend"]
    assert g["mode"].startswith("full evaluations") and g["met"], g["why"]
    assert s["mode"] == g["mode"]
    assert plan.meta["feasible"] and plan.meta["predicted"]["sparsity"] >= 0.8 - 1e-9
    # Each global rule has its own allowance; + 1 for to_plan's evaluation.
    assert g["proxy_calls"] <= 600 and s["proxy_calls"] <= 600
    assert proxy.calls <= g["proxy_calls"] + s["proxy_calls"] + 1
    assert all("proxy ~" in c.reason for c in plan
               if c.layer in g["layers_changed"] + s["layers_changed"])


def test_the_evaluation_cap_is_honoured_and_reported():
    base, _ = _floor_problem()
    proxy = CallableProxy(base.proxy_fn.score, cache=False)
    p = _with_proxy(base, proxy)
    plan = RuleMapper(guard_proxy_calls=30).map(p)
    g = plan.meta["proxy_guard"]
    assert g["proxy_calls"] <= 30 and proxy.calls <= 30 + 1
    assert not g["met"] and "proxy-evaluation cap" in g["why"]
    assert not plan.meta["feasible"]
    # Below the floor there is nothing to spend, and proxy-spend does not evaluate again.
    assert plan.meta["proxy_spend"]["moves"] == 0
    assert plan.meta["proxy_spend"]["proxy_calls"] == 0


def test_a_table_proxy_subclass_with_its_own_score_is_not_assumed_local():
    class Shifted(TableProxy):
        def score(self, assignment):
            return super().score(assignment) - 0.01

    base, _ = _floor_problem()
    shifted = Shifted(base.proxy_fn.retained, base.proxy_fn.weights)
    p = _with_proxy(base, shifted)
    assert ProxyDeltas(p, p.dense_assignment(), 10).mode == PROBE
    assert ProxyDeltas(base, base.dense_assignment(), 10).mode == LOCAL


def test_local_deltas_equal_full_evaluations():
    p, _ = _floor_problem()
    a = RuleMapper(proxy_guard=False).assign(p)[0]
    d = ProxyDeltas(p, a, 10)
    for name in p.names[::7]:
        for cand in p.allowed(name)[::5]:
            b = dict(a)
            b[name] = cand
            assert d.delta(a, name, cand) == pytest.approx(p.proxy(b) - p.proxy(a), abs=1e-12)


# -- off without a floor -----------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: resnet50_problem(Budget(sparsity=0.8)),
                                  lambda: resnet50_problem(Budget(latency_us=3500.0)),
                                  lambda: _rules_problem()], ids=["sparsity", "latency", "rules"])
def test_without_a_floor_the_guard_is_off(make):
    base = make()
    proxy = CallableProxy(base.proxy_fn.score)
    p = _with_proxy(base, proxy)
    RuleMapper().assign(p)
    assert proxy.calls == 0                   # the proxy is not even looked at
    plan, plain = RuleMapper().map(base), RuleMapper(proxy_guard=False).map(base)
    assert "proxy_guard" not in plan.meta
    assert [c.to_dict() for c in plan] == [c.to_dict() for c in plain]
    assert plan.meta["notes"] == plain.meta["notes"]
    assert not any("proxy-guard" in c.reason for c in plan)


def test_a_floor_already_met_changes_nothing():
    base = resnet50_problem(Budget(sparsity=0.8))
    plain = RuleMapper().map(base)
    p = resnet50_problem(Budget(sparsity=0.8, min_proxy=plain.meta["predicted"]["proxy"]))
    plan = RuleMapper(proxy_spend=False).map(p)
    assert [c.to_dict() for c in plan] == [c.to_dict() for c in plain]
    assert plan.meta["proxy_guard"]["moves"] == 0 and plan.meta["feasible"]
    assert any("nothing to do" in n for n in plan.meta["notes"])
    # With no slack, proxy-spend only takes moves that lose no proxy (pure wins).
    spent = RuleMapper().map(p)
    assert spent.meta["feasible"]
    assert spent.meta["predicted"]["proxy"] >= plain.meta["predicted"]["proxy"] - 1e-12
    assert spent.meta["predicted"]["latency_us"] <= plain.meta["predicted"]["latency_us"]


# -- the guarantee and speed -------------------------------------------------------------------
@pytest.mark.parametrize("proxy", ["table", "callable"])
def test_the_guard_never_picks_anything_slower_than_dense(proxy):
    probe, _ = _adversarial(Budget(sparsity=0.7))
    floor = uniform_plans(probe)["block4x1@0.70/native"].meta["predicted"]["proxy"]
    problem, _ = _adversarial(Budget(sparsity=0.7, min_proxy=floor))
    if proxy == "callable":
        problem = _with_proxy(problem, CallableProxy(problem.proxy_fn.score))
    plan = RuleMapper().map(problem)
    _check(problem, plan)
    assert plan.meta["proxy_guard"]["layers_changed"], "the guard should have had work"
    assert plan[ALL_SLOWER].scheme == "dense"
    # Locked layers (first-layer, grouped, not-faster) are never touched.
    for c in plan:
        if c.reason.startswith(("rule first-layer", "rule grouped", "rule not-faster")):
            assert "proxy-guard" not in c.reason and c.scheme == "dense"


def test_guard_on_resnet50_meets_the_floor_or_stops():
    """The guard on a real-size problem: the floor met, and (floor out of reach) a plan that
    says why. Its speed is a benchmark's business (`python -m engine bench mapping`), not a
    timed assertion here."""
    p, _ = _floor_problem()
    plan = RuleMapper().map(p)
    assert plan.meta["feasible"]
    out = RuleMapper().map(resnet50_problem(Budget(sparsity=0.8, min_proxy=0.9)))
    assert not out.meta["feasible"] and out.meta["violations"]


def test_guard_config_is_validated():
    with pytest.raises(ValueError, match="guard_proxy_calls"):
        RuleConfig(guard_proxy_calls=0)
    assert RuleMapper().map(_rules_problem()).meta["rule_config"]["proxy_guard"] is True
