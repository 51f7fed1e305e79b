"""The whole-model guard (engine.pipeline.guard): the result timed end to end against the dense
model; not faster -> the dense configuration (guard="keep"), a warning ("warn"), nothing
("off"). The timings are replaced by fixed ones where a test needs a verdict: what is checked
is what the engine does with a verdict, never a speed."""
import copy

import pytest
import torch

import engine
from engine.errors import ConfigError
from engine.pipeline import guard as guard_mod
from tests.small_net import Small


@pytest.fixture
def case():
    torch.manual_seed(0)
    return Small().eval(), torch.randn(1, 3, 16, 16)


def _fixed(optimized: float, dense: float, calls: list):
    def fake(opt, dense_model, inputs, threads):
        calls.append(1)
        return {"optimized": optimized, "dense": dense}
    return fake


def _optimize(model, x, **kw):
    return engine.optimize(model, (x,), sparsity=0.5, min_speedup=1.0, capture=False,
                           progress=False, **kw)


def test_a_slower_result_becomes_the_dense_model_with_the_reason(case, monkeypatch):
    model, x = case
    before = copy.deepcopy(model.state_dict())
    calls = []
    monkeypatch.setattr(guard_mod, "_time", _fixed(2e-3, 1e-3, calls))
    monkeypatch.setattr(guard_mod, "artifact_times", lambda *a: None)   # no artifact verdict
    opt = _optimize(model, x)
    assert len(calls) == 2                 # a loss is measured twice before acting on it
    g = opt.plan.meta["guard"]
    assert g["kept"] == "dense" and g["optimized_ms"] == 2.0 and g["dense_ms"] == 1.0
    assert not opt.plan.pruned and opt.sparsity == 0.0
    for c in opt.plan:
        assert c.backend == "torch" and "not faster than the dense model" in c.reason
    assert any("returned the dense model" in n for n in opt.notes)
    with torch.no_grad():
        ref = model(x)                     # the dense model's own output, to float rounding
    assert torch.allclose(opt(x), ref, rtol=0, atol=1e-6)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_warn_keeps_the_optimized_model_and_warns(case, monkeypatch):
    model, x = case
    monkeypatch.setattr(guard_mod, "_time", _fixed(2e-3, 1e-3, []))
    monkeypatch.setattr(guard_mod, "artifact_times", lambda *a: None)
    with pytest.warns(RuntimeWarning, match="not faster than the dense model"):
        opt = _optimize(model, x, guard="warn")
    assert opt.plan.meta["guard"]["kept"] == "optimized"
    # the plan as decided per layer (what it prunes depends on real per-layer timings), not the
    # dense configuration the guard would have returned
    assert all("whole-model guard" not in c.reason for c in opt.plan)
    assert any("guard='warn'" in n for n in opt.notes)


def test_a_faster_result_is_kept_after_one_run_and_off_measures_nothing(case, monkeypatch):
    model, x = case
    calls = []
    monkeypatch.setattr(guard_mod, "_time", _fixed(1e-3, 3e-3, calls))
    opt = _optimize(model, x)
    assert len(calls) == 1 and opt.plan.meta["guard"]["speedup"] == 3.0
    assert any("(3.00x)" in n for n in opt.notes)
    assert all("whole-model guard" not in c.reason for c in opt.plan)
    calls.clear()
    off = _optimize(model, x, guard="off")
    assert calls == [] and "guard" not in off.plan.meta
    unmeasured = _optimize(model, x, measure=False)
    assert calls == [] and "guard" not in unmeasured.plan.meta


def test_the_real_measurement_names_its_figures_and_agrees_with_its_verdict(case):
    model, x = case
    opt = _optimize(model, x)
    g = opt.plan.meta["guard"]
    assert g["optimized_ms"] > 0 and g["dense_ms"] > 0 and g["threads"] >= 1
    assert (g["kept"] == "optimized") == (g["optimized_ms"] < g["dense_ms"])
    if g["kept"] == "dense":
        assert not opt.plan.pruned and all(c.backend == "torch" for c in opt.plan)


def test_a_dense_result_saves_and_loads(case, monkeypatch, tmp_path):
    pytest.importorskip("tvm")
    model, x = case
    monkeypatch.setattr(guard_mod, "_time", _fixed(2e-3, 1e-3, []))
    monkeypatch.setattr(guard_mod, "artifact_times", _fixed(2e-3, 1e-3, []))
    opt = _optimize(model, x)
    opt.save(tmp_path / "a")
    art = engine.load(tmp_path / "a")
    with torch.no_grad():
        ref = model(x)
    assert torch.allclose(art(x), ref, rtol=1e-4, atol=1e-5)


def test_bad_guard_option_is_named(case):
    model, x = case
    with pytest.raises(ConfigError, match="guard must be 'keep', 'warn' or 'off'"):
        _optimize(model, x, guard="maybe")


def test_the_artifact_is_judged_when_the_python_runtime_loses(case, monkeypatch):
    """opt(...) slower than dense (torch glue between the kernels), the compiled artifact
    faster: the optimized model is kept, the verdict says it was the artifact's."""
    model, x = case
    monkeypatch.setattr(guard_mod, "_time", _fixed(2e-3, 1e-3, []))
    art = []
    monkeypatch.setattr(guard_mod, "artifact_times", _fixed(0.5e-3, 1e-3, art))
    opt = _optimize(model, x)
    g = opt.plan.meta["guard"]
    assert art and g["measured"] == "artifact" and g["kept"] == "optimized"
    assert g["optimized_ms"] == 0.5 and g["speedup"] == 2.0
    assert all("whole-model guard" not in c.reason for c in opt.plan)
    assert any("opt(...) in Python 2.000 ms" in n for n in opt.notes)
    monkeypatch.setattr(guard_mod, "artifact_times", _fixed(3e-3, 1e-3, []))
    lost = _optimize(model, x)             # the artifact loses too: the dense model
    assert lost.plan.meta["guard"]["kept"] == "dense" and not lost.plan.pruned


def test_artifact_times_compiles_what_save_then_writes(case, monkeypatch, tmp_path):
    model, x = case
    opt = _optimize(model, x, guard="off")
    t = guard_mod.artifact_times(opt, opt._dense, opt.example_inputs, None)
    assert set(t) == {"optimized", "dense"} and all(v > 0 for v in t.values())
    import engine.codegen as codegen

    def no_compile(*a, **k):
        raise AssertionError("compiled again")
    monkeypatch.setattr(codegen, "compile_model", no_compile)
    art = engine.load(opt.save(tmp_path / "art"))
    with torch.no_grad():
        assert torch.allclose(torch.as_tensor(art(x)), opt.pruned_model(x), atol=1e-5)
