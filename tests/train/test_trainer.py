"""engine.train: gradual structured pruning + masked fine-tuning on scikit-learn's bundled digits
(real data, shipped by the package): masks hold, accuracy recovers, resume is exact."""
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
def digits():
    d = sklearn.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    train = [(x[i:i + 50], y[i:i + 50]) for i in range(0, 1400, 50)]
    return train, [(x[1400:], y[1400:])]          # 397 held-out samples


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
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        targets = {"conv3": Candidate("block", (8, 1), 0.7), "conv2": Candidate("pattern", None,
                                                                                  0.6)}
        cfg = dict(epochs=4, lr=1e-3, prune_epochs=2)
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
    finally:
        torch.set_num_threads(prev)


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
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = _Net()            # from scratch, as SFP trains: the ranking still moves a lot
    try:
        t = PruneTrainer(net, {"conv3": Candidate("block", (4, 1), 0.8)},
                         TrainConfig(epochs=3, lr=3e-3, prune_epochs=1, soft=True))
        t.fit(train, nn.functional.cross_entropy, max_epochs=1)
        m1 = t.masks["conv3"].clone()
        t.fit(train, nn.functional.cross_entropy, max_epochs=1)
        m2 = t.masks["conv3"]
        assert bool((~m1 & m2).any())          # pruned after epoch 1, kept after epoch 2
        model = t.fit(train, nn.functional.cross_entropy)
    finally:
        torch.set_num_threads(prev)
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
