"""optimize(mapper=...) end to end: measured cost table -> mapper -> plan -> pruned, lowered model,
against the masked torch model; the never-slower-than-dense guarantee on real measurements; the
cost cache; the report; bad options."""
import subprocess
import sys

import pytest
import torch
from torch import nn

import engine
from engine.errors import ConfigError
from engine.report import write_report
from mapping import CostTable, Plan, default_space

SPARSITIES = (0.7, 0.9)
SPACE = default_space(blocks=((1, 1), (4, 1), (8, 1)), sparsities=SPARSITIES, pattern=False)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.c1 = nn.Conv2d(16, 64, 3, padding=1)
        self.c2 = nn.Conv2d(64, 128, 1)
        self.c3 = nn.Conv2d(128, 128, 3, padding=1)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = torch.relu(self.c3(x))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return _Tiny().eval(), torch.randn(1, 3, 32, 32)


@pytest.fixture(scope="module")
def costs(tmp_path_factory):
    return tmp_path_factory.mktemp("costs") / "table.json"


def _close(a, b, rtol=1e-4):
    return (a - b).abs().max().item() <= rtol * (b.abs().max().item() + 1e-12)


@pytest.mark.parametrize("mapper", ["rule", "search", "rl"])
def test_mapped_plan_runs_and_only_prunes_faster_layers(tiny, costs, mapper):
    model, x = tiny
    opt = engine.optimize(model, (x,), mapper=mapper, sparsity=0.8, space=SPACE, costs=costs,
                          search_time=3, capture=False, progress=False, allow_infeasible=True)
    assert _close(opt(x), opt.pruned_model(x))
    meta = opt.plan.meta["mapping"]
    # the mapper's plan, or the uniform plan that ranked better on the same costs
    assert (meta.get("replaced_mapper") or meta["mapper"]) == \
        ("evolution" if mapper == "search" else mapper)
    table = CostTable.open(costs)
    problem = opt.mapping
    # the check guard may return the plan as mapped (engine/pipeline/check_guard.py): the
    # layers the in-place check had dropped are then pruned because the whole plan timed
    # faster end to end (or met the budget the checked plan missed), not by a per-layer time
    guard = opt.plan.meta.get("check_guard", {})
    as_mapped = guard.get("kept") == "as_mapped"
    if as_mapped:
        assert guard["as_mapped_ms"] < guard["checked_ms"] or "checked_sparsity" in guard, guard
    for c in opt.plan.pruned:
        spec = problem.spec(c.layer)
        # in the cost table the mapper used: >= min_speedup x faster than dense ...
        dense = table.dense(problem.target, spec.shape_key)
        # the plan records the sparsity the mask reached (stem at 4x1 "0.70": 0.694); the table
        # is keyed by the candidate's nominal sparsity, the nearest one in the space
        nominal = min(SPARSITIES, key=lambda s: abs(s - c.sparsity))
        assert abs(nominal - c.sparsity) < 0.02, (c.layer, c.sparsity)
        key = f"block{c.block[0]}x{c.block[1]}@{nominal:.2f}/native"
        assert table.latency(problem.target, spec.shape_key, key) * 1.1 <= dense * (1 + 1e-9)
        # ... and measured again in place by optimize() before it was kept
        # (the plan as mapped is a replay that times nothing: a layer the in-place check timed
        # on another backend than the replay's has no time of its own there)
        if as_mapped and ("pruned as mapped" in c.reason or c.latency_us is None):
            continue
        assert c.latency_us is not None, (c.layer, c.backend, c.reason, guard)
        assert c.latency_us * opt.config.min_speedup <= c.dense_latency_us * (1 + 1e-9)
    assert opt.plan["stem"].scheme == "dense" or mapper != "rule"
    if meta["feasible"]:
        pred = meta["predicted"]
        assert pred["sparsity"] >= 0.8 - 1e-6
        assert pred["proxy"] >= meta["budget"]["min_proxy"] - 1e-9


def test_second_run_measures_nothing(tiny, costs):
    model, x = tiny
    opt = engine.optimize(model, (x,), mapper="rule", sparsity=0.8, space=SPACE, costs=costs,
                          capture=False, measure=False, progress=False,
                          allow_infeasible=True)
    assert opt.plan.meta["mapping"]["mapping"]["measurements_taken"] == 0


def test_mapped_plan_replays(tiny, costs):
    model, x = tiny
    opt = engine.optimize(model, (x,), mapper="rule", sparsity=0.8, space=SPACE, costs=costs,
                          capture=False, measure=False, progress=False,
                          allow_infeasible=True)
    plan = Plan.from_json(opt.plan.to_json())
    again = engine.optimize(model, (x,), plan=plan, measure=False, capture=False)
    assert [(c.layer, c.scheme, c.block) for c in again.plan] == \
        [(c.layer, c.scheme, c.block) for c in opt.plan]
    assert torch.equal(again.pruned_model(x), opt.pruned_model(x))


