"""optimize() on Hugging Face models (transformers, tiny configs, random weights, nothing
downloaded), which torch.fx cannot trace: their layers are swapped in place for the engine's
modules, and their forwards read those layers (ViT / DeiT / Dinov2 `projection.weight.dtype`,
MobileNetV1 / V2's TF padding `kernel_size` / `stride` / `dilation`), EfficientNet's convs pad
"same" / "valid".

The reference is `opt.pruned_model`, torch's own layers with the plan's masks multiplied in
(checked against the user's weights here), so every figure is computed by torch, not by the
engine's kernels."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import engine
from engine.runtime.modules import LoweredLayer
from engine.runtime.views import PaddedConv2d
from engine.zoo.init import he_init

T = pytest.importorskip("transformers")

RTOL = 1e-4


def _vit_like(cls, cfg_cls, **extra):
    cfg = cfg_cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8, **extra)
    return cls(cfg)


MODELS = {
    "vit": lambda: _vit_like(T.ViTModel, T.ViTConfig, intermediate_size=64),
    "deit": lambda: _vit_like(T.DeiTModel, T.DeiTConfig, intermediate_size=64),
    "dinov2": lambda: _vit_like(T.Dinov2Model, T.Dinov2Config, mlp_ratio=2),
    "mobilenet_v1": lambda: he_init(T.MobileNetV1Model(
        T.MobileNetV1Config(image_size=32, depth_multiplier=0.25))),
    "mobilenet_v2": lambda: he_init(T.MobileNetV2Model(
        T.MobileNetV2Config(image_size=32, depth_multiplier=0.25))),
    "efficientnet": lambda: he_init(T.EfficientNetModel(T.EfficientNetConfig(
        image_size=32, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320))),
}
# a layer each forward reads (or pads through)
READ_LAYER = {"vit": "embeddings.patch_embeddings.projection",
              "deit": "embeddings.patch_embeddings.projection",
              "dinov2": "embeddings.patch_embeddings.projection",
              "mobilenet_v1": "conv_stem.convolution",
              "mobilenet_v2": "conv_stem.first_conv.convolution",
              "efficientnet": "embeddings.convolution"}


def _model(name):
    torch.manual_seed(0)
    return MODELS[name]().eval(), torch.randn(1, 3, 32, 32)


def _outputs(out):
    return [t for t in out.to_tuple() if isinstance(t, torch.Tensor)]


def _assert_close(got, ref, what):
    assert len(got) == len(ref), what
    for g, r in zip(got, ref):
        g = torch.as_tensor(g)
        assert g.shape == r.shape, what
        scale = r.abs().max().item()
        assert scale > 1e-3, f"{what}: reference output too small to judge ({scale:.3g})"
        err = (g - r).abs().max().item()
        assert err <= RTOL * scale, f"{what}: max err {err:.3g} vs scale {scale:.3g}"


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(n, type(m)) for n, m in model.named_modules()])


def _assert_untouched(model, snap):
    state, types = snap
    assert [(n, type(m)) for n, m in model.named_modules()] == types
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)


def _check_layer_view(opt, model, name, x_layer):
    """The swapped-in module keeps the user's layer's attributes, and computing with its
    `weight` / `bias` in torch gives what it computes."""
    mod, user = opt.runtime.get_submodule(name), model.get_submodule(name)
    assert isinstance(mod, (LoweredLayer, PaddedConv2d)), (name, type(mod))
    ref_w = opt.pruned_model.get_submodule(name).weight
    assert mod.weight.dtype == ref_w.dtype and mod.weight.shape == ref_w.shape
    assert torch.equal(mod.weight, ref_w), name
    with torch.no_grad():
        if isinstance(user, nn.Conv2d):
            for a in ("kernel_size", "stride", "dilation", "groups", "in_channels",
                      "out_channels", "padding_mode"):
                assert getattr(mod, a) == getattr(user, a), (name, a)
            want = opt.pruned_model.get_submodule(name)(x_layer)
        else:
            assert (mod.in_features, mod.out_features) == (user.in_features, user.out_features)
            want = F.linear(x_layer, mod.weight, mod.bias)
        got = mod(x_layer)
    assert (got - want).abs().max().item() <= RTOL * (want.abs().max().item() + 1e-6), name


def _layer_input(model, name, x):
    seen = {}

    def hook(mod, inputs, output):
        seen.setdefault("x", inputs[0])

    h = model.get_submodule(name).register_forward_hook(hook)
    with torch.no_grad():
        model(x)
    h.remove()
    return seen["x"]


@pytest.mark.parametrize("name", list(MODELS))
def test_untraceable_model_optimizes_saves_and_loads(name, tmp_path):
    model, x = _model(name)
    snap = _snapshot(model)
    opt = engine.optimize(model, (x,), sparsity=0.5, measure=False, capture=False,
                          progress=False)
    assert any("torch.fx could not trace" in n for n in opt.notes), opt.notes
    with torch.no_grad():
        ref = _outputs(opt.pruned_model(x))
        _assert_close(_outputs(opt(x)), ref, f"{name}: opt(x) vs masked torch")
    pruned = opt.plan.pruned
    assert len(pruned) >= len(opt.plan) // 2, [c.reason for c in opt.plan if not c.pruned]
    for c in pruned:   # the masked reference is the user's weights, some of them zeroed
        w, w0 = opt.pruned_model.get_submodule(c.layer).weight, model.get_submodule(c.layer).weight
        assert torch.equal(w, w0 * (w != 0)) and (w == 0).any(), c.layer
    read = READ_LAYER[name]
    assert read in {c.layer for c in pruned}
    _check_layer_view(opt, model, read, _layer_input(opt.pruned_model, read, x))
    linear = next((c.layer for c in pruned
                   if isinstance(model.get_submodule(c.layer), nn.Linear)), None)
    if linear is not None:
        _check_layer_view(opt, model, linear, _layer_input(opt.pruned_model, linear, x))
    _assert_untouched(model, snap)
    art = engine.load(opt.save(tmp_path / "art"))
    got = art(x)    # the model's output structure, rebuilt (engine.graph.outputs.Outputs)
    _assert_close(_outputs(got), ref, f"{name}: loaded artifact vs masked torch")


@pytest.mark.parametrize("name", ["vit", "mobilenet_v1"])
def test_excluded_layer_stays_the_models_own_module(name):
    model, x = _model(name)
    layer = READ_LAYER[name]
    opt = engine.optimize(model, (x,), sparsity=0.5, measure=False, capture=False,
                          progress=False, exclude=[layer])
    kept = opt.runtime.get_submodule(layer)
    assert type(kept) is type(model.get_submodule(layer))
    assert torch.equal(kept.weight, model.get_submodule(layer).weight)
    c = opt.plan[layer]
    assert not c.pruned and c.backend == "torch" and "excluded" in c.reason
    assert opt.plan.pruned
    with torch.no_grad():
        _assert_close(_outputs(opt(x)), _outputs(opt.pruned_model(x)), f"{name} excluded")


def test_measured_plan_keeps_slow_layers_dense_with_the_reason():
    model, x = _model("vit")
    opt = engine.optimize(model, (x,), sparsity=0.5, capture=False, progress=False, guard="off",
                          exclude=[READ_LAYER["vit"]])
    for c in opt.plan:
        assert c.reason, c.layer
        if c.pruned:       # kept sparse only where measured faster than the best dense
            assert c.dense_latency_us >= 1.1 * c.latency_us * 0.999, c
        elif c.layer != READ_LAYER["vit"]:
            assert "measured" in c.reason or "not pruned" in c.reason, c.reason
    assert opt.plan[READ_LAYER["vit"]].backend == "torch"
    assert type(opt.runtime.get_submodule(READ_LAYER["vit"])) is nn.Conv2d
    with torch.no_grad():
        _assert_close(_outputs(opt(x)), _outputs(opt.pruned_model(x)), "vit measured")
