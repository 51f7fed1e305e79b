"""mapping.Problem: the allowed-candidate filter (never slower than dense), totals, feasibility,
ranking and to_plan."""
import pytest

from mapping import (DENSE, Budget, Candidate, CostTable, InfeasibleBudget, Measurement, Plan,
                     Problem, TableProxy, require_feasible)
from mapping.problem import MAX_PROXY, MIN_LATENCY
from mapping_synthetic import TARGET, conv, linear, table_problem

B41 = "block4x1@0.80/native"
B81 = "block8x1@0.80/native"
B41_5 = "block4x1@0.50/native"
PAT = "pattern@0.80/native"


def _one_layer(latencies, unmeasured=(), min_speedup=1.1, budget=None):
    spec = conv("a", 64, 64, 1, 14, order=1)
    return table_problem([spec], {"a": latencies}, budget, min_speedup,
                         {"a": list(unmeasured)})


def test_allowed_is_dense_plus_measured_and_faster():
    p = _one_layer({"dense": 100.0, B41: 50.0, B81: 200.0}, unmeasured=[B41_5, PAT])
    assert [c.key for c in p.allowed("a")] == ["dense", B41]
    why = {r.key: r.why for r in p.rejected("a")}
    assert why[B81].startswith("measured 0.50x vs dense")
    assert why[B41_5] == f"not measured on {TARGET}"
    assert why[PAT].startswith("not applicable: pattern pruning needs a 3x3 conv")
    assert p.is_allowed("a", Candidate.from_key(B41))
    assert not p.is_allowed("a", Candidate.from_key(B81))


def test_min_speedup_edge_is_inclusive():
    # 110 / 100 = exactly 1.1x: allowed; 1.0999x: not.
    p = _one_layer({"dense": 110.0, B41: 100.0, B81: 100.01})
    assert [c.key for c in p.allowed("a")] == ["dense", B41]
    p = _one_layer({"dense": 110.0, B41: 100.0}, min_speedup=1.0)
    assert len(p.allowed("a")) == 2
    with pytest.raises(ValueError, match="min_speedup"):
        _one_layer({"dense": 110.0}, min_speedup=0.9)


def test_construction_errors_are_clear():
    spec = conv("a", 64, 64, 1, 14, order=1)
    proxy = TableProxy({})
    with pytest.raises(ValueError, match=r"dense latency not measured.*\['a'\]"):
        Problem(TARGET, [spec], {}, CostTable(), proxy)
    table = CostTable()
    table.put(TARGET, spec.shape_key, "dense", Measurement(1.0))
    with pytest.raises(ValueError, match="unknown layer"):
        Problem(TARGET, [spec], {"typo": []}, table, proxy)
    with pytest.raises(ValueError, match="more than once"):
        Problem(TARGET, [spec, spec], {}, table, proxy)
    with pytest.raises(TypeError, match="score"):
        Problem(TARGET, [spec], {}, table, proxy=lambda a: 1.0)


def _two_layers(budget=None):
    specs = [conv("a", 64, 64, 1, 14, order=1), conv("b", 128, 64, 3, 14, order=2)]
    lat = {"a": {"dense": 100.0, B41: 40.0}, "b": {"dense": 300.0, B81: 90.0, PAT: 120.0}}
    return table_problem(specs, lat, budget), specs


def test_totals_follow_the_definitions():
    p, (a, b) = _two_layers()
    assignment = {"a": Candidate.from_key(B41), "b": DENSE}
    assert p.latency(assignment) == pytest.approx(40.0 + 300.0)
    assert p.latency("a", Candidate.from_key(B41)) == 40.0
    assert p.latency("b", DENSE) == 300.0
    # Dense layers count in the denominator with nothing pruned.
    assert p.sparsity(assignment) == pytest.approx(0.8 * a.params / (a.params + b.params))
    assert p.flops(assignment) == pytest.approx(a.flops * 0.2 + b.flops)
    assert p.dense_latency_total == 400.0
    with pytest.raises(ValueError, match="missing"):
        p.sparsity({"a": DENSE})


def test_feasible_says_why():
    p, (a, b) = _two_layers(Budget(sparsity=0.5, latency_us=200.0))
    ok, why = p.feasible({"a": Candidate.from_key(B41), "b": Candidate.from_key(B81)})
    assert ok and why == ""
    ok, why = p.feasible({"a": Candidate.from_key(B41), "b": DENSE})
    assert not ok and "sparsity" in why and "latency" in why
    ok, why = p.feasible({"a": Candidate.from_key(B81), "b": DENSE})
    assert not ok and "not allowed" in why


