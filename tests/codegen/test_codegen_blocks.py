"""compile_model(fuse_blocks=True): MobileNetV2's inverted-residual blocks run the fused block
kernel (spe.v1.inverted_block, kernels/src/mobile/) and the compiled model still matches the
pruned torch model; the plan's per-layer pruning is kept (sparse 1x1s stay sparse inside the
block)."""
import numpy as np
import pytest
import torch

import engine
from codegen_helpers import assert_close, randomize_bn
from engine import zoo
from engine.codegen import compile_model
from engine.codegen.blocks import BLOCK_EXTERN


@pytest.fixture(scope="module")
def fused_mobilenet():
    torch.manual_seed(0)
    model = randomize_bn(zoo.get("mobilenetv2_cifar", width_mult=0.5))
    x = torch.randn(1, 3, 24, 24)
    opt = engine.optimize(model, (x,), target="host", scheme="block", block=(4, 1),
                          sparsity=0.8, measure=False)
    return opt, x, compile_model(opt.pruned_model, (x,), opt.plan, "host", backends="plan",
                                 fuse_blocks=True)


def test_fused_mobilenetv2_matches_the_pruned_model(fused_mobilenet):
    opt, x, cm = fused_mobilenet
    with torch.no_grad():
        ref = opt.pruned_model(x)
    (y,) = cm.run(x)
    assert_close(y, ref, 1e-4)


def test_every_block_runs_the_fused_kernel_with_the_plans_pruning(fused_mobilenet):
    opt, _, cm = fused_mobilenet
    in_blocks = [lk for lk in cm.layers if lk.kernel == BLOCK_EXTERN]
    blocks = {lk.stats["block"] for lk in in_blocks}
    assert len(blocks) == 17          # MobileNetV2's inverted-residual blocks
    assert len(in_blocks) == 17 * 3 - 1   # the first block has no expand conv
    pruned = {c.layer for c in opt.plan if c.pruned}
    assert pruned, "the plan prunes nothing: the test is degenerate"
    for lk in in_blocks:
        assert lk.stats["pruned"] == (lk.layer in pruned)
    outside = {lk.layer for lk in cm.layers} - {lk.layer for lk in in_blocks}
    assert outside == {"features.0.0", "features.18.0", "classifier.1"}


def test_block_input_shapes_the_fused_kernel_refuses_stay_unfused():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1), torch.nn.ReLU6(),
                                torch.nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16),
                                torch.nn.ReLU6(), torch.nn.Conv2d(16, 8, 1)).eval()
    x = torch.randn(1, 8, 10, 10)
    cm = compile_model(model, (x,), None, "host", fuse_blocks=True)
    assert all(lk.kernel != BLOCK_EXTERN for lk in cm.layers)   # dilated depthwise: no block
    with torch.no_grad():
        np.testing.assert_allclose(cm.run(x)[0], model(x).numpy(), rtol=1e-4, atol=1e-5)
