"""Budget honesty (P6): the mappers see every backend that can ship, a budget the measured costs
cannot meet is an error that says what is reachable, and a mapped plan never ranks below the
best uniform plan on the same costs.

The device is a stand-in profiler whose costs are a formula (engine's device= accepts any
profiler object): convs prune well on both backends, the big linear layer only as a generated
TIR kernel, as a batch-1 GEMV measured on this project's machines (native SpMM 0.6x of dense,
TIR 3.4x). The model is the issue's case: two convs and a linear layer holding ~98% of the
weights, 28x28 input."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import engine
from engine.errors import InfeasibleError
from engine.measure import mask_problem
from mapping import Candidate, Measurement, default_space

pytest.importorskip("tvm")

SPACE = default_space(blocks=((4, 1), (8, 1)), sparsities=(0.7, 0.8, 0.9),
                      backends=("native", "tir"), pattern=False)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 14 * 14, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class FormulaDevice:
    """mapping.Profiler with costs from a formula (microseconds ~ FLOPs)."""

    source = "formula"

    def __init__(self, name="formula-device"):
        self.target, self.weights, self.notes, self.calls = name, {}, [], 0

    def why_not(self, spec, cand):
        return mask_problem(spec, cand)

    def measure(self, spec, candidates):
        self.calls += 1
        dense = max(spec.flops / 2e3, 1.0)
        out = {}
        for c in candidates:
            if c.is_dense:
                out[c.key] = Measurement(dense, kernel="torch", source=self.source)
                continue
            if spec.op == "linear":
                factor = 1.7 if c.backend == "native" else 0.3
            else:
                factor = (1.0 - c.sparsity) * (1.2 if c.backend == "native" else 1.4) + 0.05
            out[c.key] = Measurement(dense * factor, kernel=f"formula-{c.backend}",
                                     source=self.source)
        return out


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(0)
    return SmallCNN().eval(), torch.randn(1, 1, 28, 28)


def _global_sparsity(model, opt) -> float:
    total = zeros = 0
    for name in ("c1", "c2", "fc1", "fc2"):
        w = getattr(opt.pruned_model, name).weight
        total, zeros = total + w.numel(), zeros + int((w == 0).sum())
    return zeros / total


@pytest.mark.parametrize("mapper", ["rule", "search"])
def test_only_tir_makes_the_budget_reachable(case, tmp_path, mapper):
    model, x = case
    opt = engine.optimize(model, (x,), mapper=mapper, sparsity=0.8, space=SPACE,
                          costs=tmp_path / "c.json", device=FormulaDevice(), search_time=2,
                          capture=False, progress=False)
    assert opt.plan["fc1"].backend == "tir" and opt.plan["fc1"].pruned
    assert _global_sparsity(model, opt) >= 0.78
    out = opt(x)
    ref = opt.pruned_model(x)
    assert (out - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


@pytest.mark.parametrize("mapper", ["rule", "search"])
def test_unreachable_sparsity_is_an_error_that_says_why(case, tmp_path, mapper):
    model, x = case
    native_only = default_space(blocks=((4, 1), (8, 1)), sparsities=(0.7, 0.8, 0.9),
                                pattern=False)
    with pytest.raises(InfeasibleError) as ei:
        engine.optimize(model, (x,), mapper=mapper, sparsity=0.8, space=native_only,
                        backends="native", costs=tmp_path / "c.json", device=FormulaDevice(),
                        search_time=2, capture=False, progress=False)
    msg = str(ei.value)
    conv_share = sum(getattr(model, n).weight.numel() for n in ("c1", "c2")) / \
        sum(getattr(model, n).weight.numel() for n in ("c1", "c2", "fc1", "fc2"))
    assert "sparsity 0.80 unreachable" in msg and "allow_infeasible=True" in msg
    assert f"hold {conv_share:.0%} of the weights" in msg
    assert ei.value.reachable["sparsity"] < 0.8
    # allow_infeasible=True returns the best plan, said out loud in the notes
    opt = engine.optimize(model, (x,), mapper=mapper, sparsity=0.8, space=native_only,
                          backends="native", costs=tmp_path / "c.json", device=FormulaDevice(),
                          search_time=2, capture=False, progress=False, allow_infeasible=True)
    assert any("budget NOT met" in n for n in opt.notes)
    assert not opt.plan["fc1"].pruned


def test_device_plan_is_checked_on_the_device_not_this_host(case, tmp_path):
    """The decide stage times the mapped plan with the mapper's device profiler: every kept
    layer's latency is the device's formula value, never a host timing."""
    model, x = case
    dev = FormulaDevice()
    opt = engine.optimize(model, (x,), mapper="rule", sparsity=0.8, space=SPACE,
                          costs=tmp_path / "c.json", device=dev, capture=False, progress=False)
    fc1 = opt.plan["fc1"]
    spec = opt.mapping.spec("fc1")
    assert fc1.dense_latency_us == pytest.approx(max(spec.flops / 2e3, 1.0))
    assert fc1.latency_us == pytest.approx(fc1.dense_latency_us * 0.3)


class SlowFeasibleMapper:
    """Meets the budget with a plan slower than a uniform one (convs on their slower backend
    at a lower sparsity)."""

    def map(self, problem):
        pick = {"c1": "block4x1@0.70/tir", "c2": "block4x1@0.70/tir",
                "fc1": "block4x1@0.90/tir", "fc2": "dense"}
        return problem.to_plan({n: Candidate.from_key(k) for n, k in pick.items()}, "slow")


def test_a_mapped_plan_never_ranks_below_the_best_uniform_plan(case, tmp_path):
    model, x = case
    opt = engine.optimize(model, (x,), mapper=SlowFeasibleMapper(), sparsity=0.8, space=SPACE,
                          costs=tmp_path / "c.json", device=FormulaDevice(), min_proxy=None,
                          capture=False, progress=False)
    meta = opt.plan.meta["mapping"]
    assert meta["mapper"] == "uniform" and meta["replaced_mapper"] == "slow"
    assert any("returning the uniform plan" in n for n in opt.notes)
    problem = opt.mapping
    slow = SlowFeasibleMapper().map(problem)
    assert slow.meta["feasible"]
    assert meta["predicted"]["latency_us"] < slow.meta["predicted"]["latency_us"]
    assert meta["feasible"] and meta["predicted"]["sparsity"] >= 0.8 - 1e-9


class DriftingDevice(FormulaDevice):
    """Measures the cost table as FormulaDevice does, then (from call `after` on: the in-place
    check) finds the big linear layer's generated kernel 10x slower than before."""

    def __init__(self, after: int):
        super().__init__("drifting-device")
        self.after = after

    def measure(self, spec, candidates):
        out = super().measure(spec, candidates)
        if self.calls > self.after and spec.name == "fc1":
            for c in candidates:
                if not c.is_dense and c.key in out:
                    out[c.key].us *= 10.0
        return out