def test_objective_follows_the_budget_and_feasible_ranks_first():
    p, _ = _two_layers(Budget(latency_us=200.0))
    assert p.objective == MAX_PROXY and p.needs_proxy
    good = p.totals({"a": Candidate.from_key(B41), "b": Candidate.from_key(B81)})
    bad = p.totals(p.dense_assignment())
    assert p.rank(good) < p.rank(bad)
    q, _ = _two_layers(Budget(sparsity=0.5))
    assert q.objective == MIN_LATENCY and not q.needs_proxy
    fast = q.totals({"a": Candidate.from_key(B41), "b": Candidate.from_key(B81)}, False)
    slow = q.totals({"a": Candidate.from_key(B41), "b": Candidate.from_key(PAT)}, False)
    assert q.rank(fast) < q.rank(slow)


def test_unreachable_reports_the_best_possible():
    p, _ = _two_layers(Budget(sparsity=0.9, latency_us=10.0))
    text = " ".join(p.unreachable())
    best = p.bounds()
    assert best.sparsity == pytest.approx(0.8)
    assert best.latency_us == pytest.approx(40.0 + 90.0)
    assert "sparsity 0.8000 < budget 0.9000" in text and "latency 130.0 us" in text


def test_to_plan_fills_choices_and_meta():
    p, _ = _two_layers(Budget(sparsity=0.5))
    assignment = {"a": Candidate.from_key(B41), "b": DENSE}
    plan = p.to_plan(assignment, "test", {"a": "because"}, seed=7)
    a, b = plan["a"], plan["b"]
    assert (a.scheme, a.block, a.sparsity, a.backend) == ("block", (4, 1), 0.8, "native")
    assert (a.kernel, a.latency_us, a.dense_latency_us, a.reason) == \
        (f"k:{B41}", 40.0, 100.0, "because")
    # a dense choice runs the dense kernel measured fastest ("k:dense" is not torch: native)
    assert (b.scheme, b.backend, b.kernel, b.latency_us) == ("dense", "native", "k:dense", 300.0)
    assert b.reason.startswith("dense (")      # default reason from describe()
    m = plan.meta
    assert m["mapper"] == "test" and m["seed"] == 7 and m["budget"]["sparsity"] == 0.5
    assert m["predicted"]["latency_us"] == pytest.approx(340.0)
    assert m["dense"]["latency_us"] == 400.0 and set(m["space"]) == {B41, B81, PAT}
    assert m["feasible"] is False and m["violations"]
    assert Plan.from_json(plan.to_json()).to_dict() == plan.to_dict()


def test_to_plan_refuses_candidates_that_are_not_allowed():
    p = _one_layer({"dense": 100.0, B41: 50.0, B81: 200.0})
    with pytest.raises(ValueError, match="not allowed.*measured 0.50x"):
        p.to_plan({"a": Candidate.from_key(B81)}, "test")


def test_require_feasible():
    p, _ = _two_layers(Budget(sparsity=0.5))
    good = p.to_plan({"a": Candidate.from_key(B41), "b": Candidate.from_key(B81)}, "t")
    assert require_feasible(good) is good
    bad = p.to_plan(p.dense_assignment(), "t")
    with pytest.raises(InfeasibleBudget, match="sparsity") as e:
        require_feasible(bad)
    assert e.value.plan is bad and e.value.violations


def test_describe_and_rejection_summary():
    specs = [conv("a", 64, 64, 1, 14, order=1), linear("fc", 256, 10, order=2)]
    p = table_problem(specs, {"a": {"dense": 100.0, B41: 50.0},
                              "fc": {"dense": 10.0, B41: 12.0, B81: 20.0}})
    assert p.describe("a", Candidate.from_key(B41)) == f"{B41} measured 2.00x vs dense"
    text = p.describe("fc", DENSE)
    # The closest rejection comes first.
    assert text.startswith(f"dense: nothing allowed: {B41} measured 0.83x")


def test_dense_choice_backend_follows_the_measured_dense_kernel():
    from mapping.problem import _dense_backend
    from mapping import Measurement
    assert _dense_backend(Measurement(1.0, kernel="torch")) == "torch"
    assert _dense_backend(None) == "torch"
    assert _dense_backend(Measurement(1.0, kernel="f32_spmm_8x48__avx512")) == "native"
    assert _dense_backend(Measurement(1.0, kernel="tir_f32_dense_4x96")) == "tir"
