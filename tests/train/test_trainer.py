"""engine.train: gradual structured pruning + masked fine-tuning on scikit-learn's bundled digits
(real data, shipped by the package): masks hold, accuracy recovers, resume is exact."""
import json

import pytest
import torch
from torch import nn

from engine.accuracy import accuracy
from engine.errors import ConfigError
from engine.schemes.block import block_structure_holds
from engine.train import (PruneTrainer, TrainConfig, cubic_sparsity, targets_from_plan,
                          train_from_scratch, uniform_targets)
from mapping import Candidate, Choice, Plan

sklearn = pytest.importorskip("sklearn.datasets")


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def dense(digits):
    torch.manual_seed(0)
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    train, val = digits
    net = _Net()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(20):
        net.train()
        for xb, yb in train:
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    torch.set_num_threads(prev)
    return net.eval(), accuracy(net.eval(), val)


def test_cubic_schedule():
    assert cubic_sparsity(0.8, 0, 10) == 0.0
    assert cubic_sparsity(0.8, 10, 10) == 0.8
    steps = [cubic_sparsity(0.8, t, 10) for t in range(11)]
    assert all(a <= b for a, b in zip(steps, steps[1:]))
    assert steps[5] > 0.8 / 2              # front-loaded: more than half of 0.8 by mid-way


def test_80pct_block_pruning_recovers_within_one_point(dense, digits):
    net, dense_acc = dense
    train, val = digits
    assert dense_acc > 0.95
    targets = uniform_targets(net, "block", (4, 1), 0.8)
    assert set(targets) == {"conv2", "conv3"}       # first and last layer stay dense
    seen = []

    def check(model):
        # masks hold after every epoch: every pruned weight is exactly zero
        for name, m in t.masks.items():
            w = getattr(model, name).weight
            assert bool((w[~m] == 0).all())
        seen.append(1)
        return accuracy(model, val)

    t = PruneTrainer(net, targets, TrainConfig(epochs=12, lr=1e-3, prune_epochs=6))
    model = t.fit(train, nn.functional.cross_entropy, val=check)
    assert len(seen) == 12
    acc = accuracy(model, val)
    for name in targets:
        w = getattr(model, name).weight
        assert abs(float((w == 0).float().mean()) - 0.8) < 0.01
        assert block_structure_holds(w != 0, (4, 1))
    assert acc >= dense_acc - 0.01, (acc, dense_acc)
    # the user's model was not touched
    assert float((net.conv2.weight == 0).float().mean()) < 0.01