def test_user_model_untouched(tiny, costs):
    model, x = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine.optimize(model, (x,), mapper="rule", sparsity=0.8, space=SPACE, costs=costs,
                    capture=False, measure=False, progress=False,
                          allow_infeasible=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_report(tiny, costs, tmp_path):
    model, x = tiny
    opt = engine.optimize(model, (x,), mapper="rule", sparsity=0.8, space=SPACE, costs=costs,
                          capture=False, measure=False, progress=False,
                          allow_infeasible=True)
    out = write_report(opt, tmp_path / "rep")
    assert (out / "latency_vs_block.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "rule" in md and "c3" in md
    assert Plan.load(out / "plan.json").to_dict() == opt.plan.to_dict()
    plain = engine.optimize(model, (x,), sparsity=0.5, measure=False, capture=False)
    with pytest.raises(ConfigError, match="mapper"):
        write_report(plain, tmp_path / "no")


@pytest.mark.parametrize("kw,match", [
    ({"mapper": "greedy"}, "mapper must be one of"),
    ({"mapper": "rule", "plan": Plan("host", [])}, "either plan"),
    ({"mapper": "rule", "scheme": "channel"}, "channels"),
    ({"mapper": "rule", "device": "http://phone:9090"}, "rpc://"),
    ({"mapper": "rule", "space": ["block4x1@0.80/gpu"]}, "space"),
    ({"mapper": "rule", "latency_budget": -1.0}, "latency_budget"),
])
def test_bad_mapper_options(tiny, costs, kw, match):
    model, x = tiny
    with pytest.raises(ConfigError, match=match):
        engine.optimize(model, (x,), costs=costs, capture=False, progress=False, **kw)


def test_cli_report_needs_mapper():
    r = subprocess.run([sys.executable, "-m", "engine", "optimize", "--model", "resnet18_cifar",
                        "--report", "/tmp/x"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--mapper" in r.stderr


def test_data_proxy_drives_the_floor(tiny, costs):
    """With data=(x, y) the accuracy proxy is held-out accuracy after BN recalibration: the
    floor is the reference plan's accuracy and the mapped plan meets it (or says why not)."""
    model, x = tiny
    g = torch.Generator().manual_seed(3)
    xs, ys = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    opt = engine.optimize(model, (x,), mapper="rule", sparsity=0.8, space=SPACE, costs=costs,
                          data=(xs, ys), capture=False, measure=False, progress=False,
                          allow_infeasible=True)
    meta = opt.plan.meta["mapping"]
    assert "held-out accuracy" in meta["mapping"]["proxy"]
    assert 0.0 <= meta["budget"]["min_proxy"] <= 1.0
    if meta["feasible"]:
        assert meta["predicted"]["proxy"] >= meta["budget"]["min_proxy"] - 1e-9
    else:
        assert meta["violations"]


@pytest.mark.parametrize("mapper", ["rule", "search"])
def test_excluded_layers_are_never_mapped(tiny, costs, mapper):
    """exclude= reaches the mappers: excluded layers are left out of the problem (so the plan's
    budget, global sparsity and accuracy floor, is about the layers that may be pruned) and
    stay dense with the user's reason."""
    model, x = tiny
    opt = engine.optimize(model, (x,), mapper=mapper, sparsity=0.7, space=SPACE, costs=costs,
                          search_time=2, capture=False, progress=False, exclude=("stem", "c3"))
    assert {"stem", "c3"}.isdisjoint({c.layer for c in opt.plan.pruned})
    assert {s.name for s in opt.mapping.layers} == {"c1", "c2", "fc"}
    for name in ("stem", "c3"):
        assert "excluded" in opt.plan[name].reason
    meta = opt.plan.meta["mapping"]
    assert meta["feasible"], meta.get("violations")
    # the budget holds over the mapped layers, counted on the weights that actually run
    w = {n: getattr(model, n).weight.numel() for n in ("c1", "c2", "fc")}
    zeros = sum(float((getattr(opt.pruned_model, n).weight == 0).sum()) for n in w)
    assert zeros / sum(w.values()) >= 0.7 - 0.01
    for name in ("stem", "c3"):
        assert not bool((getattr(opt.pruned_model, name).weight == 0).any())
    assert _close(opt(x), opt.pruned_model(x))
    with pytest.raises(ConfigError, match="no layer to map"):
        engine.optimize(model, (x,), mapper=mapper, sparsity=0.7, space=SPACE, costs=costs,
                        capture=False, progress=False,
                        exclude=("stem", "c1", "c2", "c3", "fc"))
