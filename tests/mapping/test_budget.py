"""mapping.Budget: validation, violations, and excess agreeing with violations."""
import math

import numpy as np
import pytest

from mapping import Budget, Totals


@pytest.mark.parametrize("kwargs, match", [
    ({"sparsity": 1.0}, "sparsity"),
    ({"sparsity": -0.1}, "sparsity"),
    ({"latency_us": 0}, "latency_us"),
    ({"flops": -5}, "flops"),
    ({"min_proxy": math.nan}, "finite"),
    ({"latency_us": math.inf}, "finite"),
])
def test_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Budget(**kwargs)


def test_rejects_non_numbers():
    with pytest.raises(TypeError, match="sparsity"):
        Budget(sparsity="0.8")
    with pytest.raises(TypeError, match="latency_us"):
        Budget(latency_us=True)


def test_violations_name_each_broken_bound():
    b = Budget(sparsity=0.8, latency_us=100.0, flops=1e6, min_proxy=0.9)
    ok = Totals(latency_us=90.0, sparsity=0.85, flops=5e5, proxy=0.95)
    assert b.violations(ok) == [] and b.excess(ok) == 0
    bad = Totals(latency_us=120.0, sparsity=0.7, flops=2e6, proxy=0.5)
    v = b.violations(bad)
    assert len(v) == 4
    assert any(s.startswith("sparsity") for s in v) and any(s.startswith("latency") for s in v)
    assert any(s.startswith("flops") for s in v) and any(s.startswith("proxy") for s in v)


def test_proxy_bound_is_only_checked_when_evaluated():
    b = Budget(min_proxy=0.9)
    assert b.violations(Totals(1.0, 0.5, 1.0, None)) == []
    assert b.violations(Totals(1.0, 0.5, 1.0, 0.1))


def test_exact_bounds_are_met():
    b = Budget(sparsity=0.8, latency_us=100.0)
    assert b.violations(Totals(100.0, 0.8, 1.0)) == []


def test_excess_is_zero_exactly_when_no_violations():
    rng = np.random.default_rng(0)
    b = Budget(sparsity=0.6, latency_us=1000.0, flops=5e8, min_proxy=0.7)
    for _ in range(2000):
        t = Totals(float(rng.uniform(800, 1200)), float(rng.uniform(0.5, 0.7)),
                   float(rng.uniform(4e8, 6e8)), float(rng.uniform(0.6, 0.8)))
        assert (b.excess(t) == 0) == (b.violations(t) == [])


def test_excess_of_works_on_arrays():
    b = Budget(sparsity=0.5, latency_us=10.0)
    lat = np.array([5.0, 12.0, 9.0])
    sp = np.array([0.6, 0.6, 0.4])
    e = b.excess_of(lat, sp, np.zeros(3))
    assert e.shape == (3,)
    assert [b.excess(Totals(float(a), float(s), 0.0)) for a, s in zip(lat, sp)] == \
        pytest.approx(list(e))


def test_round_trip_and_text():
    b = Budget(sparsity=0.8, latency_us=900.0)
    assert Budget.from_dict(b.to_dict()) == b
    assert "sparsity >= 0.800" in str(b) and "latency <= 900.0 us" in str(b)
    assert str(Budget()) == "no budget" and Budget().is_empty
    with pytest.raises(ValueError, match="colour"):
        Budget.from_dict({"colour": 1})
