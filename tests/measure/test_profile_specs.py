"""engine.measure.specs: LayerInfo + the lowering's fused info -> mapping.LayerSpec."""
import pytest
import torch

from engine import zoo
from engine.errors import ConfigError
from engine.graph.layers import list_layers
from engine.measure.specs import (epilogue_of, layer_specs, model_specs, parse_epilogue,
                                  spec_layer_info)
from engine.lowering import lower


def _layers_and_fused(name):
    model = zoo.get(name).eval()
    x = torch.randn(zoo.input_shape(name))
    return model, x, list_layers(model, (x,)), lower(model, {}).fused


@pytest.mark.parametrize("name", ["resnet18_cifar", "mobilenetv2_cifar"])
def test_specs_match_layer_info(name):
    model, x, layers, fused = _layers_and_fused(name)
    specs = layer_specs(layers, fused)
    assert [s.name for s in specs] == [l.name for l in layers]
    assert [s.order for s in specs] == list(range(len(layers)))
    for spec, info in zip(specs, layers):
        assert spec.out_channels == info.weight_shape[0]
        assert spec.groups == info.groups
        assert spec.macs == info.macs, spec.name
        if info.kind == "conv":
            assert spec.op == "conv2d"
            assert spec.in_channels == info.in_shape[1]
            assert spec.kernel == info.kernel_size
            assert (spec.stride, spec.padding, spec.dilation) == (info.stride, info.padding,
                                                                  info.dilation)
            assert spec.input_hw == info.in_shape[2:] and spec.batch == info.in_shape[0]
            assert spec.output_hw == info.out_shape[2:]
        else:
            assert spec.op == "linear" and spec.in_channels == info.weight_shape[1]
            assert spec.batch == 1 and spec.input_hw == (1, 1)
        # back to a LayerInfo the scheme rules accept: same shapes
        back = spec_layer_info(spec)
        assert (back.weight_shape, back.in_shape, back.out_shape) == (
            info.weight_shape, tuple(info.in_shape), tuple(info.out_shape))
    assert model_specs(model, (x,)) == specs


def test_epilogues_come_from_the_lowering():
    _, _, layers, fused = _layers_and_fused("resnet18_cifar")
    by = {s.name: s for s in layer_specs(layers, fused)}
    assert by["conv1"].epilogue == "relu"
    assert by["layer1.0.conv1"].epilogue == "relu"
    assert by["layer1.0.conv2"].epilogue == "relu+residual"   # bn2 + add + relu fused
    assert by["fc"].epilogue == ""
    assert by["layer1.0.conv2"].shape_key != by["layer1.0.conv1"].shape_key
    _, _, mlayers, mfused = _layers_and_fused("mobilenetv2_cifar")
    eps = {s.epilogue for s in layer_specs(mlayers, mfused)}
    assert eps == {"relu6", ""}
    assert {s.epilogue for s in layer_specs(layers)} == {""}          # no fused info


def test_epilogue_round_trip_and_errors():
    for fused, text in [({"act": "relu", "residual": True}, "relu+residual"),
                        ({"act": "relu6", "residual": False}, "relu6"),
                        ({"act": "none", "residual": True}, "residual"), (None, "")]:
        assert epilogue_of(fused) == text
        act, res = parse_epilogue(text)
        assert epilogue_of({"act": act, "residual": res}) == text
    with pytest.raises(ConfigError, match="gelu"):
        parse_epilogue("gelu")
