"""Tests for engine.zoo: registry, torchvision-identical layouts/param counts, capturability."""
import functools
import operator

import pytest
import torch
from torch import nn

from engine import zoo

IMAGENET = ["resnet18", "resnet50", "vgg16", "mobilenetv2", "mobilenetv3_large",
            "efficientnet_b0", "ghostnet"]
CIFAR = ["resnet18_cifar", "resnet50_cifar", "vgg16_cifar", "mobilenetv2_cifar"]

# torchvision's parameter counts (1000 classes): resnet18, resnet50, vgg16_bn, mobilenet_v2,
# mobilenet_v3_large, efficientnet_b0
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "vgg16": 138_365_992,
    "mobilenetv2": 3_504_872,
    "mobilenetv3_large": 5_483_032,
    "efficientnet_b0": 5_288_548,
}
# The papers' figures at 224x224, 1000 classes: (parameters, multiply-adds of the convs and
# linears), each as published (rounded): MobileNetV3-Large 5.4M / 219M (torchvision: 5.48M,
# 0.22 GFLOPS), EfficientNet-B0 5.3M / 0.39B, GhostNet 1.0x 5.2M / 141M.
PUBLISHED = {
    "mobilenetv3_large": (5.48e6, 219e6),
    "efficientnet_b0": (5.29e6, 390e6),
    "ghostnet": (5.2e6, 141e6),
}


@functools.lru_cache(maxsize=None)
def _model(name: str) -> nn.Module:
    """One seeded eval-mode instance per name, shared by read-only tests (vgg16 is slow to init)."""
    torch.manual_seed(0)
    return zoo.get(name).eval()


def _small_input(name: str, side: int | None = None) -> torch.Tensor:
    """Default shape for CIFAR models, 64x64 for ImageNet ones (adaptive pooling allows it),
    or `side` x `side` when given."""
    shape = zoo.input_shape(name)
    if side is not None or name in IMAGENET:
        shape = shape[:2] + (side or 64,) * 2
    torch.manual_seed(1)
    return torch.randn(shape)


def _capture_input(name: str) -> torch.Tensor:
    """Smallest cheap input for graph-capture checks (VGG's five maxpools need 32x32)."""
    return _small_input(name, 32 if name.startswith("vgg") else 16)


def _nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_list_models_names():
    assert zoo.list_models() == IMAGENET + CIFAR


@pytest.mark.parametrize("name", IMAGENET + CIFAR)
def test_input_shape(name):
    expected = (1, 3, 224, 224) if name in IMAGENET else (1, 3, 32, 32)
    assert zoo.input_shape(name) == expected


