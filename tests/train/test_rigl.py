"""engine.train's dynamic sparse training (methods "rigl" and "set", engine/train/rigl.py) on
the GCN's weight layers over the digits kNN graph: masks keep exactly their block-shaped
sparsity through every update, an update drops and regrows what RigL says (checked against a
brute force), regrown weights start at zero, runs are deterministic, and the sparse model
trains to the dense model's accuracy."""
import copy

import pytest
import torch
from torch import nn

from engine.bench.gcn import node_accuracy, node_batches
from engine.bench.graph_data import digits_graph
from engine.errors import ConfigError
from engine.schemes import get_scheme
from engine.schemes.block import block_structure_holds
from engine.train import PruneTrainer, RigLTrainer, SetTrainer, Target, TrainConfig
from engine.zoo.gcn import GCN, OnGraph
from mapping import Candidate

pytest.importorskip("sklearn.datasets")

TARGETS = ("model.linears.0", "model.linears.1")


@pytest.fixture(scope="module")
def graph():
    return digits_graph()


def _gcn(graph, hidden=32, seed=0):
    torch.manual_seed(seed)
    return OnGraph(GCN(64, hidden, 10), graph.adj)


def _targets(sparsity=0.8, block=(4, 1)):
    return {n: Candidate("block", block, sparsity) for n in TARGETS}


