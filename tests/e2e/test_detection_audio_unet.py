"""Models users bring (P8), with no model change: DETR (transformers, ResNet backbone, masks,
sine position embedding with float floor division), Wav2Vec2 (a Conv1d feature encoder over a
raw waveform, group norm, a weight-normed positional conv) and a U-Net (ConvTranspose2d
up-sampling, skip concats). Each optimizes, matches its references, lists every weight layer
(pruned or with the reason it is not), saves, loads, matches again, and compiles for arm64.

References, computed by torch: `opt.pruned_model` (the engine's working copy with the plan's
masks, its transposed convs as phase convs) and the user's own architecture with the masked
weights put back (fold_phase_convs: torch's ConvTranspose2d computes the U-Net's up-sampling),
so the phase decomposition is checked by torch too."""
import json

import pytest
import torch
from torch import nn

import engine
from engine.graph.transposed import PhaseConvTranspose2d, fold_phase_convs
from unet_net import UNet

T = pytest.importorskip("transformers")


def _detr():
    backbone = T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                              layer_type="basic", out_features=["stage2"])
    cfg = T.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                       backbone_config=backbone, d_model=32, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2,
                       encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=8, num_labels=4)
    return T.DetrForObjectDetection(cfg).eval(), torch.randn(1, 3, 64, 64)


def _wav2vec2():
    cfg = T.Wav2Vec2Config(vocab_size=8, hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64, conv_dim=(32, 32, 32),
                           conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
                           num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=1,
                           feat_extract_norm="group")
    return T.Wav2Vec2Model(cfg).eval(), torch.randn(1, 1600)


def _unet():
    return UNet(3, 2, (16, 32, 64)).eval(), torch.randn(1, 3, 32, 32)


MODELS = {"detr": _detr, "wav2vec2": _wav2vec2, "unet": _unet}


def _tensors(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    return [torch.as_tensor(t) for t in out.values() if isinstance(t, (torch.Tensor,))] \
        if hasattr(out, "values") else [torch.as_tensor(t) for t in out]


def _close(got, ref, what: str) -> None:
    got, ref = _tensors(got), _tensors(ref)
    assert len(got) == len(ref), what
    for g, r in zip(got, ref):
        scale = r.abs().max().item()
        assert scale > 1e-3, f"{what}: reference too small to judge ({scale:.3g})"
        err = (torch.as_tensor(g) - r).abs().max().item()
        assert err <= 1e-4 * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


def _weight_layers(model: nn.Module) -> set:
    """Modules holding a weight (2+ dims); a parametrized weight (weight_norm) is its layer's."""
    return {n.split(".parametrizations.")[0] for n, m in model.named_modules()
            if any(p.dim() >= 2 for p in m.parameters(recurse=False))}


def _user_layers(opt) -> dict:
    """Each plan layer -> the user's layer it is (a transposed conv's phase convs -> it)."""
    user = {s: n for n, d in opt.plan.meta.get("decomposed", {}).items() for s in d["layers"]}
    return {c.layer: user.get(c.layer, c.layer) for c in opt.plan}


@pytest.mark.parametrize("name", list(MODELS))
def test_optimize_match_save_load(name, tmp_path):
    torch.manual_seed(0)
    model, x = MODELS[name]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = engine.optimize(model, (x,), sparsity=0.5, measure=False, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, PhaseConvTranspose2d) for m in model.modules())

    # every weight layer: pruned (with its phase convs mapped back), or listed with a reason
    users = _user_layers(opt)
    other = {o["layer"]: o["reason"] for o in opt.plan.other_layers}
    assert set(users.values()) | set(other) == _weight_layers(model)
    assert all(c.reason for c in opt.plan) and all(other.values())
    assert len(opt.plan.pruned) >= {"detr": 20, "wav2vec2": 8, "unet": 12}[name]
    rows = {r["layer"]: r for r in opt.weight_layers()}   # the user's view: one row a layer
    assert set(rows) == _weight_layers(model) and all(r["reason"] for r in rows.values())
    assert sum(r["pruned"] for r in rows.values()) == len(set(
        users[c.layer] for c in opt.plan.pruned))

    got = opt(x)
    with torch.no_grad():
        ref = opt.pruned_model(x)
        user_arch = fold_phase_convs(opt.pruned_model)      # torch's ConvTranspose2d again
        assert not any(isinstance(m, PhaseConvTranspose2d) for m in user_arch.modules())
        _close(user_arch(x), ref, f"{name}: phase convs vs torch's transposed conv")
    _close(got, ref, f"{name}: engine vs masked reference")
    art = engine.load(opt.save(tmp_path / "art"))
    _close(art(x), ref, f"{name}: artifact vs masked reference")
    if name == "unet":
        decomposed = opt.plan.meta["decomposed"]
        assert decomposed == {"ups.0": {"kind": "ConvTranspose2d", "layers": ["ups.0.p1x1"],
                                        "as": decomposed["ups.0"]["as"]},
                              "ups.1": {"kind": "ConvTranspose2d", "layers": ["ups.1.p1x1"],
                                        "as": decomposed["ups.1"]["as"]}}
        assert {"ups.0.p1x1", "ups.1.p1x1"} <= {c.layer for c in opt.plan.pruned}
        assert rows["ups.0"]["kind"] == "ConvTranspose2d" and rows["ups.0"]["pruned"]
        assert rows["ups.0"]["runs_as"] == ["ups.0.p1x1"]
        assert rows["ups.0"]["params"] == model.ups[0].weight.numel()
        up = user_arch.get_submodule("ups.0")
        assert isinstance(up, nn.ConvTranspose2d) and 0.4 < float((up.weight == 0).float().mean())
    if name == "wav2vec2":          # the weight-normed positional conv: baked, pruned, masked
        assert "encoder.pos_conv_embed.conv" in {c.layer for c in opt.plan.pruned}
        w = opt.pruned_model.get_submodule("encoder.pos_conv_embed.conv").weight
        assert 0.4 < float((w == 0).float().mean()) < 0.6
        assert any("baked" in n for n in opt.notes)


@pytest.mark.parametrize("name", list(MODELS))
def test_arm64_artifact_compiles(name, tmp_path):
    from engine.targets import get_target
    from engine.targets.toolchain import cross_compiler
    try:
        cross_compiler(get_target("arm64"))
    except engine.errors.ConfigError as e:
        pytest.skip(str(e))
    torch.manual_seed(0)
    model, x = MODELS[name]()
    opt = engine.optimize(model, (x,), target="arm64", sparsity=0.5, measure=False,
                          progress=False)
    opt.save(tmp_path / "arm")
    manifest = json.loads((tmp_path / "arm" / "manifest.json").read_text())
    assert manifest["target"]["arch"] == "aarch64"
    head = (tmp_path / "arm" / "model.so").read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
