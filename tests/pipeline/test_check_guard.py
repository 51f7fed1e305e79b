"""The check guard (engine.pipeline.check_guard): when the in-place check keeps layers of a
given / mapped plan dense, the checked result is timed end to end against the plan as mapped
and the faster is returned. The timings are scripted here (what is under test is the decision
and what the returned model is); the references are the plan given, the checked result built
the old way (min_speedup so high that the check drops every layer), and each result's own
masked model."""
import pytest
import torch

import engine
from engine.pipeline import check_guard as cg
from engine.runtime import measure

from qnet import qnet

X = torch.randn(1, 3, 32, 32)


def _scripted(monkeypatch, as_mapped_ms: float, checked_ms: float):
    real = measure.compare

    def fake(fns, **kw):
        if set(fns) == {"checked", "as_mapped"}:
            for f in fns.values():
                f()                                  # both models really run
            return {"checked": checked_ms / 1e3, "as_mapped": as_mapped_ms / 1e3}
        return real(fns, **kw)
    monkeypatch.setattr(measure, "compare", fake)


@pytest.fixture(scope="module")
def given():
    m = qnet()
    plan = engine.optimize(m, (X,), block=(4, 4), sparsity=0.5, measure=False,
                           progress=False).plan
    assert plan.pruned
    return m, plan


def _run(m, plan):
    # the in-place check demands 1000x per layer: every pruned layer is kept dense
    return engine.optimize(m, (X,), plan=plan, min_speedup=1000.0, progress=False,
                           guard="warn")


def test_the_plan_as_mapped_is_returned_when_faster(given, monkeypatch):
    m, plan = given
    _scripted(monkeypatch, as_mapped_ms=1.0, checked_ms=2.0)
    opt = _run(m, plan)
    verdict = opt.plan.meta["check_guard"]
    assert verdict["kept"] == "as_mapped" and verdict["dropped"] == len(plan.pruned)
    assert {c.layer for c in opt.plan.pruned} == {c.layer for c in plan.pruned}
    assert all("check guard" in c.reason for c in opt.plan.pruned)
    # the replay measures nothing: each layer keeps the dense time the in-place check measured
    assert all(c.dense_latency_us is not None and c.dense_latency_us > 0 for c in opt.plan.pruned)
    for c in plan.pruned:                             # the given masks, exactly
        w = opt.pruned_model.get_submodule(c.layer).weight
        assert float((w == 0).float().mean()) == pytest.approx(c.sparsity, abs=0.02)
    with torch.no_grad():
        torch.testing.assert_close(opt(X), opt.pruned_model(X), rtol=1e-4, atol=1e-4)
    assert any("the plan as mapped returned" in n for n in opt.notes)


def test_the_checked_result_is_kept_when_faster(given, monkeypatch):
    m, plan = given
    _scripted(monkeypatch, as_mapped_ms=2.0, checked_ms=1.0)
    opt = _run(m, plan)
    assert opt.plan.meta["check_guard"]["kept"] == "checked"
    assert not opt.plan.pruned                        # what the check decided
    assert any("the checked one kept" in n for n in opt.notes)


def test_skipped_without_measurement_or_drops(given, monkeypatch):
    m, plan = given
    _scripted(monkeypatch, as_mapped_ms=1.0, checked_ms=2.0)
    for kw in ({"measure": False}, {"guard": "off"}):
        opt = engine.optimize(m, (X,), plan=plan, min_speedup=1000.0, progress=False, **kw)
        assert "check_guard" not in opt.plan.meta
    assert cg.dropped_layers(plan, plan) == []
    dense = engine.optimize(m, (X,), sparsity=0.0, measure=False, progress=False).plan
    assert cg.dropped_layers(plan, dense) == [c.layer for c in plan.pruned]
