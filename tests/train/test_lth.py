"""engine.train method "lth" (Structure-LTH, engine/train/lth.py) on scikit-learn's bundled digits:
IMP rounds ramp to the target, rewinding restores the rewind point's values exactly (checked
against the weights of an independent run stopped at the rewind epoch), pruned weights stay
exactly zero, the regrouped masks are block masks at exactly the target, resume is exact, bad
options name themselves, and accuracy is within a margin of the gradual method's."""
import pytest
import torch
from torch import nn

from engine.accuracy import accuracy
from engine.errors import ConfigError
from engine.schemes.block import block_structure_holds
from engine.train import PruneTrainer, Target, TrainConfig, uniform_targets
from engine.train.lth import LthTrainer, round_sparsity
from mapping import Candidate

sklearn = pytest.importorskip("sklearn.datasets")
CE = nn.functional.cross_entropy


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

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
    net = _Net()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(6):
        for xb, yb in digits[0]:
            opt.zero_grad()
            CE(net(xb), yb).backward()
            opt.step()
    torch.set_num_threads(prev)
    return net.eval()


TARGETS = {"conv2": Candidate("block", (4, 1), 0.75), "conv3": Candidate("block", (4, 4), 0.75)}
# dense phase epochs 0-1 (rewind point after epoch 1), round 1 epochs 2-3, round 2 epochs 4-5,
# regroup at the end of epoch 6, final retraining epochs 6-7
SHORT = dict(method="lth", epochs=8, prune_epochs=6, imp_rounds=2, rewind_epoch=1, lr=2e-3,
             lr_schedule="cosine")


def test_rounds_rewind_to_the_rewind_point_and_masks_hold(dense, digits):
    train = digits[0][:6]
    ref = PruneTrainer(dense, TARGETS, TrainConfig(**SHORT))
    ref.fit(train, CE, max_epochs=1)             # an independent run to the rewind epoch
    at_k = {k: v.clone() for k, v in ref.model.state_dict().items()}
    seen = []

    def check(model):               # after every epoch: pruned weights exactly zero
        for n, m in t.masks.items():
            assert bool((getattr(model, n).weight[~m] == 0).all()), (t.epoch, n)
        seen.append({n: m.clone() for n, m in t.masks.items()})
        return 0.0

    t = PruneTrainer(dense, TARGETS, TrainConfig(**SHORT))
    assert isinstance(t, LthTrainer)
    for stop, rnd in ((2, 1), (4, 2), (6, 3)):          # phase ends: prune (or regroup), rewind
        t.fit(train, CE, val=check, max_epochs=stop - t.epoch)
        assert t.imp_round == rnd
        state = t.model.state_dict()
        for k, v in at_k.items():
            layer = k.rpartition(".")[0]
            want = v * t.masks[layer] if k.endswith("weight") and layer in TARGETS else v
            assert torch.equal(state[k], want), (stop, k)
        for n, c in TARGETS.items():
            pruned = int((~t.masks[n]).sum())
            if rnd <= 2:        # IMP: unstructured, p of the rest each round
                assert pruned == round(round_sparsity(c.sparsity, rnd, 2) * t.masks[n].numel())
            else:               # regrouped: the target's blocks at exactly its sparsity
                assert pruned == round(c.sparsity * t.masks[n].numel())
                assert block_structure_holds(t.masks[n], c.block)
    t.fit(train, CE, val=check)
    assert len(seen) == 8
    for n in TARGETS:
        assert bool((seen[3][n] <= seen[1][n]).all())        # round 2 inside round 1
        assert all(torch.equal(s[n], seen[5][n]) for s in seen[5:])   # fixed once regrouped
        w = getattr(t.model, n).weight
        assert torch.equal(w != 0, t.masks[n]) and not torch.equal(w, at_k[f"{n}.weight"])
    assert float((dense.conv2.weight == 0).float().mean()) == 0.0       # the input untouched


def test_global_round_is_one_threshold_over_all_targets(dense, digits):
    train = digits[0][:4]
    cfg = dict(SHORT, lr_schedule="constant", imp_global=True)
    # the weights round 1 ranks: a run whose dense phase is longer, stopped at the same epoch
    # (constant rate, nothing pruned yet: the same two epochs of training)
    ref = PruneTrainer(dense, TARGETS, TrainConfig(**dict(cfg, imp_rounds=1)))
    ref.fit(train, CE, max_epochs=2)
    assert ref.imp_round == 0
    t = PruneTrainer(dense, TARGETS, TrainConfig(**cfg))
    t.fit(train, CE, max_epochs=2)
    assert t.imp_round == 1
    w = {n: getattr(ref.model, n).weight.detach().abs() for n in TARGETS}
    pruned = torch.cat([w[n][~t.masks[n]] for n in TARGETS])
    kept = torch.cat([w[n][t.masks[n]] for n in TARGETS])
    assert float(pruned.max()) <= float(kept.min())            # one threshold
    counts = {n: round(round_sparsity(c.sparsity, 1, 2) * w[n].numel())
              for n, c in TARGETS.items()}
    assert pruned.numel() == sum(counts.values())
    assert any(int((~t.masks[n]).sum()) != counts[n] for n in TARGETS)   # not per layer


