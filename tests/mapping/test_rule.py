"""mapping.RuleMapper: every rule decides with its reason; the compensation rule; speed."""

import pytest

from mapping import Budget, Candidate, RuleConfig, RuleMapper
from mapping_synthetic import conv, linear, resnet50_problem, table_problem

B41, B81, B161, B84 = (f"block{b}@0.80/native" for b in ("4x1", "8x1", "16x1", "8x4"))
PAT = "pattern@0.80/native"


def _rules_problem(budget=None):
    specs = [
        conv("conv1", 3, 64, 7, 56, 2, order=0),
        conv("dw", 64, 64, 3, 28, order=1, groups=64),
        conv("slow", 64, 128, 1, 14, order=2),
        conv("p3", 64, 64, 3, 28, order=3),
        conv("b3", 128, 128, 3, 14, order=4),
        conv("tie", 256, 64, 1, 14, order=5),
        conv("clear", 256, 128, 1, 14, order=6),
        conv("low", 128, 256, 1, 14, order=7),
        linear("fc", 2048, 1000, order=8),
    ]
    lat = {
        "conv1": {"dense": 100.0, B41: 20.0},
        "dw": {"dense": 50.0, B41: 10.0},
        "slow": {"dense": 100.0, B41: 95.0, B81: 120.0},
        "p3": {"dense": 300.0, PAT: 60.0, B41: 100.0, B81: 90.0},
        "b3": {"dense": 300.0, PAT: 100.0, B41: 80.0, B81: 75.0},
        "tie": {"dense": 300.0, B41: 100.0, B81: 98.0, B161: 150.0, B84: 60.0},
        "clear": {"dense": 300.0, B41: 150.0, B81: 100.0},
        "low": {"dense": 300.0, "block4x1@0.50/native": 200.0, B41: 290.0},
        "fc": {"dense": 100.0, B41: 40.0, B161: 30.0},
    }
    return table_problem(specs, lat, budget or Budget(sparsity=0.8))


@pytest.fixture(scope="module")
def plan():
    return RuleMapper(compensate=False).map(_rules_problem())


def _share(p, name="conv1"):
    return p.dense_latency(name) / p.dense_latency_total


def test_an_expensive_first_layer_goes_through_the_rules(plan):
    p = _rules_problem()
    share = _share(p)
    assert share >= RuleConfig().first_layer_share        # premise: 100 of 1850 us
    c = plan["conv1"]
    assert c.scheme == "block" and c.reason.startswith("rule kxk-block: 7x7 conv -> ")
    assert c.reason.endswith(f" | first layer not kept dense: {share:.1%} of the dense latency "
                             f"(>= 3.0%, RuleConfig.first_layer_share)")


def test_a_cheap_first_layer_stays_dense():
    p = _rules_problem()
    share = _share(p)
    for limit in (share * 1.01, 1.0):     # just above its share, and 1.0 = always (old rule)
        c = RuleMapper(compensate=False, first_layer_share=limit).map(p)["conv1"]
        assert c.scheme == "dense" and c.reason.startswith(
            f"rule first-layer: the first layer (order 0) stays dense: {share:.1%} of the "
            f"dense latency (< {limit:.1%})")
        assert "pruning the input layer costs accuracy" in c.reason
    c = RuleMapper(compensate=False, first_layer_share=share * 0.99).map(p)["conv1"]
    assert c.scheme == "block" and "first layer not kept dense" in c.reason


def test_first_layer_share_on_resnet50():
    """The synthetic stem is just under 3% of the dense latency: dense by default, pruned (and
    open to the global rules) below that share."""
    p = resnet50_problem(Budget(sparsity=0.8))
    share = _share(p)
    assert share < 0.03
    assert RuleMapper().map(p)["conv1"].scheme == "dense"
    plan = RuleMapper(first_layer_share=share / 2).map(p)
    c = plan["conv1"]
    assert c.scheme == "block" and c.reason.startswith("rule kxk-block")
    assert f"first layer not kept dense: {share:.1%}" in c.reason
    assert c.latency_us < p.dense_latency("conv1") and plan.meta["feasible"]
    assert plan.meta["predicted"]["latency_us"] < RuleMapper().map(p).meta["predicted"][
        "latency_us"]


def test_depthwise_stays_dense(plan):
    c = plan["dw"]
    assert c.scheme == "dense" and c.reason.startswith("rule grouped: depthwise")


def test_nothing_faster_stays_dense_with_the_measurements(plan):
    c = plan["slow"]
    assert c.scheme == "dense" and c.reason.startswith("rule not-faster")
    assert "measured 1.05x vs dense" in c.reason and "measured 0.83x" in c.reason


def test_3x3_takes_the_faster_of_pattern_and_block(plan):
    p = _rules_problem()
    for name in ("p3", "b3"):
        c = plan[name]
        assert c.reason.startswith("rule 3x3")
        # Whichever measured faster, pattern or the best block, is the choice.
        fastest = min((Candidate.from_key(k) for k in (PAT, B41, B81)),
                      key=lambda k: p.layer_latency(name, k))
        assert c.latency_us == p.layer_latency(name, fastest)
        assert " vs " in c.reason
    assert plan["p3"].scheme == "pattern" and plan["b3"].scheme == "block"


