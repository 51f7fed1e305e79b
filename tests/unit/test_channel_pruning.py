"""Tests for coupled-group filter / channel pruning (engine/graph/dependency.py,
engine/graph/shrink.py, engine/schemes/channel.py).

The reference for every cut is independent of the shrinking code: in a copy of the original
model, zero the pruned channels at their producers (conv / linear rows and bias, BN weight and
bias, depthwise rows), so each pruned channel is exactly zero everywhere it flows; that masked
model must give the same output as the physically smaller one.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from engine.errors import ConfigError
from engine.graph.dependency import ChannelGroup, build_groups
from engine.schemes import get_scheme
from engine.schemes.channel import ChannelScheme, FilterScheme, GroupScheme, replay


# -- small hand-made models --------------------------------------------------------------------
class ConvChain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.conv_a, self.bn_a = nn.Conv2d(16, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv_b, self.bn_b = nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.relu(self.stem_bn(self.stem(x)))
        y = self.bn_b(self.conv_b(self.relu(self.bn_a(self.conv_a(x)))))
        x = self.relu(y + x)
        return self.fc(x.mean((2, 3)))


class DepthwiseSeparable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.dw_bn = nn.BatchNorm2d(16)
        self.pw, self.pw_bn = nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24)
        self.act = nn.ReLU6()
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        x = self.act(self.dw_bn(self.dw(x)))
        x = self.act(self.pw_bn(self.pw(x)))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 12, 1)
        self.bn = nn.BatchNorm2d(20)
        self.conv = nn.Conv2d(20, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        x = torch.relu(self.conv(torch.relu(self.bn(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class ConvFlattenLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)    # 8x8 -> 8 x 4x4
        self.fc1 = nn.Linear(8 * 16, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x)).view(x.size(0), -1)
        return self.fc2(torch.relu(self.fc1(x)))


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(relu(fc1(mean(x))))): the mul couples conv's and fc2's channels; the
    depthwise conv has a channel multiplier of 2; a grouped conv blocks its groups."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc1, self.fc2 = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.dw = nn.Conv2d(16, 32, 3, padding=1, groups=16)
        self.grouped = nn.Conv2d(32, 32, 1, groups=4)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        x = self.grouped(torch.relu(self.dw(x)))
        return self.head(torch.flatten(x.mean((2, 3), keepdim=True), 1))


class ChannelFlip(nn.Module):
    """conv1's channels are reversed by an op the graph does not model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x)).flip(1)))
        return self.fc(x.mean((2, 3)))


class Ghost(nn.Module):
    """GhostNet's ghost module: cat(primary 1x1, depthwise of it)[:, :oup], then a consumer."""

    def __init__(self, oup: int = 8) -> None:
        super().__init__()
        self.oup = oup
        self.primary = nn.Conv2d(3, 4, 1)
        self.cheap = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.head = nn.Conv2d(oup, 4, 1)

    def forward(self, x):
        x1 = torch.relu(self.primary(x))
        out = torch.cat([x1, torch.relu(self.cheap(x1))], dim=1)
        return self.head(out[:, :self.oup, :, :])


SMALL = {  # name -> (builder, input shape)
    "conv_chain": (ConvChain, (2, 3, 8, 8)),
    "residual": (Residual, (2, 3, 8, 8)),
    "depthwise": (DepthwiseSeparable, (2, 3, 8, 8)),
    "concat": (Concat, (2, 3, 8, 8)),
    "flatten_linear": (ConvFlattenLinear, (2, 3, 8, 8)),
    "squeeze_excite": (SqueezeExcite, (2, 3, 8, 8)),
    "ghost": (Ghost, (2, 3, 8, 8)),
}


# -- helpers -----------------------------------------------------------------------------------
def _build(builder, seed: int = 0) -> nn.Module:
    """A seeded eval-mode model with non-trivial BN statistics and affine parameters."""
    torch.manual_seed(seed)
    model = builder()
    g = torch.Generator().manual_seed(seed + 100)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