@pytest.mark.parametrize("name", IMAGENET + CIFAR)
def test_builds_and_output_shape(name):
    m = _model(name)
    assert isinstance(m, nn.Module)
    with torch.no_grad():
        y = m(_small_input(name))
    assert y.shape == (1, 1000 if name in IMAGENET else 10)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_param_count_matches_torchvision(name):
    assert _nparams(_model(name)) == TORCHVISION_PARAMS[name]


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of every conv and linear on input x, counted from the output shapes."""
    total = 0

    def count(m, _, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features
    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return total


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_params_and_macs_match_the_papers(name):
    """A layout check: the published size and cost within their rounding (2%)."""
    params, macs = PUBLISHED[name]
    m = _model(name)
    assert abs(_nparams(m) / params - 1) < 0.02, _nparams(m)
    assert abs(_macs(m, torch.zeros(zoo.input_shape(name))) / macs - 1) < 0.02


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg16_cifar", "mobilenetv2_cifar"])
def test_num_classes_override(name):
    m = zoo.get(name, num_classes=7).eval()
    with torch.no_grad():
        assert m(_capture_input(name)).shape == (1, 7)


@pytest.mark.parametrize("bad", ["resnet19", "", "ResNet18"])
def test_unknown_name_lists_options(bad):
    with pytest.raises(ValueError) as exc:
        zoo.get(bad)
    for known in zoo.list_models():
        assert known in str(exc.value)
    with pytest.raises(ValueError):
        zoo.input_shape(bad)


def test_deterministic_under_seed():
    def build(seed):
        torch.manual_seed(seed)
        return zoo.get("resnet18_cifar").state_dict()

    a, b, c = build(0), build(0), build(1)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


@pytest.mark.parametrize("name", CIFAR + ["resnet18"])
def test_torch_export_matches_eager(name):
    m, x = _model(name), _capture_input(name)
    ep = torch.export.export(m, (x,))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), m(x))


@pytest.mark.parametrize("name", IMAGENET + CIFAR)
def test_fx_symbolic_trace_matches_eager(name):
    m, x = _model(name), _capture_input(name)
    gm = torch.fx.symbolic_trace(m)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), m(x))


@pytest.mark.parametrize("name, adds", [("resnet18", 8), ("resnet50", 16), ("mobilenetv2", 10),
                                        ("mobilenetv2_cifar", 10), ("mobilenetv3_large", 10),
                                        ("efficientnet_b0", 9), ("ghostnet", 16)])
def test_residual_adds_visible_in_graph(name, adds):
    gm = torch.fx.symbolic_trace(_model(name))
    n = sum(node.op == "call_function" and node.target in (operator.add, operator.iadd)
            for node in gm.graph.nodes)
    assert n == adds


def test_resnet_torchvision_layout():
    r50 = _model("resnet50")
    sd = r50.state_dict()
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer1.0.downsample.1.running_mean"].shape == (256,)
    assert sd["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert sd["fc.weight"].shape == (1000, 2048)
    # v1.5: the stride sits on the 3x3 conv, not the first 1x1
    assert r50.layer2[0].conv1.stride == (1, 1) and r50.layer2[0].conv2.stride == (2, 2)
    assert r50.conv1.kernel_size == (7, 7) and isinstance(r50.maxpool, nn.MaxPool2d)

    r18 = _model("resnet18")
    assert r18.layer1[0].downsample is None
    assert r18.layer2[0].downsample[0].stride == (2, 2)
    assert [n for n, _ in r18.layer1[0].named_children()] == ["conv1", "bn1", "relu", "conv2", "bn2"]
    assert len(r18.state_dict()) == 122  # torchvision resnet18 state_dict has 122 entries


def test_resnet_cifar_stem():
    m = _model("resnet18_cifar")
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, nn.Identity)
    x = _small_input("resnet18_cifar")
    with torch.no_grad():
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    assert x.shape == (1, 512, 4, 4)


def test_vgg_layouts():
    v = _model("vgg16")
    convs = [l for l in v.features if isinstance(l, nn.Conv2d)]
    assert len(convs) == 13 and len(v.features) == 44
    assert [type(l) for l in v.classifier] == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    assert v.classifier[0].in_features == 25088
    c = _model("vgg16_cifar")
    assert [type(l) for l in c.classifier] == [nn.Linear, nn.ReLU, nn.Linear]
    assert c.classifier[0].in_features == 512 and c.classifier[2].out_features == 10
    with torch.no_grad():
        assert c.features(_small_input("vgg16_cifar")).shape == (1, 512, 1, 1)


def test_mobilenetv2_layout():
    m = _model("mobilenetv2")
    assert len(m.features) == 19
    assert m.features[0][0].stride == (2, 2) and isinstance(m.features[0][2], nn.ReLU6)
    dw = m.features[1].conv[0][0]
    assert dw.groups == 32 and dw.in_channels == 32          # t=1 block: no expansion conv
    assert m.features[2].conv[0][0].kernel_size == (1, 1)    # t=6 block: expand, dw, project, bn
    assert [type(l) for l in m.features[2].conv][2:] == [nn.Conv2d, nn.BatchNorm2d]
    assert isinstance(m.classifier[0], nn.Dropout) and m.classifier[1].in_features == 1280
    c = _model("mobilenetv2_cifar")
    assert c.features[0][0].stride == (1, 1)
    with torch.no_grad():
        assert c.features(_small_input("mobilenetv2_cifar")).shape == (1, 1280, 4, 4)


@pytest.mark.parametrize("wm, stem, last", [(0.5, 16, 1280), (1.4, 48, 1792)])
def test_mobilenetv2_width_mult(wm, stem, last):
    m = zoo.get("mobilenetv2", width_mult=wm).eval()
    assert m.features[0][0].out_channels == stem
    assert m.classifier[1].in_features == last
    with torch.no_grad():
        assert m(_small_input("mobilenetv2")).shape == (1, 1000)


def _shapes(name: str) -> dict:
    return {k: tuple(v.shape) for k, v in _model(name).state_dict().items()}


def test_mobilenetv3_large_torchvision_layout():
    m, sd = _model("mobilenetv3_large"), _shapes("mobilenetv3_large")
    assert len(m.features) == 17 and isinstance(m.features[0][2], nn.Hardswish)
    assert sd["features.0.0.weight"] == (16, 3, 3, 3)
    assert sd["features.1.block.0.0.weight"] == (16, 1, 3, 3)      # no expansion: dw first
    # first SE block: 72 expanded channels squeezed to make_divisible(72 // 4, 8) = 24
    assert sd["features.4.block.2.fc1.weight"] == (24, 72, 1, 1)
    assert sd["features.4.block.2.fc2.bias"] == (72,)
    assert isinstance(m.features[4].block[2].scale_activation, nn.Hardsigmoid)
    assert sd["features.13.block.1.0.weight"] == (672, 1, 5, 5)
    assert m.features[13].block[1][0].stride == (2, 2)
    assert sd["features.16.0.weight"] == (960, 160, 1, 1)
    assert sd["classifier.0.weight"] == (1280, 960) and sd["classifier.3.weight"] == (1000, 1280)
    assert m.features[0][1].eps == 0.001 and m.features[0][1].momentum == 0.01


def test_efficientnet_b0_torchvision_layout():
    m, sd = _model("efficientnet_b0"), _shapes("efficientnet_b0")
    assert len(m.features) == 9 and [len(s) for s in m.features[1:8]] == [1, 2, 2, 3, 3, 4, 1]
    assert isinstance(m.features[0][2], nn.SiLU)
    assert sd["features.1.0.block.0.0.weight"] == (32, 1, 3, 3)    # expand ratio 1: dw first
    assert sd["features.1.0.block.1.fc1.weight"] == (8, 32, 1, 1)  # squeeze: input // 4
    assert sd["features.2.0.block.0.0.weight"] == (96, 16, 1, 1)
    assert sd["features.6.3.block.2.fc1.weight"] == (48, 1152, 1, 1)
    assert isinstance(m.features[6][3].block[2].scale_activation, nn.Sigmoid)
    assert sd["features.8.0.weight"] == (1280, 320, 1, 1)
    assert sd["classifier.1.weight"] == (1000, 1280)
    # stochastic depth grows linearly to 0.2 * 15 / 16 on the last block, identity in eval
    assert m.features[7][0].stochastic_depth.p == pytest.approx(0.2 * 15 / 16)
    block, x = m.features[2][1], _small_input("efficientnet_b0", 8)[:, :1].expand(1, 24, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), block.block(x) + x)


def test_ghostnet_reference_layout():
    m, sd = _model("ghostnet"), _shapes("ghostnet")
    assert len(m.blocks) == 10 and sd["conv_stem.weight"] == (16, 3, 3, 3)
    g = m.blocks[0][0].ghost1      # 16 -> 16: 8 primary channels, 8 cheap depthwise ones
    assert sd["blocks.0.0.ghost1.primary_conv.0.weight"] == (8, 16, 1, 1)
    assert sd["blocks.0.0.ghost1.cheap_operation.0.weight"] == (8, 1, 3, 3)
    assert g.cheap_operation[0].groups == 8
    assert sd["blocks.1.0.conv_dw.weight"] == (48, 1, 3, 3)
    assert m.blocks[1][0].conv_dw.stride == (2, 2)
    assert sd["blocks.1.0.shortcut.2.weight"] == (24, 16, 1, 1)
    assert sd["blocks.3.0.se.conv_reduce.weight"] == (20, 72, 1, 1)  # divisible(72 / 4, 4)
    assert sd["blocks.9.0.conv.weight"] == (960, 160, 1, 1)
    assert sd["conv_head.weight"] == (1280, 960, 1, 1) and sd["conv_head.bias"] == (1280,)
    assert sd["classifier.weight"] == (1000, 1280)
    x = _small_input("ghostnet", 8)[:, :1].expand(1, 16, 8, 8).contiguous()
    with torch.no_grad():   # concat of the primary and cheap outputs, sliced to the width
        x1 = g.primary_conv(x)
        torch.testing.assert_close(g(x), torch.cat([x1, g.cheap_operation(x1)], 1)[:, :16])


@pytest.mark.parametrize("name, kw, first, last", [
    ("mobilenetv3_large", {"width_mult": 0.5}, 8, 480),
    ("ghostnet", {"width": 0.5}, 8, 480)])
def test_mobile_width_multipliers(name, kw, first, last):
    m = zoo.get(name, **kw).eval()
    convs = [l for l in m.modules() if isinstance(l, nn.Conv2d)]
    assert convs[0].out_channels == first
    with torch.no_grad():
        assert m(_small_input(name)).shape == (1, 1000)
    assert any(l.out_channels == last for l in convs)
