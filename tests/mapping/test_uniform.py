"""mapping.uniform: one scheme at one sparsity everywhere it is allowed (the baseline)."""
from mapping import Budget, Candidate, best_uniform, default_space, uniform_plans
from mapping.budget import Totals
from mapping_synthetic import conv, linear, resnet50_problem, table_problem


def _problem(budget):
    specs = [conv("a", 64, 64, 1, 14, order=1), linear("fc", 256, 10, order=2)]
    lat = {"a": {"dense": 100.0, "block4x1@0.80/native": 40.0,
                 "block4x1@0.90/native": 30.0, "block8x1@0.80/native": 35.0},
           "fc": {"dense": 10.0, "block4x1@0.80/native": 12.0,
                  "block8x1@0.80/native": 5.0}}
    return table_problem(specs, lat, budget)


def test_one_plan_per_family_at_the_budget_level():
    plans = uniform_plans(_problem(Budget(sparsity=0.75)))
    # Lowest level >= 0.75 of each family: 0.80 for both block sizes.
    assert set(plans) == {"block4x1@0.80/native", "block8x1@0.80/native"}
    p41 = plans["block4x1@0.80/native"]
    assert p41["a"].block == (4, 1) and p41["a"].sparsity == 0.8
    # fc measured 4x1 slower than dense: kept dense, and the plan says why.
    assert p41["fc"].scheme == "dense" and "measured 0.83x vs dense" in p41["fc"].reason
    assert p41.meta["mapper"] == "uniform" and p41.meta["uniform"] == "block4x1@0.80/native"


def test_without_a_sparsity_budget_every_level_is_a_plan():
    plans = uniform_plans(_problem(Budget(latency_us=100.0)))
    assert set(plans) == {"block4x1@0.80/native", "block4x1@0.90/native",
                          "block8x1@0.80/native"}


def test_best_uniform_is_the_best_by_the_problem_ranking():
    p = _problem(Budget(sparsity=0.5))
    plans = uniform_plans(p)
    best = best_uniform(p)

    def rank(plan):
        t = plan.meta["predicted"]
        return p.rank(Totals(t["latency_us"], t["sparsity"], t["flops"], t["proxy"]))
    assert rank(best) == min(rank(q) for q in plans.values())
    assert best.meta["feasible"]


def test_uniform_on_resnet50_misses_a_global_budget_when_layers_stay_dense():
    p = resnet50_problem(Budget(sparsity=0.8))
    plans = uniform_plans(p)
    assert len(plans) == len({(c.scheme, c.block, c.backend) for c in
                              (Candidate.from_key(k) for k in default_space().keys())})
    for key, plan in plans.items():
        dense = [c for c in plan if c.scheme == "dense"]
        # Global sparsity is exactly 0.8 only if every layer took the candidate.
        assert plan.meta["feasible"] == (not dense), key