def _input(shape, seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _masked_reference(model: nn.Module, record: dict) -> nn.Module:
    """The original model with the pruned channels zeroed at their producers only."""
    ref = copy.deepcopy(model).eval()
    for group in record["groups"].values():
        for m in group["members"]:
            if m["dim"] != 0:
                continue    # consumers are left alone: a zero channel contributes nothing
            pruned = sorted(set(range(m["size"])) - set(m["kept"]))
            layer = ref.get_submodule(m["module"])
            with torch.no_grad():
                layer.weight[pruned] = 0
                if layer.bias is not None:
                    layer.bias[pruned] = 0
    return ref


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _group(groups: list[ChannelGroup], name: str) -> ChannelGroup:
    return next(g for g in groups if g.name == name)


def _member(group: ChannelGroup, module: str, dim: int):
    return next(m for m in group.members if m.module == module and m.dim == dim)


def _member_record(record: dict, group: str, module: str, dim: int) -> dict:
    return next(m for m in record["groups"][group]["members"]
                if m["module"] == module and m["dim"] == dim)


def _assert_consistent(model, pruned, record, x) -> None:
    with torch.no_grad():
        expected = _masked_reference(model, record)(x)
        got = pruned.eval()(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


# -- the dependency graph ----------------------------------------------------------------------
def test_conv_chain_groups_and_boundaries():
    groups = build_groups(_build(ConvChain), (_input((1, 3, 8, 8)),))
    by_name = {g.name: g for g in groups}
    assert set(by_name) == {"input:x", "conv1", "conv2", "fc"}
    assert {(m.module, m.dim, m.role) for m in by_name["conv1"].members} == {
        ("conv1", 0, "producer"), ("bn1", 0, "norm"), ("conv2", 1, "consumer")}
    assert by_name["conv2"].size == 32 and by_name["conv2"].prunable
    assert _member(by_name["conv2"], "fc", 1).index == tuple(range(32))
    assert not by_name["input:x"].prunable and "model input" in by_name["input:x"].reasons
    assert not by_name["fc"].prunable and "reaches the model output" in by_name["fc"].reasons


def test_flatten_then_linear_maps_each_channel_to_hw_features():
    groups = build_groups(_build(ConvFlattenLinear), (_input((1, 3, 8, 8)),))
    fc1_in = _member(_group(groups, "conv"), "fc1", 1)
    assert fc1_in.index == tuple(c for c in range(8) for _ in range(16))


def test_residual_add_couples_every_branch():
    groups = build_groups(_build(Residual), (_input((1, 3, 8, 8)),))
    stem = _group(groups, "stem")
    assert {(m.module, m.dim) for m in stem.members} == {
        ("stem", 0), ("stem_bn", 0), ("conv_a", 1), ("conv_b", 0), ("bn_b", 0), ("fc", 1)}
    assert all(m.index == tuple(range(16)) for m in stem.members)
    assert "conv_b" not in {g.name for g in groups}   # merged into the stem's group


def test_depthwise_conv_joins_its_input_group():
    groups = build_groups(_build(DepthwiseSeparable), (_input((1, 3, 8, 8)),))
    g = _group(groups, "conv")
    assert {(m.module, m.role) for m in g.members} == {
        ("conv", "producer"), ("bn", "norm"), ("dw", "depthwise"), ("dw_bn", "norm"),
        ("pw", "consumer")}


def test_concat_maps_channel_offsets():
    groups = build_groups(_build(Concat), (_input((1, 3, 8, 8)),))
    a, b = _group(groups, "a"), _group(groups, "b")
    assert _member(a, "conv", 1).index == tuple(range(8)) + (-1,) * 12
    assert _member(b, "conv", 1).index == (-1,) * 8 + tuple(range(12))
    assert _member(b, "bn", 0).index == (-1,) * 8 + tuple(range(12))


def test_mul_couples_gate_and_grouped_conv_blocks():
    groups = build_groups(_build(SqueezeExcite), (_input((1, 3, 8, 8)),))
    g = _group(groups, "conv")
    assert {(m.module, m.dim, m.role) for m in g.members} == {
        ("conv", 0, "producer"), ("fc1", 1, "consumer"), ("fc2", 0, "producer"),
        ("dw", 0, "depthwise")}
    assert _member(g, "dw", 0).index == tuple(c for c in range(16) for _ in range(2))
    assert not g.prunable and any("grouped conv grouped" in r for r in g.reasons)
    assert _group(groups, "fc1").prunable


def test_channel_slice_keeping_every_channel_passes_them_through():
    """A ghost module's primary conv feeds the concat twice (itself and through the depthwise
    cheap op): its group spans both halves of the consumer's input; a slice that keeps every
    channel is transparent, one that drops channels blocks the group and names the slice."""
    groups = build_groups(_build(Ghost), (_input((1, 3, 8, 8)),))
    g = _group(groups, "primary")
    assert g.prunable, g.reasons
    assert _member(g, "head", 1).index == (0, 1, 2, 3, 0, 1, 2, 3)
    blocked = build_groups(_build(lambda: Ghost(oup=6)), (_input((1, 3, 8, 8)),))
    g = _group(blocked, "primary")
    assert not g.prunable and any("getitem" in r and "selects channels" in r for r in g.reasons)


def test_unmodelled_op_blocks_its_groups_with_the_op_named():
    model = _build(ChannelFlip)
    groups = build_groups(model, (_input((1, 3, 8, 8)),))
    g = _group(groups, "conv1")
    assert not g.prunable and any("flip" in r for r in g.reasons)
    new, record = FilterScheme().prune(model, (_input((2, 3, 8, 8)),), 0.5)
    assert "conv1" in record["skipped"] and "conv1" not in record["groups"]
    assert new.conv1.out_channels == 8 and new.conv2.out_channels == 4
    _assert_consistent(model, new, record, _input((2, 3, 8, 8)))


# -- pruning small models ----------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["filter", "channel"])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_pruned_model_matches_masked_original(name, scheme):
    builder, shape = SMALL[name]
    model, x = _build(builder), _input(shape)
    before = copy.deepcopy(model.state_dict())
    new, record = get_scheme(scheme).prune(model, (x,), 0.5)
    assert new is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    assert record["groups"] and _n_params(new) < _n_params(model)
    json.dumps(record)
    _assert_consistent(model, new, record, x)


def test_input_model_keeps_its_training_flags():
    model, x = _build(Residual).train(), _input((2, 3, 8, 8))
    stats = model.stem_bn.running_mean.clone()
    FilterScheme().prune(model, (x,), 0.5)
    assert all(m.training for m in model.modules())
    assert torch.equal(model.stem_bn.running_mean, stats)   # no forward ran in train mode


def test_channel_counts_and_params_follow_sparsity():
    model, x = _build(ConvChain), _input((1, 3, 8, 8))
    for s in (0.25, 0.5, 0.75):
        new, _ = FilterScheme().prune(model, (x,), s)
        c1, c2 = 16 - round(s * 16), 32 - round(s * 32)
        assert (new.conv1.out_channels, new.bn1.num_features, new.conv2.in_channels) == (c1, c1, c1)
        assert (new.conv2.out_channels, new.bn2.num_features, new.fc.in_features) == (c2, c2, c2)
        assert new.fc.out_features == 10 and new.conv1.in_channels == 3
        assert _n_params(new) == c1 * 3 * 9 + 2 * c1 + c2 * c1 * 9 + 2 * c2 + 10 * c2 + 10


def test_flatten_linear_loses_hw_features_per_channel():
    model, x = _build(ConvFlattenLinear), _input((2, 3, 8, 8))
    new, record = FilterScheme().prune(model, (x,), {"conv": 0.5})
    assert new.conv.out_channels == 4 and new.fc1.in_features == 4 * 16
    assert new.fc1.out_features == 32          # only the conv's group was asked for
    kept = record["groups"]["conv"]["kept"]
    fc1_in = _member_record(record, "conv", "fc1", 1)["kept"]
    assert fc1_in == [c * 16 + k for c in kept for k in range(16)]
    _assert_consistent(model, new, record, x)


def test_residual_group_prunes_all_coupled_layers_alike():
    model, x = _build(Residual), _input((2, 3, 8, 8))
    new, record = FilterScheme().prune(model, (x,), 0.5)
    kept = record["groups"]["stem"]["kept"]
    assert len(kept) == 8
    for module, dim in [("stem", 0), ("stem_bn", 0), ("conv_a", 1), ("conv_b", 0),
                        ("bn_b", 0), ("fc", 1)]:
        assert _member_record(record, "stem", module, dim)["kept"] == kept
    assert new.stem.out_channels == new.conv_b.out_channels == new.fc.in_features == 8
    kept_a = record["groups"]["conv_a"]["kept"]
    torch.testing.assert_close(new.conv_b.weight, model.conv_b.weight[kept][:, kept_a])
    _assert_consistent(model, new, record, x)


def test_depthwise_conv_keeps_in_out_and_groups_equal():
    model, x = _build(DepthwiseSeparable), _input((2, 3, 8, 8))
    new, record = FilterScheme().prune(model, (x,), 0.25)
    assert new.dw.in_channels == new.dw.out_channels == new.dw.groups == 12
    assert new.dw.weight.shape == (12, 1, 3, 3) and new.pw.in_channels == 12
    _assert_consistent(model, new, record, x)


def test_concat_prunes_each_source_by_its_own_group():
    model, x = _build(Concat), _input((2, 3, 8, 8))
    new, record = FilterScheme().prune(model, (x,), 0.5)
    assert (new.a.out_channels, new.b.out_channels) == (4, 6)
    assert new.bn.num_features == new.conv.in_channels == 10
    kept_b = record["groups"]["b"]["kept"]
    conv_in = _member_record(record, "b", "conv", 1)["kept"]
    assert conv_in == list(range(8)) + [8 + c for c in kept_b]
    _assert_consistent(model, new, record, x)


def test_at_least_one_channel_is_kept():
    model, x = _build(Concat), _input((2, 3, 8, 8))
    new, record = FilterScheme().prune(model, (x,), 0.99)
    assert (new.a.out_channels, new.b.out_channels, new.conv.out_channels) == (1, 1, 1)
    _assert_consistent(model, new, record, x)


def test_filter_and_channel_scores_read_rows_and_columns():
    model, x = _build(ConvChain), _input((1, 3, 8, 8))
    with torch.no_grad():   # conv1 filter norms grow with c, conv2 input-column norms shrink
        scale = torch.arange(1, 17, dtype=torch.float32)
        model.conv1.weight.copy_(torch.ones_like(model.conv1.weight) * scale.view(16, 1, 1, 1))
        model.conv2.weight.copy_(torch.ones_like(model.conv2.weight)
                                 * scale.flip(0).view(1, 16, 1, 1))
    _, by_rows = FilterScheme().prune(model, (x,), {"conv1": 0.5})
    _, by_cols = ChannelScheme().prune(model, (x,), {"conv1": 0.5})
    assert by_rows["groups"]["conv1"]["kept"] == list(range(8, 16))
    assert by_cols["groups"]["conv1"]["kept"] == list(range(8))


def test_importance_is_pluggable():
    model, x = _build(ConvChain), _input((1, 3, 8, 8))
    _, l2 = FilterScheme().prune(model, (x,), {"conv1": 0.5})
    _, inverse = FilterScheme().prune(model, (x,), {"conv1": 0.5},
                                      importance=lambda u: -u.norm(dim=1))
    kept_l2, kept_inv = l2["groups"]["conv1"]["kept"], inverse["groups"]["conv1"]["kept"]
    assert sorted(set(kept_l2) | set(kept_inv)) == list(range(16))   # complementary halves
    _, l1 = FilterScheme().prune(model, (x,), {"conv1": 0.5}, importance="l1")
    norms = model.conv1.weight.detach().abs().sum((1, 2, 3))
    assert l1["groups"]["conv1"]["kept"] == sorted(norms.argsort()[8:].tolist())


def test_per_group_sparsity_dict():
    model, x = _build(Residual), _input((2, 3, 8, 8))
    new, record = FilterScheme().prune(model, (x,), {"conv_b": 0.25, "conv_a": 0.5})
    assert set(record["groups"]) == {"stem", "conv_a"}   # conv_b's outputs are the stem group
    assert new.stem.out_channels == 12 and new.conv_a.out_channels == 4
    _assert_consistent(model, new, record, x)


def test_excluded_layers_are_untouched():
    model, x = _build(ConvChain), _input((1, 3, 8, 8))
    new, record = FilterScheme().prune(model, (x,), 0.5, exclude=["conv2"])
    assert record["groups"] == {}    # conv2 is in both prunable groups
    assert record["skipped"]["conv1"].startswith("excluded")
    assert torch.equal(new.conv2.weight, model.conv2.weight)
    new, record = FilterScheme().prune(model, (x,), 0.5, exclude=["fc"])
    assert set(record["groups"]) == {"conv1"} and torch.equal(new.fc.weight, model.fc.weight)


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, "half", True, None, {"nope": 0.5},
                                      {"fc": 0.5}, {"input:x": 0.5}, {"conv1": 2.0}])
