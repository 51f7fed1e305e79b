"""Convs padded "same" (split evenly or not), "valid", and with padding_mode reflect / replicate
/ circular run on the engine's kernels (the kernel pads symmetric zeros itself; anything else is
an explicit pad of the input, then the conv) and are pruned like any conv, on the torch.fx path
and on the fallback for models fx cannot trace; excluded layers and subclasses with their own
forward stay the model's own modules; a forward reading an attribute the engine's module lacks
is an engine error naming the layer. References: torch's own layers with the same masked
weights (`opt.pruned_model`), and the user's model for layers left alone."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import engine
from engine.errors import EngineError, LayerAttributeError
from engine.graph.padding import conv_padding
from engine.runtime.modules import LoweredLayer
from engine.runtime.views import PaddedConv2d

PADDED = {  # layer -> how torch pads it (none of these can the kernel pad itself)
    "b": "same, even kernel: 1 left / 2 right",
    "c": "reflect", "d": "replicate, (1, 2)", "e": "circular, depthwise",
    "g": "same + reflect, dilation 2, 1x3",
}


class PadNet(nn.Module):
    def __init__(self, traceable: bool):
        super().__init__()
        self.traceable = traceable
        self.a = nn.Conv2d(3, 16, 3, padding="same")
        self.b = nn.Conv2d(16, 16, 4, padding="same", bias=False)
        self.c = nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")
        self.d = nn.Conv2d(16, 16, 3, padding=(1, 2), padding_mode="replicate")
        self.e = nn.Conv2d(16, 16, 3, padding=1, padding_mode="circular", groups=16)
        self.f = nn.Conv2d(16, 32, 3, stride=2, padding="valid")
        self.g = nn.Conv2d(32, 32, (1, 3), padding="same", dilation=2, padding_mode="reflect")
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        if not self.traceable and x.shape[-1] > 0:   # control flow fx cannot trace
            x = x * 1.0
        for m in (self.a, self.b, self.c, self.d, self.e, self.f, self.g):
            x = F.relu(m(x))
        return self.fc(x.mean((2, 3)))


def _close(got, ref, rtol=1e-4):
    scale = ref.abs().max().item()
    assert scale > 1e-3
    return (torch.as_tensor(got) - ref).abs().max().item() <= rtol * scale


def _module_of(opt, name, traced):
    return opt.runtime.get_submodule(f"lowered_{name}" if traced else name)


def test_conv_padding_matches_torch():
    x = torch.randn(2, 4, 9, 10)
    for kw in ({"padding": "same", "kernel_size": 4}, {"padding": "valid", "kernel_size": 3},
               {"padding": "same", "kernel_size": (2, 5), "dilation": (3, 1)},
               {"padding": (2, 1), "kernel_size": 3, "padding_mode": "circular"},
               {"padding": 1, "kernel_size": 3, "padding_mode": "replicate", "stride": 2},
               {"padding": 2, "kernel_size": 3}):
        conv = nn.Conv2d(4, 6, **kw)
        p = conv_padding(conv)
        pad = F.pad(x, p.pre, mode=p.mode) if p.pre is not None else x
        if p.pre is not None:
            assert p.kernel == (0, 0)
        got = F.conv2d(pad, conv.weight, conv.bias, conv.stride, p.kernel, conv.dilation)
        assert torch.allclose(got, conv(x), atol=1e-5), kw


@pytest.mark.parametrize("traceable", [True, False], ids=["fx", "fallback"])
def test_padded_convs_are_pruned_and_match(traceable, tmp_path):
    torch.manual_seed(0)
    model, x = PadNet(traceable).eval(), torch.randn(1, 3, 24, 24)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = engine.optimize(model, (x,), sparsity=0.5, measure=False, progress=False)
    assert any("torch.fx" in n for n in opt.notes) != traceable, opt.notes
    ref = opt.pruned_model(x)
    assert _close(opt(x), ref)
    pruned = {c.layer for c in opt.plan.pruned}
    assert {"a", "b", "c", "d", "f", "g"} <= pruned, [c.reason for c in opt.plan]
    for name in PADDED:
        mod, user = _module_of(opt, name, traceable), model.get_submodule(name)
        assert isinstance(mod, PaddedConv2d) and isinstance(mod.conv, LoweredLayer), name
        assert (mod.padding, mod.padding_mode) == (user.padding, user.padding_mode), name
        assert torch.equal(mod.weight, opt.pruned_model.get_submodule(name).weight)
        with pytest.raises(AttributeError):
            mod.weight = torch.zeros(1)               # read-only
    assert all(model.state_dict()[k].equal(v) for k, v in before.items())
    art = engine.load(opt.save(tmp_path / "art"))
    assert _close(art(x), ref)


@pytest.mark.parametrize("traceable", [True, False], ids=["fx", "fallback"])
def test_excluded_layer_is_never_moved_to_a_kernel(traceable):
    torch.manual_seed(0)
    model, x = PadNet(traceable).eval(), torch.randn(1, 3, 24, 24)
    # measured: the in-place check used to move an excluded layer to the native dense kernel
    opt = engine.optimize(model, (x,), sparsity=0.5, exclude=["c", "f"], progress=False,
                          capture=False)
    for name in ("c", "f"):
        kept = opt.runtime.get_submodule(name)
        assert type(kept) is nn.Conv2d and torch.equal(kept.weight, model.get_submodule(name).weight)
        ch = opt.plan[name]
        assert not ch.pruned and ch.backend == "torch" and ch.reason == "excluded by the user"
    assert _close(opt(x), opt.pruned_model(x))


class StdConv(nn.Conv2d):
    """A weight-standardized conv: its own _conv_forward, which the kernels do not compute."""

    def _conv_forward(self, x, weight, bias):
        w = (weight - weight.mean((1, 2, 3), keepdim=True)) / (weight.std((1, 2, 3),
                                                                          keepdim=True) + 1e-5)
        return super()._conv_forward(x, w, bias)


class Untraceable(nn.Sequential):
    def forward(self, x):
        if x.shape[-1] > 0:          # control flow fx cannot trace
            x = x * 1.0
        return super().forward(x)


@pytest.mark.parametrize("traceable", [True, False], ids=["fx", "fallback"])
def test_subclass_with_its_own_forward_stays_the_models_module(traceable):
    torch.manual_seed(0)
    layers = (nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), StdConv(16, 16, 3, padding=1),
              nn.ReLU())
    model = (nn.Sequential if traceable else Untraceable)(*layers).eval()
    x = torch.randn(1, 3, 16, 16)
    opt = engine.optimize(model, (x,), sparsity=0.5, measure=False, progress=False)
    kept = opt.runtime.get_submodule("2")   # fx traces through a user's subclass: its ops
    assert not isinstance(kept, (LoweredLayer, PaddedConv2d))
    assert type(kept) is StdConv or traceable
    assert torch.equal(kept.weight, model[2].weight)
    ch = opt.plan["2"]
    assert not ch.pruned and "StdConv._conv_forward" in ch.reason
    assert torch.equal(opt.pruned_model[2].weight, model[2].weight)
    assert opt.plan["0"].pruned
    assert _close(opt(x), opt.pruned_model(x))


class ReadsAttribute(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.conv.scale_hint = 2.0   # a user attribute the engine's module does not carry

    def forward(self, x):
        if x.shape[-1] > 0:          # fx cannot trace: the fallback swaps layers in place
            x = x * 1.0
        return self.conv(x) * getattr(self.conv, "scale_hint")


def test_missing_attribute_is_an_engine_error_naming_the_layer():
    model, x = ReadsAttribute().eval(), torch.randn(1, 3, 16, 16)
    with pytest.raises(LayerAttributeError, match=r"layer 'conv'.*'scale_hint'") as err:
        engine.optimize(model, (x,), sparsity=0.5, measure=False, capture=False, progress=False)
    assert isinstance(err.value, EngineError)
    model(x)   # the user's model still has its layer


def test_fallback_mismatch_names_the_first_layer_that_differs(monkeypatch):
    from engine.errors import MismatchError
    from engine.runtime.modules import DepthwiseConv2d
    run = DepthwiseConv2d.run_kernel

    def off_by_one(self, x, residual=None):       # a faulty kernel, injected
        return run(self, x, residual) + 1.0

    monkeypatch.setattr(DepthwiseConv2d, "run_kernel", off_by_one)
    torch.manual_seed(0)
    model, x = PadNet(traceable=False).eval(), torch.randn(1, 3, 24, 24)
    with pytest.raises(MismatchError, match=r"first layer that differs: 'e' \(PaddedConv2d"):
        engine.optimize(model, (x,), sparsity=0.5, measure=False, capture=False, progress=False)