def test_block_rule_prefers_the_smaller_block_within_tolerance_and_guards(plan):
    c = plan["tie"]
    # 8x1 is 2% faster than 4x1: within the 3% tolerance, so the smaller 4x1 wins; 8x4 is
    # fastest but has 32 > 16 elements.
    assert c.block == (4, 1) and c.reason.startswith("rule 1x1-block")
    assert "smaller block preferred" in c.reason and "accuracy guard" in c.reason
    assert plan["clear"].block == (8, 1)        # 50% faster than 4x1: a clear win


def test_guard_and_tolerance_are_configurable():
    p = _rules_problem()
    loose = RuleMapper(compensate=False, max_block_elems=32, tie_tolerance=0.0).map(p)
    assert loose["tie"].block == (8, 4)
    exact = RuleMapper(compensate=False, tie_tolerance=0.0).map(p)
    assert exact["tie"].block == (8, 1)


def test_linear_gets_a_block(plan):
    c = plan["fc"]
    assert c.scheme == "block" and c.block == (16, 1)
    assert c.reason.startswith("rule linear-block")


def test_nothing_at_the_target_sparsity_stays_dense(plan):
    c = plan["low"]
    assert c.scheme == "dense" and c.reason.startswith("rule no-target")
    assert "allowed levels: 0.50" in c.reason


def test_every_layer_has_a_reason_naming_its_rule(plan):
    assert all(c.reason.startswith("rule ") for c in plan)
    assert plan.meta["mapper"] == "rule" and plan.meta["rules"][0] == "first-layer"


def _compensation_problem(budget):
    """Run with first_layer_share=1.0: "first" stands for a layer the rules keep dense (it is
    20% of the dense latency, so by default it would be pruned like the others)."""
    specs = [conv("first", 64, 256, 1, 28, order=0),
             conv("x", 256, 256, 1, 14, order=1), conv("y", 256, 256, 1, 7, order=2)]
    x9, y9 = "block4x1@0.90/native", "block4x1@0.90/native"
    lat = {"first": {"dense": 100.0, B41: 30.0},
           "x": {"dense": 200.0, B41: 60.0, x9: 55.0},
           "y": {"dense": 200.0, B41: 60.0, y9: 35.0}}
    return table_problem(specs, lat, budget)


def _sparsity_with_one_raise(p):
    """A budget between 'x and y at 0.80' and 'one of them at 0.90' (first layer dense)."""
    at8 = p.sparsity({"first": Candidate(), "x": Candidate.from_key(B41),
                      "y": Candidate.from_key(B41)})
    one9 = at8 + 0.1 * p.spec("x").params / p.total_params
    return (at8 + one9) / 2


def test_compensation_raises_the_cheapest_layer_until_met():
    probe = _compensation_problem(Budget())
    budget = Budget(sparsity=_sparsity_with_one_raise(probe))
    p = _compensation_problem(budget)
    plan = RuleMapper(first_layer_share=1.0).map(p)
    assert plan.meta["feasible"], plan.meta["violations"]
    assert plan["first"].scheme == "dense"            # locked by the first-layer rule
    # y gains more latency per extra pruned weight than x (same params), so y is raised.
    gain = {n: (p.layer_latency(n, Candidate.from_key("block4x1@0.90/native"))
                - p.layer_latency(n, Candidate.from_key(B41))) for n in ("x", "y")}
    cheapest = min(gain, key=gain.get)
    other = ({"x", "y"} - {cheapest}).pop()
    assert plan[cheapest].sparsity == 0.9 and "rule compensation" in plan[cheapest].reason
    assert plan[other].sparsity == 0.8 and "compensation" not in plan[other].reason


def test_compensation_says_when_it_cannot():
    p = _compensation_problem(Budget(sparsity=0.95))
    plan = RuleMapper(first_layer_share=1.0).map(p)
    assert not plan.meta["feasible"]
    assert any("cannot meet the budget" in n for n in plan.meta["notes"])
    assert any("sparsity" in v for v in plan.meta["violations"])
    # Everything that could be raised was raised.
    assert plan["x"].sparsity == 0.9 and plan["y"].sparsity == 0.9


def test_compensation_meets_a_latency_budget():
    probe = _compensation_problem(Budget())
    at8 = sum(probe.layer_latency(n, Candidate.from_key(B41)) for n in ("x", "y")) + 100.0
    p = _compensation_problem(Budget(latency_us=at8 - 10.0))
    plan = RuleMapper(sparsity=0.8, first_layer_share=1.0).map(p)
    assert plan.meta["feasible"], plan.meta["violations"]
    assert any("rule compensation" in c.reason for c in plan)


def test_without_compensation_the_gap_is_reported():
    probe = _compensation_problem(Budget())
    p = _compensation_problem(Budget(sparsity=_sparsity_with_one_raise(probe)))
    plan = RuleMapper(compensate=False, first_layer_share=1.0).map(p)
    assert not plan.meta["feasible"] and "sparsity" in plan.meta["violations"][0]


def test_config_is_validated():
    with pytest.raises(ValueError, match="sparsity"):
        RuleConfig(sparsity=1.5)
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="first_layer_share"):
            RuleConfig(first_layer_share=bad)
    with pytest.raises(TypeError):
        RuleMapper(colour="red")


def test_maps_resnet50():
    p = resnet50_problem(Budget(sparsity=0.85))
    plan = RuleMapper().map(p)
    assert len(plan) == 54 and plan.meta["feasible"]
