"""Fused inverted-residual blocks in the host runtime: engine.lowering.fuse_blocks turns
MobileNetV2's blocks of native layers into engine.runtime.blocks.InvertedBlock modules, which
run the fused kernel where it measures faster; the lowered model still matches torch (the
masked model, BN folded), whichever path each block picked, and survives deepcopy / pickle.
"""
import copy
import pickle

import pytest
import torch

import engine
from engine import zoo
from engine.lowering import fuse_blocks, lower
from engine.runtime.blocks import InvertedBlock
from engine.zoo.init import randomize_bn


def _close(a, b, rtol=1e-4):
    scale = b.abs().max().item()
    assert scale > 1e-3, "reference is ~0: the test is degenerate"
    err = (a - b).abs().max().item()
    assert err <= rtol * scale, f"max err {err:.3g} > {rtol} x {scale:.3g}"


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    model = randomize_bn(zoo.get("mobilenetv2_cifar", width_mult=0.5)).eval()
    return model, torch.randn(2, 3, 20, 20)


def _native_everything(model):
    return {n: 4 for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def test_every_block_fuses_and_matches_torch_on_both_paths(mobilenet):
    model, x = mobilenet
    gm = lower(model, _native_everything(model)).module
    assert fuse_blocks(gm) == 17
    blocks = [m for m in gm.modules() if isinstance(m, InvertedBlock)]
    assert len(blocks) == 17 and sum(b.residual for b in blocks) == 10
    with torch.no_grad():
        ref = model(x)
        _close(gm(x), ref)
        for b in blocks:                      # both paths, whichever was measured faster
            b.picked = {k: "fused" for k in b.picked}
        _close(gm(x), ref)
        for b in blocks:
            b.picked = {k: "unfused" for k in b.picked}
        _close(gm(x), ref)
        _close(copy.deepcopy(gm)(x), ref)
        b = blocks[3]
        xb = torch.randn(1, b.kernel_in_channels(), 6, 6)
        _close(pickle.loads(pickle.dumps(b)).fused(xb), b.unfused(xb))


def test_optimize_runs_pruned_blocks_fused_on_the_host(mobilenet):
    model, x = mobilenet
    opt = engine.optimize(model, (x[:1],), target="host", scheme="block", block=(4, 1),
                          sparsity=0.8, measure=False)
    blocks = [m for m in opt.runtime.modules() if isinstance(m, InvertedBlock)]
    assert blocks, "no block fused: every layer of the plan runs natively, all should fuse"
    with torch.no_grad():
        _close(opt(x), opt.pruned_model(x))
