"""AutoBot (engine/train/autobot.py, bottlenecks.py): the gated copy starts as the model, {0, 1}
gates compute what the physically shrunk model computes, the FLOPs model counts what the shrunk
model costs, the FLOPs target is met on real data (sklearn digits), coupled channels share one
gate, the user's model is untouched, bad inputs are refused; and the scores work as the filter
scheme's importance, through optimize() too."""
import copy
import math

import pytest
import torch
from torch import nn

import engine
from engine.errors import ConfigError, SchemeError
from engine.schemes import get_scheme
from engine.schemes.importance import ChannelScores
from engine.train import AutoBotConfig, autobot
from engine.train.bottlenecks import Bottlenecks


class ResDw(nn.Module):
    """A residual add (stem and conv_a coupled), a depthwise conv carrying that group, a conv
    without BatchNorm feeding a linear through a flatten (each channel = 16 features)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv_a, self.bn_a = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.dw, self.dw_bn = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8)
        self.conv_c = nn.Conv2d(8, 6, 3, stride=2, padding=1)      # 8x8 -> 4x4
        self.fc = nn.Linear(6 * 16, 10)

    def forward(self, x):
        x = torch.relu(self.stem_bn(self.stem(x)))
        y = torch.relu(self.bn_a(self.conv_a(x)) + x)
        y = torch.relu(self.dw_bn(self.dw(y)))
        return self.fc(torch.relu(self.conv_c(y)).flatten(1))


def _resdw(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = ResDw()
    g = torch.Generator().manual_seed(seed + 1)
    for bn in (m.stem_bn, m.bn_a, m.dw_bn):       # non-trivial statistics and affine terms
        with torch.no_grad():
            bn.running_mean.copy_(torch.rand(8, generator=g) - 0.5)
            bn.running_var.copy_(torch.rand(8, generator=g) + 0.5)
            bn.weight.copy_(torch.rand(8, generator=g) + 0.5)
            bn.bias.copy_(torch.rand(8, generator=g) - 0.5)
    return m.eval()


def brute_macs(model: nn.Module, x: torch.Tensor) -> float:
    """Reference count: per conv / linear call, output elements x (weight.shape[1] x kernel)."""
    total = []

    def hook(m, i, out):
        total.append(out[0].numel() * m.weight.shape[1] * m.weight[0, 0].numel()
                     if isinstance(m, nn.Conv2d) else out[0].numel() * m.in_features)
    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(x[:1])
    for h in hs:
        h.remove()
    return float(sum(total))


def _random_cut(net: Bottlenecks, seed: int):
    """Random kept channels per gated group: {0,1} gates, the scores and ratios cutting them."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for grp in net.groups:
        k = (torch.rand(grp.size, generator=g) < 0.6).float()
        k[torch.randint(grp.size, (1,), generator=g)] = 1.0
        keep.append(k)
    scores = ChannelScores({m.module: k[list(m.index)] for grp, k in zip(net.groups, keep)
                            for m in grp.members if m.dim == 0 and m.role == "producer"})
    sparsity = {grp.name: 1 - float(k.sum()) / grp.size for grp, k in zip(net.groups, keep)}
    return keep, scores, sparsity


def test_gated_copy_starts_as_the_model_and_gates_get_gradients():
    model = _resdw()
    x = torch.randn(4, 3, 8, 8)
    net = Bottlenecks(model, (x[:1],))
    assert torch.allclose(net.model(x), model(x), atol=1e-6, rtol=0)
    net.model(x).square().sum().backward()
    assert all(b.grad is not None and b.grad.abs().sum() > 0 for b in net.beta)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_one_gates_compute_the_shrunk_model_and_its_macs(seed):
    model = _resdw()
    x = torch.randn(4, 3, 8, 8)
    net = Bottlenecks(model, (x[:1],))
    keep, scores, sparsity = _random_cut(net, seed)
    with torch.no_grad():         # kept: the initial gate (factor 1); removed: gate 0
        for b, k in zip(net.beta, keep):
            b.copy_(torch.where(k > 0, torch.full_like(b, net.beta0), torch.full_like(b, -200.)))
    small, _ = get_scheme("filter").prune(model, (x[:1],), sparsity, scores)
    assert torch.allclose(net.model(x), small(x), atol=1e-5, rtol=1e-5)
    assert net.dense_macs == brute_macs(model, x)
    assert float(net.macs(keep)) == pytest.approx(brute_macs(small, x), rel=1e-9)


def test_coupled_channels_share_one_gate():
    model = _resdw()
    x = torch.randn(64, 3, 8, 8)
    y = model(x).argmax(1)
    res = autobot(model, [(x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)], flops_target=0.6)
    net = Bottlenecks(model, (x[:1],))
    assert [g.name for g in net.groups] == ["stem", "conv_c"] and len(net.beta) == 2
    assert set(res.gates) == {"stem", "conv_c"}
    assert torch.equal(res.scores["stem"], res.scores["conv_a"])
    assert torch.equal(res.scores["stem"], res.scores["dw"])
    small, record = res.prune(model, (x[:1],))
    kept = record["groups"]["stem"]["kept"]
    assert small.stem.out_channels == small.conv_a.out_channels == small.dw.out_channels == \
        len(kept) == len(res.kept["stem"])
    assert small.fc.in_features == 16 * small.conv_c.out_channels