def test_bad_sparsity_raises_config_error(sparsity):
    model, x = _build(ConvChain), _input((1, 3, 8, 8))
    with pytest.raises(ConfigError):
        FilterScheme().prune(model, (x,), sparsity)


def test_bad_options_raise_config_error():
    model, x = _build(ConvChain), _input((1, 3, 8, 8))
    with pytest.raises(ConfigError):
        FilterScheme().prune(model, (x,), 0.5, exclude=["not_a_layer"])
    with pytest.raises(ConfigError):
        get_scheme("filter", block=(4, 1))
    with pytest.raises(ConfigError):
        replay(model, {"format": "something else"})


def test_schemes_are_registered():
    assert isinstance(get_scheme("filter"), GroupScheme)
    assert isinstance(get_scheme("channel"), ChannelScheme)


# -- replay ------------------------------------------------------------------------------------
def test_replay_reproduces_the_cut():
    model, x = _build(Residual), _input((2, 3, 8, 8))
    new, record = FilterScheme().prune(model, (x,), 0.5)
    record = json.loads(json.dumps(record))
    again = replay(model, record)
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(),
                                                  again.state_dict().values()))
    assert list(new.state_dict()) == list(again.state_dict())

    fresh = _build(Residual, seed=7)
    cut = replay(fresh, record)
    assert {k: v.shape for k, v in cut.state_dict().items()} == \
           {k: v.shape for k, v in new.state_dict().items()}
    kept = record["groups"]["stem"]["kept"]
    assert torch.equal(cut.stem.weight, fresh.stem.weight[kept])
    assert torch.equal(cut.stem_bn.running_var, fresh.stem_bn.running_var[kept])


def test_replay_refuses_a_different_architecture():
    model, x = _build(ConvChain), _input((1, 3, 8, 8))
    _, record = FilterScheme().prune(model, (x,), 0.5)
    with pytest.raises(ConfigError):
        replay(_build(Residual), record)


# -- the zoo -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,scheme", [("resnet18_cifar", "filter"),
                                         ("mobilenetv2_cifar", "channel"),
                                         ("vgg16_cifar", "filter"),
                                         ("ghostnet", "channel")])
def test_zoo_model_pruned_matches_masked_original(name, scheme):
    zoo = pytest.importorskip("engine.zoo")
    torch.manual_seed(0)
    model, x = zoo.get(name).eval(), _input((1, 3, 32, 32))
    new, record = get_scheme(scheme).prune(model, (x,), 0.5)
    assert _n_params(new) < 0.35 * _n_params(model)   # ~half the channels on both sides
    assert sorted(record["skipped"].values()) == ["model input", "reaches the model output"]
    for m in new.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels
    _assert_consistent(model, new, record, x)