def test_a_budget_lost_in_the_in_place_check_is_said(case, tmp_path):
    model, x = case
    distinct_shapes = 4                    # the cost table: one measure() call per shape
    with pytest.raises(InfeasibleError, match=r"sparsity 0\.80 not reached.*fc1"):
        engine.optimize(model, (x,), mapper="rule", sparsity=0.8, space=SPACE,
                        costs=tmp_path / "c.json", device=DriftingDevice(distinct_shapes),
                        capture=False, progress=False)
    opt = engine.optimize(model, (x,), mapper="rule", sparsity=0.8, space=SPACE,
                          costs=tmp_path / "d.json", device=DriftingDevice(distinct_shapes),
                          capture=False, progress=False, allow_infeasible=True)
    assert not opt.plan["fc1"].pruned and "kept dense" in opt.plan["fc1"].reason
    assert any("budget NOT met" in n and "fc1" in n for n in opt.notes)


class NoisyHost(DriftingDevice):
    """The same drift, reported as the host profiler's (whose in-place verdicts on small
    layers can be noise): the check guard applies."""

    source = "host"


def test_a_budget_the_check_loses_on_the_host_returns_the_plan_as_mapped(case, tmp_path,
                                                                         monkeypatch):
    from test_check_guard import _scripted
    model, x = case
    # the plan as mapped is even the slower one end to end: it is returned for the budget
    _scripted(monkeypatch, as_mapped_ms=2.0, checked_ms=1.0)
    opt = engine.optimize(model, (x,), mapper="rule", sparsity=0.8, space=SPACE,
                          costs=tmp_path / "c.json", device=NoisyHost(4), capture=False,
                          progress=False)
    assert opt.plan["fc1"].pruned and "check guard" in opt.plan["fc1"].reason
    assert _global_sparsity(model, opt) >= 0.78
    verdict = opt.plan.meta["check_guard"]
    assert verdict["kept"] == "as_mapped" and verdict["checked_sparsity"] < 0.78
    assert any("misses the sparsity budget" in n and "fc1" in n for n in opt.notes)
    ref = opt.pruned_model(x)
    assert (opt(x) - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()
    # allow_infeasible=True: the faster of the two, the miss said
    opt = engine.optimize(model, (x,), mapper="rule", sparsity=0.8, space=SPACE,
                          costs=tmp_path / "c.json", device=NoisyHost(0), capture=False,
                          progress=False, allow_infeasible=True)
    assert not opt.plan["fc1"].pruned and opt.plan.meta["check_guard"]["kept"] == "checked"
    assert any("budget NOT met" in n for n in opt.notes)