def test_resume_from_checkpoint_is_exact(dense, digits, tmp_path):
    net, _ = dense
    train, _ = digits
    train = train[:8]
    targets = {"conv3": Candidate("block", (8, 1), 0.7), "conv2": Candidate("pattern", None,
                                                                              0.6)}
    cfg = dict(epochs=4, lr=1e-3, prune_epochs=2, lr_schedule="cosine")
    whole = PruneTrainer(net, targets, TrainConfig(**cfg)).fit(
        train, nn.functional.cross_entropy)
    ck = tmp_path / "ck.pt"
    first = PruneTrainer(net, targets, TrainConfig(checkpoint=str(ck), **cfg))
    first.fit(train, nn.functional.cross_entropy, max_epochs=2)
    assert first.epoch == 2 and ck.exists()
    second = PruneTrainer(net, targets, TrainConfig(checkpoint=str(ck), **cfg))
    resumed = second.fit(train, nn.functional.cross_entropy)
    assert second.epoch == 4
    for (k, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    # a checkpoint made for other targets is refused
    other = PruneTrainer(net, {"conv3": Candidate("block", (4, 1), 0.7)},
                         TrainConfig(checkpoint=str(ck), **cfg))
    with pytest.raises(ConfigError, match="other targets"):
        other.fit(train, nn.functional.cross_entropy)


def test_targets_from_plan_and_bad_targets(dense):
    net, _ = dense
    plan = Plan("host", [Choice("conv2", "block", (4, 1), 0.8, "native"),
                         Choice("conv3"), Choice("fc", "nm", None, 0.5, "native",
                                                 options={"n": 2, "m": 4})])
    t = targets_from_plan(plan)
    assert set(t) == {"conv2", "fc"} and t["conv2"].block == (4, 1)
    with pytest.raises(ConfigError, match="not a module"):
        PruneTrainer(net, {"nope": Candidate("block", (4, 1), 0.8)})
    with pytest.raises(ConfigError, match="BatchNorm2d"):
        PruneTrainer(net, {"bn1": Candidate("block", (4, 1), 0.8)})
    with pytest.raises(ConfigError, match="epochs"):
        PruneTrainer(net, {}, TrainConfig(epochs=0))


def test_soft_pruning_lets_pruned_weights_come_back(dense, digits):
    """SFP: between epochs the pruned units keep learning, so the next epoch's masks may keep
    some of them; the final model is pruned hard to the target."""
    train, _ = digits
    torch.manual_seed(0)
    net = _Net()            # from scratch, as SFP trains: the ranking still moves a lot
    t = PruneTrainer(net, {"conv3": Candidate("block", (4, 1), 0.8)},
                     TrainConfig(epochs=3, lr=3e-3, prune_epochs=1, soft=True))
    t.fit(train, nn.functional.cross_entropy, max_epochs=1)
    m1 = t.masks["conv3"].clone()
    t.fit(train, nn.functional.cross_entropy, max_epochs=1)
    m2 = t.masks["conv3"]
    assert bool((~m1 & m2).any())          # pruned after epoch 1, kept after epoch 2
    model = t.fit(train, nn.functional.cross_entropy)
    w = model.conv3.weight
    assert abs(float((w == 0).float().mean()) - 0.8) < 0.01
    assert block_structure_holds(w != 0, (4, 1))


def test_distillation_needs_a_teacher_and_trains(dense, digits):
    net, dense_acc = dense
    train, val = digits
    targets = {"conv3": Candidate("block", (4, 1), 0.8)}
    with pytest.raises(ConfigError, match="teacher"):
        PruneTrainer(net, targets, TrainConfig(distill_alpha=0.5))
    t = PruneTrainer(net, targets, TrainConfig(epochs=3, lr=1e-3, prune_epochs=2,
                                               distill_alpha=0.5), teacher=net)
    model = t.fit(train, nn.functional.cross_entropy)
    assert accuracy(model, val) >= dense_acc - 0.03
    assert abs(float((model.conv3.weight == 0).float().mean()) - 0.8) < 0.01


def test_from_scratch_keeps_the_masks_and_reinitialises(dense, digits):
    net, _ = dense
    train, val = digits
    t = PruneTrainer(net, {"conv2": Candidate("block", (4, 1), 0.8)},
                     TrainConfig(epochs=2, lr=1e-3, prune_epochs=1))
    t.fit(train, nn.functional.cross_entropy)
    scratch = train_from_scratch(net, t.masks, train, nn.functional.cross_entropy,
                                 TrainConfig(epochs=4, lr=3e-3))
    w = scratch.conv2.weight
    assert torch.equal(w != 0, t.masks["conv2"])      # exactly the pruned architecture
    assert not torch.allclose(scratch.conv3.weight, net.conv3.weight)   # fresh init
    assert accuracy(scratch, val) > 0.8


def test_optimize_finetune_recovers_accuracy_and_runs_natively(dense, digits):
    import engine
    net, dense_acc = dense
    train, val = digits
    x = val[0][0][:1]
    opt = engine.optimize(net, (x,), sparsity=0.8, block=(4, 1), measure=False, capture=False,
                          exclude=("conv1", "fc"),
                          finetune={"train": train, "epochs": 12, "lr": 1e-3,
                                    "prune_epochs": 6})
    pruned = {c.layer for c in opt.plan.pruned}
    assert pruned == {"conv2", "conv3"}
    ref = opt.pruned_model
    assert accuracy(ref, val) >= dense_acc - 0.01
    xs = val[0][0][:8]
    with torch.no_grad():
        assert torch.allclose(opt(xs), ref(xs), atol=1e-4, rtol=1e-4)
    assert any("fine-tuned" in n for n in opt.notes)
    # the user's model is untouched
    assert float((net.conv2.weight == 0).float().mean()) < 0.01
    with pytest.raises(ConfigError, match="finetune"):
        engine.optimize(net, (x,), sparsity=0.8, measure=False, capture=False, finetune=3)
    with pytest.raises(ConfigError, match="'train'"):
        engine.optimize(net, (x,), sparsity=0.8, measure=False, capture=False,
                        finetune={"epochs": 1})


@pytest.mark.parametrize("sparsity", [0.5, {"conv2": 0.75}])
def test_optimize_finetune_of_filter_pruning_trains_the_shrunk_model(dense, digits, sparsity):
    """scheme="filter" with finetune: the physically shrunk model is what is trained and what
    runs (it used to replay the plan as masks on the full-size model: filters silently back).
    References: the same optimize() without finetune (shapes, and its held-out accuracy, which
    training must not lose), the trained model's own output."""
    import engine
    net, _ = dense
    train, val = digits
    x = val[0][0][:1]
    kw = dict(scheme="filter", sparsity=sparsity, measure=False, capture=False,
              exclude=("fc",))
    cut = engine.optimize(net, (x,), **kw)
    opt = engine.optimize(net, (x,), finetune={"train": train, "epochs": 2, "lr": 1e-3}, **kw)
    for name in ("conv1", "conv2", "conv3"):
        got = getattr(opt.pruned_model, name).weight.shape
        assert got == getattr(cut.pruned_model, name).weight.shape, name
    assert opt.pruned_model.conv2.weight.shape[0] < net.conv2.weight.shape[0]
    assert not torch.equal(opt.pruned_model.conv2.weight, cut.pruned_model.conv2.weight)
    assert accuracy(opt.pruned_model, val) > accuracy(cut.pruned_model, val)
    xs = val[0][0][:8]
    with torch.no_grad():
        assert torch.allclose(opt(xs), opt.pruned_model(xs), atol=1e-4, rtol=1e-4)
    assert any("shrunk" in n for n in opt.notes)


# -- ADMM and reweighted group lasso -----------------------------------------------------------
def _block_projection_reference(v, rows, sparsity):
    """Brute-force Euclidean projection onto "a (rows x 1) block pattern with at least
    `sparsity` of the weights zero": keep the blocks with the largest l2 norms (numpy, per
    block, independent of engine.schemes)."""
    import numpy as np
    a = v.detach().double().numpy()
    o, i = a.shape[0], a.shape[1]
    k = a.reshape(o, i, -1)
    norms = {}
    for r0 in range(0, o, rows):
        for c in range(i):
            for p in range(k.shape[2]):
                norms[(r0, c, p)] = float(np.sqrt((k[r0:r0 + rows, c, p] ** 2).sum()))
    n_keep = round(len(norms) * (1 - sparsity))
    keep = sorted(norms, key=lambda b: -norms[b])[:n_keep]
    out = np.zeros_like(k)
    for r0, c, p in keep:
        out[r0:r0 + rows, c, p] = k[r0:r0 + rows, c, p]
    return torch.tensor(out.reshape(a.shape), dtype=v.dtype)


def test_admm_projection_is_the_nearest_structured_point(dense):
    net, _ = dense
    t = PruneTrainer(net, {"conv2": Candidate("block", (4, 1), 0.75)},
                     TrainConfig(method="admm"))
    g = torch.Generator().manual_seed(3)
    v = torch.randn(net.conv2.weight.shape, generator=g)
    z = t._project("conv2", v)
    assert torch.allclose(z, _block_projection_reference(v, 4, 0.75))
    assert block_structure_holds(z != 0, (4, 1))
    # no other mask with the structure and sparsity is closer (random competitors)
    best = float((v - z).pow(2).sum())
    for seed in range(20):
        other = t._project("conv2", torch.randn(v.shape, generator=torch.Generator()
                                                .manual_seed(100 + seed)))
        assert float((v - v * (other != 0)).pow(2).sum()) >= best - 1e-4


@pytest.mark.parametrize("method", ["admm", "lasso"])
def test_admm_and_lasso_move_weights_onto_the_structure_and_recover(dense, digits, method):
    """ADMM (W / Z / U splitting, rho growing) and reweighted group lasso concentrate the weights
    on a 4x1-block support during their phase (the energy outside the best structured mask
    falls), then hard pruning + masked retraining recovers to within 1 point of dense."""
    net, dense_acc = dense
    train, val = digits
    targets = uniform_targets(net, "block", (4, 1), 0.8)
    seen = []

    def check(model):
        if t.hard:
            for name, m in t.masks.items():
                assert bool((getattr(model, name).weight[~m] == 0).all())
            seen.append(t.epoch)
        return accuracy(model, val)

    t = PruneTrainer(net, targets, TrainConfig(epochs=12, lr=1e-3, prune_epochs=6,
                                               method=method))
    model = t.fit(train, nn.functional.cross_entropy, val=check)
    gaps = [h["structure_gap"] for h in t.history if "structure_gap" in h]
    assert len(gaps) == 6
    assert gaps[-1] < 0.25 * gaps[0], gaps
    assert seen == list(range(6, 13))        # hard from the end of the phase on
    for name in targets:
        w = getattr(model, name).weight
        assert abs(float((w == 0).float().mean()) - 0.8) < 0.01
        assert block_structure_holds(w != 0, (4, 1))
    assert accuracy(model, val) >= dense_acc - 0.01
    if method == "admm":
        rhos = [h["rho"] for h in t.history if "rho" in h]
        assert rhos == sorted(rhos) and rhos[-1] > rhos[0]


def test_lasso_weights_are_reweighted_per_block(dense):
    net, _ = dense
    t = PruneTrainer(net, {"conv3": Candidate("block", (8, 1), 0.5),
                           "conv2": Candidate("pattern", None, 0.6)},
                     TrainConfig(method="lasso", lasso=1e-3, lasso_eps=1e-2))
    t._reweight()
    w = t.model.conv3.weight.detach()
    # block (rows 8..15, input channel 5, kernel position (1, 2)) -> its own weight
    blk = w[8:16, 5, 1, 2]
    norms = t._group_norms("conv3", w)
    alpha = t.alpha["conv3"]
    assert norms.numel() == (64 // 8) * 64 * 9
    assert any(abs(float(n) - float(blk.norm())) < 1e-5 and
               abs(float(a) - 1.0 / (float(blk.norm()) + 1e-2)) < 1e-3
               for n, a in zip(norms, alpha))
    # a non-block scheme is regularised weight by weight (reweighted l1)
    assert t._group_norms("conv2", t.model.conv2.weight).numel() == t.model.conv2.weight.numel()
    pen = float(t._lasso_penalty())
    ref = 1e-3 * sum(float((t.alpha[n] * t._group_norms(n, getattr(t.model, n).weight)).sum())
                     for n in ("conv3", "conv2"))
    assert abs(pen - ref) < 1e-6 * max(1.0, ref)


def test_admm_resume_mid_phase_is_exact(dense, digits, tmp_path):
    net, _ = dense
    train, _ = digits
    train = train[:8]
    targets = {"conv3": Candidate("block", (4, 1), 0.7)}
    cfg = dict(epochs=4, lr=1e-3, prune_epochs=2, method="admm", admm_every=3)
    whole = PruneTrainer(net, targets, TrainConfig(**cfg)).fit(
        train, nn.functional.cross_entropy)
    ck = tmp_path / "ck.pt"
    first = PruneTrainer(net, targets, TrainConfig(checkpoint=str(ck), **cfg))
    first.fit(train, nn.functional.cross_entropy, max_epochs=1)      # inside the phase
    assert not first.hard and first.admm["updates"] > 0
    second = PruneTrainer(net, targets, TrainConfig(checkpoint=str(ck), **cfg))
    resumed = second.fit(train, nn.functional.cross_entropy)
    for (k, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


def test_method_options_are_checked_and_progress_is_shown(dense, digits, capsys):
    net, _ = dense
    train, _ = digits
    for bad, match in ((dict(method="admmm"), "method"),
                       (dict(method="admm", soft=True), "soft"),
                       (dict(method="admm", rho=1.0, rho_max=0.1), "rho_max"),
                       (dict(method="lasso", lasso=0.0), "lasso"),
                       (dict(admm_every=0), "admm_every")):
        with pytest.raises(ConfigError, match=match):
            PruneTrainer(net, {}, TrainConfig(**bad))
    t = PruneTrainer(net, {"conv3": Candidate("block", (4, 1), 0.5)},
                     TrainConfig(epochs=2, prune_epochs=1, method="admm", progress=True))
    t.fit(train[:4], nn.functional.cross_entropy)
    err = capsys.readouterr().err
    assert "[train admm] epoch 1/2" in err and "[train admm] epoch 2/2" in err
    assert "gap" in err                      # the ADMM phase reports its structure gap


def test_admm_update_is_the_scaled_dual_step(dense):
    """One Z / U update against its definition: Z = Proj(W + U), U = (U + W - Z) * rho_old /
    rho_new (the scaled dual keeps lambda = rho * U when rho grows)."""
    net, _ = dense
    t = PruneTrainer(net, {"conv2": Candidate("block", (4, 1), 0.8)},
                     TrainConfig(method="admm", rho=0.5, rho_max=4.0))
    t._admm_init()
    w0 = t.model.conv2.weight.detach().clone()
    assert torch.allclose(t.admm["Z"]["conv2"], _block_projection_reference(w0, 4, 0.8))
    assert not t.admm["U"]["conv2"].any()
    g = torch.Generator().manual_seed(1)
    u = 0.01 * torch.randn(w0.shape, generator=g)
    t.admm["U"]["conv2"] = u.clone()
    with torch.no_grad():                       # as if SGD had moved W
        t.model.conv2.weight.add_(0.02 * torch.randn(w0.shape, generator=g))
    w = t.model.conv2.weight.detach().clone()
    t._admm_update(2.0)
    z = _block_projection_reference(w + u, 4, 0.8)
    assert torch.allclose(t.admm["Z"]["conv2"], z, atol=1e-7)
    assert torch.allclose(t.admm["U"]["conv2"], (u + w - z) * 0.5 / 1.0, atol=1e-7)
    assert t.admm["rho"] == 1.0 and t.admm["updates"] == 1
    t._admm_update(8.0)
    assert t.admm["rho"] == 4.0                 # capped at rho_max
    pen = float(t._admm_penalty())
    ref = 0.5 * 4.0 * float((t.model.conv2.weight - t.admm["Z"]["conv2"] +
                             t.admm["U"]["conv2"]).pow(2).sum())
    assert abs(pen - ref) < 1e-5 * max(1.0, ref)


def test_optimize_mapper_with_finetune_uses_its_data_for_the_proxy(dense, digits, tmp_path,
                                                                     monkeypatch):
    """finetune={"train", "val"} with a mapper: the mappers' accuracy proxy is held-out top-1
    on the same data, the trainer (ADMM here) logs it per epoch, and the result still runs the
    plan natively, matching its own masked model."""
    import engine
    monkeypatch.setenv("ENGINE_CACHE_DIR", str(tmp_path / "cache"))
    net, dense_acc = dense
    train, val = digits
    x = val[0][0][:1]
    opt = engine.optimize(net, (x,), mapper="rule", sparsity=0.7, capture=False,
                          measure=False, progress=False, allow_infeasible=True,
                          backends="native",      # the subject is training, not backends
                          finetune={"train": train, "val": val, "epochs": 4, "lr": 1e-3,
                                    "prune_epochs": 2, "method": "admm"})
    info = opt.plan.meta["mapping"]
    assert "held-out accuracy" in json.dumps(info)
    note = next(n for n in opt.notes if "fine-tuned" in n)
    assert "admm" in note and "held-out top-1" in note
    logged = float(note.split("held-out top-1 ")[1].split(")")[0])
    assert abs(logged - accuracy(opt.pruned_model, val)) < 0.02   # masks re-derived, same model
    for c in opt.plan.pruned:
        w = getattr(opt.pruned_model, c.layer).weight
        assert abs(float((w == 0).float().mean()) - c.sparsity) < 0.02
    xs = val[0][0][:8]
    with torch.no_grad():
        assert torch.allclose(opt(xs), opt.pruned_model(xs), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", ["soft", "gradual"])
def test_filter_pruning_zeroes_whole_channels_and_the_filter_scheme_removes_them(
        dense, digits, method):
    """SFP on filters (soft: pruned filters keep learning until the end) and hard gradual filter
    pruning: whole output filters and their BatchNorm scale / shift end at zero, so engine's
    filter scheme (a physically smaller model) removes exactly them and computes the same
    function as the trained model (the reference: its own dense forward)."""
    from engine.schemes import get_scheme
    from engine.train import Target
    net, dense_acc = dense
    train, val = digits
    t = PruneTrainer(net, {"conv2": Target("filter", sparsity=0.5)},
                     TrainConfig(epochs=4, lr=1e-3, prune_epochs=2, method=method))
    model = t.fit(train, nn.functional.cross_entropy)
    rows = model.conv2.weight.detach().reshape(64, -1)
    dead = (rows == 0).all(dim=1)
    assert int(dead.sum()) == 32
    assert bool((rows[~dead] != 0).any(dim=1).all())
    assert bool((model.bn2.weight[dead] == 0).all() and (model.bn2.bias[dead] == 0).all())
    assert bool((model.bn2.weight[~dead] != 0).all())
    x = val[0][0]
    small, record = get_scheme("filter").prune(model, (x[:1],), {"conv2": 0.5})
    assert small.conv2.out_channels == 32 and small.conv3.in_channels == 32
    kept = record["groups"]["conv2"]["kept"]
    assert kept == [i for i in range(64) if not dead[i]]
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5, rtol=1e-4)
    assert accuracy(small, val) >= dense_acc - 0.03


def test_filter_targets_in_lasso_are_whole_filters(dense):
    from engine.train import Target
    net, _ = dense
    t = PruneTrainer(net, {"conv3": Target("filter", sparsity=0.25)}, TrainConfig(method="lasso"))
    t._reweight()
    norms = t._group_norms("conv3", t.model.conv3.weight)
    assert torch.allclose(norms, t.model.conv3.weight.detach().reshape(64, -1).norm(dim=1))
    with pytest.raises(ConfigError, match="scheme"):
        Target("channels", sparsity=0.5)
    with pytest.raises(ConfigError, match="sparsity"):
        Target("filter", sparsity=1.0)


def test_fit_takes_a_shuffling_dataloader(dense, digits):
    """The usual user input: a torch DataLoader (re-iterable, shuffles each epoch)."""
    from torch.utils.data import DataLoader, TensorDataset
    from engine.train import Target
    net, _ = dense
    train, val = digits
    xs = torch.cat([x for x, _ in train])
    ys = torch.cat([y for _, y in train])
    loader = DataLoader(TensorDataset(xs, ys), batch_size=100, shuffle=True)
    t = PruneTrainer(net, {"conv2": Target("filter", sparsity=0.25),
                           "conv3": Candidate("block", (4, 1), 0.6)},
                     TrainConfig(epochs=2, prune_epochs=1, method="gradual"))
    model = t.fit(loader, nn.functional.cross_entropy)
    assert int((model.conv2.weight.reshape(64, -1) == 0).all(dim=1).sum()) == 16
    assert abs(float((model.conv3.weight == 0).float().mean()) - 0.6) < 0.01
    assert accuracy(model, val) > 0.9


def test_progress_bar_redraws_in_place_on_a_terminal(monkeypatch):
    import io
    from engine.train import trainer as tr

    class _Tty(io.StringIO):
        def isatty(self):
            return True

    out = _Tty()
    monkeypatch.setattr(tr.sys, "stderr", out)
    bar = tr._Progress("[train admm] epoch 1/3", 4, True)
    for i in range(4):
        bar.step(f"loss {i}")
    bar.close("loss 0.1234")
    text = out.getvalue()
    assert "\r[train admm] epoch 1/3 [" + "#" * 24 + "] 4/4 loss 3" in text   # last step drawn
    assert text.endswith("loss 0.1234 (0.0 s)\x1b[K\n")
    quiet = _Tty()
    monkeypatch.setattr(tr.sys, "stderr", quiet)
    bar = tr._Progress("x", 2, False)
    bar.step()
    bar.close("done")
    assert quiet.getvalue() == ""


def test_cosine_schedule_reaches_zero_at_the_end(dense, digits):
    """lr at batch b of B is lr * (1 + cos(pi * b / B)) / 2, read off the optimizer as each
    batch is consumed."""
    import math
    net, _ = dense
    train, _ = digits
    seen = []
    t = PruneTrainer(net, {"conv3": Candidate("block", (4, 1), 0.5)},
                     TrainConfig(epochs=2, lr=1e-2, prune_epochs=1, lr_schedule="cosine"))
    made = []
    orig = t._optimizer
    t._optimizer = lambda: made.append(orig()) or made[-1]

    class _Spy(list):
        def __iter__(self):
            for b in list.__iter__(self):
                yield b
                seen.append(made[-1].param_groups[0]["lr"])

    t.fit(_Spy(train[:5]), nn.functional.cross_entropy)
    want = [1e-2 * 0.5 * (1 + math.cos(math.pi * b / 10)) for b in range(10)]
    assert seen == pytest.approx(want)
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="step").validate()


class _Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(16)
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = torch.relu(self.bn0(self.conv0(x)))
        y = torch.relu(self.bn1(self.conv1(y)) + y)
        return self.fc(y.mean((2, 3)))


def test_filters_coupled_by_a_residual_add_leave_the_norms_alone():
    """conv1's output channels are also conv0's (the add): zeroing bn0 / bn1 channels would
    cut conv0's unpruned filters too, so only conv1's filters are zeroed, with a note."""
    from engine.train import Target
    torch.manual_seed(0)
    net = _Res()
    for bn in (net.bn0, net.bn1):
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, 0.1, 0.5)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g))
               for _ in range(3)]
    t = PruneTrainer(net, {"conv1": Target("filter", sparsity=0.5)},
                     TrainConfig(epochs=1, prune_epochs=1, lr=1e-3))
    model = t.fit(batches, nn.functional.cross_entropy)
    dead = (model.conv1.weight.reshape(16, -1) == 0).all(dim=1)
    assert int(dead.sum()) == 8
    assert bool((model.bn1.weight != 0).all() and (model.bn0.weight != 0).all())
    assert any("coupled" in n and "conv1" in n for n in t.notes)