@pytest.fixture(scope="module")
def digits_run():
    """A small CNN trained on the real 8x8 digits, and AutoBot at 50% FLOPs on 40% of them."""
    pytest.importorskip("sklearn")
    from engine.bench.autobot import rebatch, train_dense
    from engine.bench.recovery import digits
    train, val = digits(size=8)
    net = train_dense(train, 3, seed=0, width=8)
    sub = rebatch(train, 0.4)
    return net, sub, train, val, autobot(net, sub, flops_target=0.5)


def test_flops_target_met_on_digits(digits_run):
    net, sub, _, val, res = digits_run
    x = val[0][0][:1]
    assert len(res.history) == len(sub)                  # one pass over the batches
    assert abs(res.flops["at_0.5"] - 0.5) < 0.1          # the gates themselves reach it
    small, _ = res.prune(net, (x,))
    measured = brute_macs(small, x) / brute_macs(net, x)
    assert measured == pytest.approx(res.flops["chosen"], rel=1e-9)
    assert 0.45 < measured <= 0.5
    assert res.flops["dense_macs"] == brute_macs(net, x)


def test_autobot_before_finetune_not_worse_than_l1_at_its_ratios(digits_run):
    """The gates are trained on the task loss with the rest frozen; magnitude ignores it. On
    digits the AutoBot cut is far better before fine-tuning (measured: README); the margin
    here is loose so the test asks only that it is not worse."""
    from engine.accuracy import accuracy, recalibrate_bn
    net, _, train, val, res = digits_run
    x = val[0][0][:1]
    acc = {}
    for name, imp in (("autobot", res.scores), ("l1", "l1")):
        small, _ = get_scheme("filter").prune(net, (x,), res.sparsity, imp)
        recalibrate_bn(small, (b[0] for b in train[:10]))
        acc[name] = accuracy(small.eval(), val)
    assert acc["autobot"] >= acc["l1"] - 0.02, acc


def test_user_model_untouched():
    model = _resdw().train()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(32, 3, 8, 8)
    autobot(model, [(x[:16], torch.arange(16) % 10), (x[16:], torch.arange(16) % 10)],
            flops_target=0.7)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


def test_bad_inputs_raise_clear_errors():
    model = _resdw()
    x = torch.randn(8, 3, 8, 8)
    data = [(x, torch.arange(8))]
    for bad in (0.0, -0.1, 1.5, math.nan, "0.5", True):
        with pytest.raises(ConfigError, match="flops_target"):
            autobot(model, data, flops_target=bad)
    with pytest.raises(ConfigError, match="no batches"):
        autobot(model, [], flops_target=0.5)
    with pytest.raises(ConfigError, match="batch 0"):
        autobot(model, [x], flops_target=0.5)
    with pytest.raises(ConfigError, match="below what keeping one channel"):
        autobot(model, data, flops_target=1e-4)
    with pytest.raises(ConfigError, match="no prunable channel group"):
        autobot(nn.Sequential(nn.Conv2d(3, 4, 3)), data, flops_target=0.5)
    with pytest.raises(ConfigError, match="no prunable channel group"):
        autobot(model, data, flops_target=0.5, exclude=("stem", "conv_c"))
    with pytest.raises(ConfigError, match="lr"):
        autobot(model, data, config=AutoBotConfig(lr=0))
    with pytest.raises(ConfigError, match="threshold"):
        autobot(model, data, config=AutoBotConfig(threshold=2.0))


def test_scores_through_optimize_and_misuse():
    model = _resdw()
    x = torch.randn(8, 3, 8, 8)
    res = autobot(model, [(x, model(x).argmax(1))] * 4, flops_target=0.6)
    small, _ = res.prune(model, (x[:1],))
    opt = engine.optimize(model, (x[:1],), scheme="filter", sparsity=res.sparsity,
                          importance=res.scores, measure=False, capture=False, progress=False)
    shapes = {n: m.weight.shape for n, m in small.named_modules() if hasattr(m, "weight")}
    assert {n: m.weight.shape for n, m in opt.pruned_model.named_modules()
            if hasattr(m, "weight")} == shapes
    assert torch.allclose(opt(x), small(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="filter / channel"):
        engine.optimize(model, (x[:1],), sparsity=0.5, importance=res.scores, measure=False,
                        capture=False, progress=False)
    with pytest.raises(ConfigError, match="needs scheme 'filter'"):
        engine.optimize(model, (x[:1],), sparsity=res.sparsity, measure=False, capture=False,
                        progress=False)
    with pytest.raises(ConfigError, match="layer 'stem'"):
        engine.optimize(model, (x[:1],), scheme="filter", sparsity={"stem": 1.5},
                        measure=False, capture=False, progress=False)
    with pytest.raises(SchemeError, match="none given for group 'conv_c'"):
        get_scheme("filter").prune(model, (x[:1],), 0.5, ChannelScores(stem=torch.ones(8)))
    with pytest.raises(SchemeError, match=r"shape \(8,\)"):
        get_scheme("filter").prune(model, (x[:1],), {"stem": 0.5},
                                   ChannelScores(stem=torch.ones(3)))
