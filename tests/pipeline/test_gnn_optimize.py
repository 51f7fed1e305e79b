"""optimize() on GNNs (engine.zoo.gcn) whose forward takes a sparse adjacency: the weight layers
become the engine's sparse linears, the adjacency product stays torch's and gets a contiguous
operand, the mapper path works, and what cannot be supported (a compiled artifact with a sparse
input, a sparse tensor where the model was optimized with a dense one) is a clear error. The
graph: the digits kNN graph (engine.bench.graph_data), checked against a dense-numpy reference."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import engine
from engine.bench.graph_data import as_csr, digits_graph, gcn_norm, knn_adjacency, mean_norm
from engine.errors import CompileError, ConfigError, InputError
from engine.measure import mask_problem
from engine.runtime.modules import SparseLinear
from engine.zoo.gcn import GCN, SAGE
from mapping import Measurement, default_space

pytest.importorskip("sklearn.datasets")


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/conftest.py


@pytest.fixture(scope="module")
def graph():
    return digits_graph()


def _reference(model, x, adj_dense):
    """GCN's forward with a dense adjacency and the pruned weights, in float64 numpy."""
    h = x.double().numpy()
    a = adj_dense.double().numpy()
    lins = list(model.linears)
    for i, lin in enumerate(lins):
        w, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
        h = (a @ h) @ w.T + b if lin.in_features < lin.out_features else a @ (h @ w.T + b)
        if i < len(lins) - 1:
            h = np.maximum(h, 0)
    return torch.from_numpy(h)


def test_graph_is_the_normalised_symmetric_knn_graph(graph):
    a = knn_adjacency(graph.x, 10)
    assert torch.equal(a, a.T) and not bool(a.diagonal().any())
    assert bool((a.sum(1) >= 10).all())
    d = torch.cdist(graph.x.double(), graph.x.double()) + torch.eye(graph.nodes) * 1e9
    tenth = d.sort(1).values[:, 9:10]           # each node's 10th-nearest distance
    near = d <= tenth
    assert not bool((d < tenth)[~a].any())      # nearer than the 10th: always joined
    assert bool((a <= (near | near.T)).all())   # joined only to near nodes, either way round
    ai = a.double().numpy() + np.eye(graph.nodes)
    dinv = 1 / np.sqrt(ai.sum(1))
    np.testing.assert_allclose(gcn_norm(a).to_dense().numpy(), dinv[:, None] * ai * dinv[None],
                               rtol=1e-6)
    np.testing.assert_allclose(mean_norm(a).to_dense().sum(1).numpy(), 1.0, rtol=1e-6)
    masks = torch.stack([graph.train, graph.val, graph.test])
    assert bool((masks.sum(0) == 1).all())       # a partition of the nodes
    assert [int(m.sum()) for m in masks] == [200, 300, graph.nodes - 500]
    assert bool((torch.bincount(graph.y[graph.train]) == 20).all())


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_gcn_weight_layers_run_on_sparse_linears(graph, layout):
    torch.manual_seed(0)
    model = GCN(64, 32, 10).eval()
    adj = graph.adj if layout == "coo" else as_csr(graph.adj)
    opt = engine.optimize(model, (graph.x, adj), scheme="block", block=(4, 1), sparsity=0.8,
                          exclude=("linears.2",), measure=False, progress=False)
    assert [c.layer for c in opt.plan.pruned] == ["linears.0", "linears.1"]
    assert sum(isinstance(m, SparseLinear) for m in opt.runtime.modules()) == 2
    for c in opt.plan.pruned:
        w = getattr(opt.pruned_model.linears, c.layer[-1]).weight
        assert float((w == 0).float().mean()) == pytest.approx(0.8, abs=0.01)
    out = opt(graph.x, adj)
    ref = _reference(opt.pruned_model, graph.x, graph.adj.to_dense())
    assert (out.double() - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


def test_adjacency_product_gets_a_contiguous_operand(graph):
    """The lowered linear's output (a features x nodes view) reaches torch.sparse.mm
    contiguous: torch's COO product is ~10x slower on the transposed view."""
    torch.manual_seed(0)
    model = GCN(64, 32, 32, layers=2).eval()      # 64 -> 32 -> 32: linears.1 transforms first
    opt = engine.optimize(model, (graph.x, graph.adj), scheme="block", block=(4, 1),
                          sparsity=0.8, measure=False, progress=False)
    seen = []

    class Spy(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") == "_sparse_mm":
                seen.append(args[1].is_contiguous())
            return func(*args, **(kwargs or {}))
    with Spy():
        opt(graph.x, graph.adj)
    assert seen == [True, True]
    with torch.no_grad():           # what the linear hands over is the transposed view
        h = opt.runtime.lowered_linears_1(torch.randn(5, 32))
    assert not h.is_contiguous()


class _FormulaDevice:
    """A profiler whose costs are a formula: sparse linears 3x faster than dense."""

    source = "formula"

    def __init__(self):
        self.target, self.weights, self.notes = "formula-device", {}, []

    def why_not(self, spec, cand):
        return mask_problem(spec, cand)

    def measure(self, spec, candidates):
        dense = max(spec.flops / 2e3, 1.0)
        return {c.key: Measurement(dense if c.is_dense else dense * (1.2 - c.sparsity),
                                   kernel="torch" if c.is_dense else "formula",
                                   source=self.source) for c in candidates}


@pytest.mark.parametrize("arch", [GCN, SAGE])
def test_rule_mapper_prunes_the_gnn_weight_layers(graph, arch, tmp_path):
    torch.manual_seed(0)
    model = arch(64, 32, 10).eval()
    adj = graph.adj if arch is GCN else graph.adj_mean
    space = default_space(blocks=((4, 1), (8, 1)), sparsities=(0.7, 0.8, 0.9),
                          backends=("native",), pattern=False)
    opt = engine.optimize(model, (graph.x, adj), mapper="rule", sparsity=0.8, space=space,
                          costs=tmp_path / "c.json", device=_FormulaDevice(),
                          backends="native", progress=False)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert sorted(c.layer for c in opt.plan) == sorted(linears)
    assert len(opt.plan.pruned) >= len(linears) - 2 and opt.sparsity >= 0.75
    out, ref = opt(graph.x, adj), opt.pruned_model(graph.x, adj)
    assert (out - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


def test_what_a_sparse_input_cannot_do_is_a_clear_error(graph):
    torch.manual_seed(0)
    model = GCN(64, 32, 10).eval()
    opt = engine.optimize(model, (graph.x, graph.adj), scheme="block", block=(4, 1),
                          sparsity=0.8, measure=False, progress=False)
    with pytest.raises(InputError, match="input 0 'x' is a torch.sparse_coo tensor"):
        opt(graph.x.to_sparse(), graph.adj)
    bad = graph.adj.coalesce()
    vals = bad.values().clone()
    vals[3] = float("nan")
    bad = torch.sparse_coo_tensor(bad.indices(), vals, bad.shape)
    with pytest.raises(ConfigError, match=r"example_inputs\[1\] holds NaN"):
        engine.optimize(model, (graph.x, bad), sparsity=0.8, measure=False, progress=False)
    pytest.importorskip("tvm")
    with pytest.raises(CompileError, match="input 'adj' is a torch.sparse_coo tensor"):
        opt.compile()
