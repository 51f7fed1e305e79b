"""The "never slower than dense" guarantee, for every mapper, on adversarial cost tables:
candidates slower than dense, missing measurements, a layer where everything is slower, and
candidates exactly at / just below the min_speedup threshold."""
import numpy as np
import pytest

from mapping import (DENSE, Budget, CostTable, Measurement, Problem, RuleMapper, TableProxy,
                     best_uniform, default_space, uniform_plans)
from mapping.search import EvolutionMapper, RLMapper
from mapping_synthetic import (TARGET, resnet50_specs, synthetic_costs, synthetic_retained)

MIN_SPEEDUP = 1.2
ALL_SLOWER = "layer3.0.conv2"


def _adversarial(budget, seed=0):
    """(problem, notes): the synthetic ResNet-50 table, with measurements made adversarial."""
    rng = np.random.default_rng(seed)
    specs = resnet50_specs()
    space = default_space()
    base = synthetic_costs(specs, space, rng)
    table, kinds, by_shape = CostTable(), {}, {}
    for spec in specs:
        if spec.shape_key in by_shape:     # same shape, same measurements: same kinds
            kinds.update({(spec.name, k): v for (_, k), v in by_shape[spec.shape_key].items()})
            continue
        dense = base.dense(TARGET, spec.shape_key)
        table.put(TARGET, spec.shape_key, "dense", Measurement(dense, kernel="torch"))
        mine = {}
        for cand in space.for_layer(spec)[1:]:
            us = base.latency(TARGET, spec.shape_key, cand.key)
            r = rng.random()
            if spec.name == ALL_SLOWER or r < 0.2:
                us, kind = dense * rng.uniform(1.0, 2.0), "slower"
            elif r < 0.3:
                mine[spec.name, cand.key] = "unmeasured"
                continue
            elif r < 0.35:
                us, kind = dense / MIN_SPEEDUP, "edge"     # exactly at the threshold
            elif r < 0.4:
                us, kind = dense / (MIN_SPEEDUP * (1 - 1e-6)), "below"
            else:
                kind = "fast" if dense / us >= MIN_SPEEDUP else "slow"
            mine[spec.name, cand.key] = kind
            table.put(TARGET, spec.shape_key, cand.key, Measurement(us, kernel="k"))
        by_shape[spec.shape_key] = mine
        kinds.update(mine)
    proxy = TableProxy(synthetic_retained(specs, space, rng), {s.name: s.params for s in specs})
    return Problem.from_space(TARGET, specs, space, table, proxy, budget, MIN_SPEEDUP), kinds


BUDGETS = {"sparsity": Budget(sparsity=0.7), "latency": Budget(latency_us=6000.0)}


def _mappers():
    return {"rule": lambda p: RuleMapper().map(p),
            "evolution": lambda p: EvolutionMapper(generations=15).map(p),
            "rl": lambda p: RLMapper(episodes=300).map(p),
            "best_uniform": best_uniform}


@pytest.mark.parametrize("budget", list(BUDGETS), ids=list(BUDGETS))
@pytest.mark.parametrize("mapper", list(_mappers()))
def test_no_mapper_picks_anything_slower_than_dense(budget, mapper):
    problem, kinds = _adversarial(BUDGETS[budget])
    plan = _mappers()[mapper](problem)
    _check(problem, plan)
    # The adversarial table has some effect: layers are pruned and some candidates rejected.
    assert plan.pruned and any(k != "fast" for k in kinds.values())


def test_uniform_plans_never_pick_anything_slower_than_dense():
    problem, _ = _adversarial(BUDGETS["sparsity"])
    for plan in uniform_plans(problem).values():
        _check(problem, plan)


def test_the_adversarial_table_hits_every_edge():
    problem, kinds = _adversarial(BUDGETS["sparsity"])
    for (layer, key), kind in kinds.items():
        allowed = {c.key for c in problem.allowed(layer)}
        assert (key in allowed) == (kind in ("fast", "edge")), (layer, key, kind)
        if kind == "unmeasured":
            why = next(r.why for r in problem.rejected(layer) if r.key == key)
            assert why.startswith("not measured")
    assert {"slower", "unmeasured", "edge", "below", "fast"} <= set(kinds.values())
    assert [c.key for c in problem.allowed(ALL_SLOWER)] == ["dense"]


def test_a_layer_where_everything_is_slower_stays_dense_with_why():
    problem, _ = _adversarial(BUDGETS["sparsity"])
    for name, run in _mappers().items():
        c = run(problem)[ALL_SLOWER]
        assert c.scheme == "dense", name
    rule = RuleMapper().map(problem)[ALL_SLOWER]
    assert rule.reason.startswith("rule not-faster") and "vs dense" in rule.reason


def _check(problem, plan):
    for c in plan:
        dense = problem.dense_latency(c.layer)
        assert c.dense_latency_us == dense
        if c.scheme == "dense":
            assert c.latency_us == dense
            continue
        key = next(k.key for k in problem.allowed(c.layer) if k.scheme == c.scheme
                   and k.block == c.block and k.sparsity == c.sparsity
                   and k.backend == c.backend)
        measured = problem.costs.latency(TARGET, problem.spec(c.layer).shape_key, key)
        assert measured is not None and c.latency_us == measured, c
        assert dense / measured >= MIN_SPEEDUP * (1 - 1e-9), (c.layer, key, dense / measured)
        assert c.reason


def test_dense_is_always_allowed():
    problem, _ = _adversarial(BUDGETS["latency"])
    assert all(problem.allowed(n)[0] == DENSE for n in problem.names)