def test_filter_refill_rewind_to_start_and_exact_resume(dense, digits, tmp_path):
    train = digits[0][:4]
    targets = {"conv2": Target("filter", sparsity=0.5),
               "conv3": Candidate("unstructured", None, 0.7)}
    cfg = dict(SHORT, rewind_epoch=0)
    whole = PruneTrainer(dense, targets, TrainConfig(**cfg))
    # (fit() called again without a checkpoint starts a fresh optimizer: here at a phase end,
    # where the rewind resets its state anyway)
    whole.fit(train, CE, max_epochs=2)        # rewound to the model it was given
    got, given = whole.model.state_dict(), dense.state_dict()
    for k, v in given.items():
        layer = k.rpartition(".")[0]
        want = v * whole.masks[layer] if k.endswith("weight") and layer in targets else v
        assert torch.equal(got[k], want), k
    whole.fit(train, CE)
    rows = whole.masks["conv2"].reshape(16, -1)
    assert bool((rows.all(1) | ~rows.any(1)).all()) and int(rows.all(1).sum()) == 8  # refill
    assert int((~whole.masks["conv3"]).sum()) == round(0.7 * whole.masks["conv3"].numel())
    ck = tmp_path / "lth.pt"
    first = PruneTrainer(dense, targets, TrainConfig(checkpoint=str(ck), **cfg))
    first.fit(train, CE, max_epochs=5)
    second = PruneTrainer(dense, targets, TrainConfig(checkpoint=str(ck), **cfg))
    second.fit(train, CE)
    assert second.epoch == 8 and second.imp_round == 3
    for (k, a), (_, b) in zip(whole.model.state_dict().items(),
                              second.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_regroup_targets_keep_their_granularity(dense, digits):
    targets = {"conv3": Candidate("regroup", (4, 1), 0.75, options=(("granularity", "channel"),))}
    t = PruneTrainer(dense, targets, TrainConfig(**SHORT))
    t.fit(digits[0][:2], CE)
    rows = t.masks["conv3"].reshape(8, 4, -1)               # 8 row blocks of 4 channels
    assert bool((rows.all(2).all(1) | ~rows.any(2).any(1)).all())
    assert int(rows.all(2).all(1).sum()) == 2 and torch.equal(
        t.model.conv3.weight != 0, t.masks["conv3"])


@pytest.mark.parametrize("cfg,targets,match", [
    (dict(imp_rounds=0), TARGETS, "imp_rounds"),
    (dict(imp_rounds=1.5), TARGETS, "imp_rounds"),
    (dict(rewind_epoch=9), TARGETS, "rewind_epoch"),
    (dict(rewind_epoch=3), TARGETS, "rewind_epoch"),          # after the dense phase (2)
    (dict(rewind_epoch=-1), TARGETS, "rewind_epoch"),
    (dict(prune_epochs=2), TARGETS, "prune_epochs"),          # < imp_rounds + 1 phases
    (dict(prune_epochs=8), TARGETS, "prune_epochs"),          # nothing left to retrain
    ({}, {"conv2": Candidate("block", (32, 1), 0.8)}, r"block \(32, 1\).*'conv2'"),
    ({}, {"conv2": Candidate("pattern", None, 0.8)}, "'conv2' has scheme 'pattern'"),
])
def test_bad_options_name_themselves(dense, cfg, targets, match):
    with pytest.raises(ConfigError, match=match):
        PruneTrainer(dense, targets, TrainConfig(**dict(SHORT, **cfg)))


def test_accuracy_within_a_margin_of_gradual(dense, digits):
    train, val = digits
    targets = uniform_targets(dense, "block", (4, 1), 0.75)
    base = accuracy(dense, val)
    gradual = PruneTrainer(dense, targets, TrainConfig(epochs=3, prune_epochs=1, lr=2e-3,
                                                       lr_schedule="cosine")).fit(train, CE)
    lth = PruneTrainer(dense, targets, TrainConfig(method="lth", epochs=4, prune_epochs=2,
                                                   imp_rounds=1, rewind_epoch=0, lr=2e-3,
                                                   lr_schedule="cosine")).fit(train, CE)
    g, a = accuracy(gradual, val), accuracy(lth, val)
    assert base > 0.9 and g > 0.5 * base       # a meaningful comparison
    assert a >= g - 0.05, (a, g, base)
