"""optimize(mapper="gnn") end to end on the small test net: the GNN mapper's plan, built on the
net's data-flow graph, runs and matches the masked torch model. Costs come from a stand-in
device (a formula, as in test_budget_honesty.py) so nothing is timed; the search runs under a
short time budget; the whole-model guard is off (it times the model, not the mapper's job)."""
import torch

import engine
from engine.measure import mask_problem
from mapping import Measurement, default_space
from small_net import Small

SPACE = default_space(blocks=((4, 1),), sparsities=(0.5, 0.7, 0.9), pattern=False)


class _FormulaDevice:
    """mapping.Profiler: microseconds ~ FLOPs; convs prune well, the linear layer does not."""

    def __init__(self):
        self.target, self.weights, self.notes = "formula-gnn", {}, []

    def why_not(self, spec, cand):
        return mask_problem(spec, cand)

    def measure(self, spec, candidates):
        dense = max(spec.flops / 2e3, 1.0)
        out = {}
        for c in candidates:
            factor = 1.0 if c.is_dense else (1.7 if spec.op == "linear" else
                                             (1.0 - c.sparsity) * 1.2 + 0.05)
            out[c.key] = Measurement(dense * factor, kernel="formula", source="formula")
        return out


def test_optimize_with_the_gnn_mapper(tmp_path):
    torch.manual_seed(0)
    model, x = Small().eval(), torch.randn(1, 3, 16, 16)
    opt = engine.optimize(model, (x,), mapper="gnn", sparsity=0.5, space=SPACE,
                          costs=tmp_path / "c.json", device=_FormulaDevice(), search_time=0.5,
                          backends="native", capture=False, progress=False, guard="off")
    meta = opt.plan.meta["mapping"]
    assert meta["mapper"] == "gnn" and meta["feasible"]
    assert meta["search"]["graph"] == {"nodes": 3, "edges": 2, "source": "data flow"}
    assert meta["predicted"]["sparsity"] >= 0.5 - 1e-9 and not opt.plan["fc"].pruned
    out, ref = opt(x), opt.pruned_model(x)
    assert (out - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()
