"""optimize(device="artifact"): candidates timed as the saved artifact runs them (each layer
compiled as opt.save() compiles it, run by the TVM runtime in this process), the plan checked
in place with the same profiler, and the artifact matching the masked model."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import engine
from mapping import CostTable, default_space

pytest.importorskip("tvm")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(8, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 32, 1)
        self.fc = nn.Linear(32 * 8 * 8, 64)

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.flatten(1))


def test_artifact_costs_drive_the_plan(tmp_path):
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(1, 8, 8, 8)
    space = default_space(blocks=((4, 1),), sparsities=(0.8,), backends=("native", "tir"),
                          pattern=False)
    costs = tmp_path / "costs.json"
    opt = engine.optimize(model, (x,), mapper="rule", sparsity=0.5, space=space, costs=costs,
                          device="artifact", capture=False, progress=False,
                          allow_infeasible=True)
    info = opt.plan.meta["mapping"]["mapping"]
    assert info["profiler"].startswith("compiled/")
    table = CostTable.open(costs)
    entries = table.entries(info["profiler"], opt.mapping.spec("fc").shape_key)
    assert entries and all(m.source == "compiled" for m in entries.values())
    # compiled models run linear layers as generated TIR: no native candidate was timed
    assert not any(k.endswith("/native") for k in entries if k != "dense")
    for c in opt.plan.pruned:
        assert c.latency_us * opt.config.min_speedup <= c.dense_latency_us * (1 + 1e-9)
    loaded = engine.load(opt.save(tmp_path / "art"))
    ref = opt.pruned_model(x)
    assert (loaded(x) - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()