class _Spy(RigLTrainer):
    """Records every update: the masks after it, what it regrew, and the regrown weights at the
    start of the next batch (after the update batch's optimizer step)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen, self.after_step, self.later = [], [], []

    def update_masks(self, grads, fraction):
        old = {n: m.clone() for n, m in self.masks.items()}
        grown = super().update_masks(grads, fraction)
        mods = dict(self.model.named_modules())
        self.seen.append({"old": old, "new": {n: m.clone() for n, m in self.masks.items()},
                          "grown": {n: g.clone() for n, g in grown.items()},
                          "weights": {n: self._weight(n).detach().clone() for n in grown},
                          "moments": {n: [v[g].clone() for k, v in
                                          self._opt.state[mods[n].weight].items()
                                          if k in ("exp_avg", "exp_avg_sq")]
                                      for n, g in grown.items()}})
        return grown

    def _before_batch(self):
        if not self.seen:
            return
        last = self.seen[-1]["grown"]
        now = {n: self._weight(n).detach()[g].clone() for n, g in last.items()}
        if len(self.after_step) < len(self.seen):
            self.after_step.append(now)
        elif len(self.later) < len(self.seen):     # one more batch: they train from here
            self.later.append(now)


def test_masks_hold_exact_block_sparsity_after_every_update(graph):
    model = _gcn(graph)
    t = _Spy(model, _targets(), TrainConfig(method="rigl", epochs=12, lr=1e-2,
                                            regrow_every=1, regrow_fraction=0.5))
    t.fit(node_batches(graph), nn.functional.cross_entropy)
    assert len(t.seen) == 7                # batches 1..7 of the 8-batch regrowth phase
    block = get_scheme("block", block=(4, 1))
    moved = 0
    for step in t.seen:
        for n in TARGETS:
            w0 = dict(model.named_modules())[n].weight
            reference = block.mask(w0, 0.8)          # the scheme's own count at 80%
            new = step["new"][n]
            assert int(new.sum()) == int(reference.sum())
            assert block_structure_holds(new, (4, 1))
            moved += int((new != step["old"][n]).sum())
            assert torch.equal(step["grown"][n], new & ~step["old"][n])
    assert moved > 0                        # the masks did move
    for n in TARGETS:                       # the trained weights outside the masks are zero
        w = dict(t.model.named_modules())[n].weight
        assert not bool(w[~t.masks[n]].any())


def test_regrown_weights_start_at_zero(graph):
    t = _Spy(_gcn(graph), _targets(), TrainConfig(method="rigl", epochs=9, lr=1e-2,
                                                  regrow_every=2))
    t.fit(node_batches(graph), nn.functional.cross_entropy)
    grew = 0
    for step, after in zip(t.seen, t.after_step):
        for n, g in step["grown"].items():
            grew += int(g.sum())
            assert not bool(step["weights"][n][g].any())   # zero when regrown
            assert not bool(after[n].any())                # and after the update batch's step
            assert len(step["moments"][n]) == 2            # Adam's moments of them cleared
            assert all(not bool(v.any()) for v in step["moments"][n])
    assert grew > 0
    # ... and train like any kept weight from the next batch on (they once stayed frozen at
    # zero until the next update dropped them as the smallest)
    # (not all of them: a unit reading a pixel that is 0 in every digit gets no gradient)
    moved = [float((w != 0).float().mean()) for later in t.later for w in later.values()
             if w.numel()]
    assert moved and min(moved) > 0 and sum(moved) / len(moved) > 0.5, moved


def _brute_force(w, keep, grad, rows, k):
    """RigL on units of `rows` x 1: drop the k kept units of least l2 norm, regrow the k units
    not kept after the drop of largest gradient l2 norm (ties: lower index first)."""
    units = [(r, c) for r in range(w.shape[0] // rows) for c in range(w.shape[1])]
    norm = {u: float(w[u[0] * rows:(u[0] + 1) * rows, u[1]].norm()) for u in units}
    gnorm = {u: float(grad[u[0] * rows:(u[0] + 1) * rows, u[1]].norm()) for u in units}
    kept = [u for i, u in enumerate(units) if keep[i]]
    dropped = sorted(kept, key=lambda u: (norm[u], units.index(u)))[:k]
    after = set(kept) - set(dropped)
    free = [u for u in units if u not in after]
    grown = sorted(free, key=lambda u: (-gnorm[u], units.index(u)))[:k]
    new = torch.zeros_like(w, dtype=torch.bool)
    for r, c in after | set(grown):
        new[r * rows:(r + 1) * rows, c] = True
    return new


def test_one_update_drops_by_magnitude_and_regrows_by_gradient():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 8))
    t = PruneTrainer(model, {"0": Candidate("block", (2, 1), 0.5)}, TrainConfig(method="rigl"))
    keep = torch.zeros(24, dtype=torch.bool)
    keep[torch.randperm(24)[:12]] = True
    old = keep.reshape(4, 1, 6).expand(4, 2, 6).reshape(8, 6).clone()
    t.masks = {"0": old.clone()}
    t.apply_masks()
    w, grad = t.model[0].weight.detach().clone(), torch.randn(8, 6)
    expected = _brute_force(w, keep, grad, 2, k=3)          # round(0.25 * 12)
    grown = t.update_masks({"0": grad}, 0.25)
    assert torch.equal(t.masks["0"], expected)
    assert torch.equal(grown["0"], expected & ~old)
    assert not bool(t.model[0].weight[~expected].any())     # dropped weights are zero
    assert torch.equal(t.model[0].weight[expected & w.ne(0)], w[expected & w.ne(0)])


def test_updates_are_deterministic_with_a_seed(graph):
    def run(method, seed):
        t = PruneTrainer(_gcn(graph), _targets(), TrainConfig(method=method, epochs=8,
                                                              lr=1e-2, regrow_every=2,
                                                              seed=seed))
        t.fit(node_batches(graph), nn.functional.cross_entropy)
        return t
    for method, cls in (("rigl", RigLTrainer), ("set", SetTrainer)):
        a, b = run(method, 0), run(method, 0)
        assert type(a) is cls
        for n in TARGETS:
            assert torch.equal(a.masks[n], b.masks[n])
            assert torch.equal(dict(a.model.named_modules())[n].weight,
                               dict(b.model.named_modules())[n].weight)
    a, c = run("set", 0), run("set", 1)     # SET's random regrowth follows the seed
    assert any(not torch.equal(a.masks[n], c.masks[n]) for n in TARGETS)


def test_resumed_run_matches_an_uninterrupted_one(graph, tmp_path):
    cfg = dict(method="rigl", epochs=8, lr=1e-2, regrow_every=1)
    full = PruneTrainer(_gcn(graph), _targets(), TrainConfig(**cfg))
    full.fit(node_batches(graph), nn.functional.cross_entropy)
    ck = str(tmp_path / "ck.pt")
    part = PruneTrainer(_gcn(graph), _targets(), TrainConfig(**cfg, checkpoint=ck))
    part.fit(node_batches(graph), nn.functional.cross_entropy, max_epochs=3)
    again = PruneTrainer(_gcn(graph), _targets(), TrainConfig(**cfg, checkpoint=ck))
    again.fit(node_batches(graph), nn.functional.cross_entropy)
    assert again.updates == full.updates == 4
    for n in TARGETS:
        assert torch.equal(again.masks[n], full.masks[n])
        assert torch.equal(dict(again.model.named_modules())[n].weight,
                           dict(full.model.named_modules())[n].weight)


def test_sparse_training_reaches_the_dense_accuracy(graph):
    """RigL at 80% block 4x1 on the GCN's hidden layers, against the same GCN trained dense
    with the same recipe (a 3-point margin: 1297 test nodes, one seed, 60 epochs)."""
    init = _gcn(graph, hidden=64)
    cfg = dict(epochs=60, lr=1e-2, lr_schedule="cosine", weight_decay=5e-4)
    dense = PruneTrainer(init, {}, TrainConfig(**cfg)).fit(
        node_batches(graph), nn.functional.cross_entropy)
    t = PruneTrainer(copy.deepcopy(init), _targets(), TrainConfig(method="rigl", **cfg))
    sparse = t.fit(node_batches(graph), nn.functional.cross_entropy)
    dense_acc = node_accuracy(dense.model, graph, graph.adj, graph.test)
    sparse_acc = node_accuracy(sparse.model, graph, graph.adj, graph.test)
    assert sparse_acc >= dense_acc - 0.03, (sparse_acc, dense_acc)
    assert t.updates == 19        # every 2 batches over the first 40 (2/3 of 60), from batch 2
    for n in TARGETS:
        assert abs(float(t.masks[n].float().mean()) - 0.2) < 0.01


@pytest.mark.parametrize("target,error", [
    (Target("filter", sparsity=0.5), "scheme 'block' or 'unstructured'"),
    (Candidate("pattern", None, 0.8), "got 'pattern'")])
def test_unsupported_targets_are_refused(graph, target, error):
    with pytest.raises(ConfigError, match=error):
        PruneTrainer(_gcn(graph), {"model.linears.1": target}, TrainConfig(method="rigl"))


@pytest.mark.parametrize("field,value", [("regrow_fraction", 0.0), ("regrow_fraction", 1.5),
                                         ("regrow_every", 0)])
def test_bad_options_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(method="rigl", **{field: value}).validate()
