"""mapping.search: evolution and RL reach brute-forced optima, are reproducible, respect time
budgets, never evaluate the proxy of an over-budget plan, and flag infeasible budgets."""
import time

import pytest

from mapping import (Budget, CallableProxy, InfeasibleBudget, Plan, Problem, RuleMapper,
                     best_uniform, require_feasible)
from mapping.budget import Totals
from mapping.search import EvolutionMapper, Progress, RLMapper
from mapping_synthetic import brute_force, plan_assignment, resnet50_problem, small_problem

# Caps used throughout: enough for the small problems, fixed so results are reproducible.
EVO = dict(generations=40, seed=0)
RL = dict(episodes=4000, seed=0)


def _budget(kind, problem):
    dense = problem.dense_latency_total
    return {"latency": Budget(latency_us=0.45 * dense),               # max proxy
            "sparsity": Budget(sparsity=0.75),                        # min latency
            "both": Budget(latency_us=0.4 * dense, sparsity=0.7)}[kind]


def _rank(problem, plan):
    t = plan.meta["predicted"]
    return problem.rank(Totals(t["latency_us"], t["sparsity"], t["flops"], t["proxy"]))


CASES = [(seed, kind) for seed in range(4) for kind in ("latency", "sparsity", "both")]


@pytest.fixture(scope="module")
def optima():
    """(problem, brute-forced best rank) per case, computed once."""
    out = {}
    for seed, kind in CASES:
        p = small_problem(_budget(kind, small_problem(Budget(), seed=seed)), seed=seed)
        out[seed, kind] = (p, brute_force(p)[0])
    return out


@pytest.mark.parametrize("seed, kind", CASES)
@pytest.mark.parametrize("mapper", [EvolutionMapper, RLMapper], ids=["evolution", "rl"])
def test_search_reaches_the_brute_force_optimum(optima, seed, kind, mapper):
    problem, best = optima[seed, kind]
    assert best[0] == 0, "the synthetic budget should be feasible"
    # Without seed plans: the search itself has to find it.
    kw = EVO if mapper is EvolutionMapper else RL
    plan = mapper(seed_plans=False, **kw).map(problem)
    got = _rank(problem, plan)
    assert got[0] == 0 and got[1] == pytest.approx(best[1], rel=1e-9, abs=1e-12), \
        (plan.meta["search"], got, best)


@pytest.fixture(scope="module")
def resnet():
    return resnet50_problem(Budget(latency_us=4000.0, sparsity=0.6))


@pytest.mark.parametrize("make", [lambda: EvolutionMapper(generations=15, seed=3),
                                  lambda: RLMapper(episodes=400, seed=3)],
                         ids=["evolution", "rl"])
def test_same_seed_same_plan(resnet, make):
    a, b = make().map(resnet), make().map(resnet)
    assert plan_assignment(a) == plan_assignment(b)
    assert a.meta["predicted"] == b.meta["predicted"] and a.meta["seed"] == 3


@pytest.mark.parametrize("mapper", [EvolutionMapper, RLMapper], ids=["evolution", "rl"])
def test_never_worse_than_its_seeds(resnet, mapper):
    kw = dict(generations=10) if mapper is EvolutionMapper else dict(episodes=200)
    plan = mapper(**kw).map(resnet)
    assert plan.meta["feasible"]
    assert _rank(resnet, plan) <= _rank(resnet, RuleMapper().map(resnet))
    assert _rank(resnet, plan) <= _rank(resnet, best_uniform(resnet))


@pytest.mark.parametrize("mapper, caps", [(EvolutionMapper, dict(generations=10 ** 6)),
                                          (RLMapper, dict(episodes=10 ** 8))],
                         ids=["evolution", "rl"])
def test_time_budget_is_honoured(resnet, mapper, caps):
    limit = 0.6
    start = time.perf_counter()
    plan = mapper(time_budget=limit, **caps).map(resnet)
    elapsed = time.perf_counter() - start
    assert plan.meta["search"]["stopped"] == "time"
    # Overshoot: at most one evaluation / batch, plus building the plan.
    assert elapsed < limit + 0.5, f"{elapsed:.2f}s for a {limit}s budget"
    assert plan.meta["feasible"]


@pytest.mark.parametrize("mapper, caps, total",
                         [(EvolutionMapper, dict(generations=5), 5),
                          (RLMapper, dict(episodes=64, batch=16), 64)],
                         ids=["evolution", "rl"])
def test_progress_is_reported(resnet, mapper, caps, total):
    seen = []
    mapper(progress=seen.append, **caps).map(resnet)
    assert seen and all(isinstance(p, Progress) for p in seen)
    steps = [p.step for p in seen]
    assert steps == sorted(steps) and steps[-1] == total and seen[-1].total == total
    assert seen[-1].best_feasible and "latency" in str(seen[-1])


@pytest.mark.parametrize("mapper, caps", [(EvolutionMapper, dict(generations=8)),
                                          (RLMapper, dict(episodes=200, clip_actions=False))],
                         ids=["evolution", "rl"])
def test_proxy_is_never_evaluated_over_budget(mapper, caps):
    base = resnet50_problem(Budget(latency_us=3500.0, sparsity=0.7))
    dense = base.dense_assignment()
    over = []

    def accuracy(assignment):
        # The RL mapper scores the dense plan once as its reward's scale: the one exception.
        if assignment != dense and base.budget.violations(base.totals(assignment, False)):
            over.append(assignment)
        return base.proxy(assignment)

    proxy = CallableProxy(accuracy)
    p = Problem(base.target, base.layers, {n: base.allowed(n) for n in base.names},
                base.costs, proxy, base.budget)
    plan = mapper(**caps).map(p)
    search = plan.meta["search"]
    assert search["over_budget"] > 0, "the test should produce over-budget plans"
    assert over == []
    assert search["proxy_evaluations"] <= proxy.calls <= search["proxy_evaluations"] + 1


def test_infeasible_budget_gives_a_flagged_plan_with_why():
    p = resnet50_problem(Budget(sparsity=0.95))
    for mapper in (RuleMapper(), EvolutionMapper(generations=3), RLMapper(episodes=32)):
        plan = mapper.map(p)
        assert plan.meta["feasible"] is False, mapper.name
        assert any("sparsity" in v for v in plan.meta["violations"])
        assert any(u.startswith("unreachable: sparsity") for u in plan.meta["unreachable"])
        with pytest.raises(InfeasibleBudget, match="sparsity"):
            require_feasible(plan)


@pytest.mark.parametrize("mapper", [RuleMapper(), EvolutionMapper(generations=3),
                                    RLMapper(episodes=32)], ids=["rule", "evolution", "rl"])
def test_mapper_plans_round_trip_through_json(resnet, mapper, tmp_path):
    plan = mapper.map(resnet)
    path = tmp_path / f"{mapper.name}.json"
    plan.save(path)
    back = Plan.load(path)
    assert back.to_dict() == plan.to_dict()
    assert all(c.reason for c in back) and back.meta["mapper"] == mapper.name


def test_search_configs_are_validated():
    with pytest.raises(ValueError):
        EvolutionMapper(population=1)
    with pytest.raises(ValueError):
        RLMapper(batch=0)
    with pytest.raises(ValueError, match="time_budget"):
        EvolutionMapper(time_budget=0).map(small_problem(Budget(sparsity=0.5)))


def test_a_problem_with_nothing_allowed_maps_to_dense():
    p = resnet50_problem(Budget(latency_us=1e9), min_speedup=1e6)
    assert all(len(p.allowed(n)) == 1 for n in p.names)
    for mapper in (RuleMapper(), EvolutionMapper(generations=3), RLMapper(episodes=32)):
        plan = mapper.map(p)
        assert not plan.pruned and plan.meta["feasible"], mapper.name
        # The rule mapper names its first rule that applies (first-layer for conv1).
        assert all("nothing allowed" in c.reason for c in plan
                   if not c.reason.startswith("rule first-layer"))


def test_search_imports_neither_engine_nor_torch():
    import subprocess
    import sys
    code = ("import sys, mapping, mapping.search; "
            "bad = [m for m in ('engine', 'torch', 'tvm') if m in sys.modules]; "
            "assert not bad, bad; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
