"""Tests of the fused inverted-residual block (engine._kernels.InvertedBlock, kernels/src/mobile/).

Every listed f32_invres kernel (kernels/src/mobile/invres_list.h) this CPU runs is checked
against torch's unfused block (1x1 conv -> ReLU6 -> depthwise conv -> ReLU6 -> 1x1 conv
[+ x], float64) on dense and block-sparse weights, with and without the expand conv, on both
schedules and odd image sizes; every ISA variant must also match the scalar reference kernel.
A MobileNetV2 block from engine.zoo, BN folded, checks the weights' layout end to end; bad
arguments raise ValueError naming the problem. kernels/tests/invres_sweep.cc runs the C API
sweep (NEON under qemu-aarch64).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import _kernels as K
from engine.bench.invres import BlockWeights, fused, make_block, packed

from kernel_catalog import KERNELS, need_kernel, seed_of

INVRES = [k["name"] for k in KERNELS if k["family"] == "f32_invres"]


def reference(b: BlockWeights, x: torch.Tensor, k: int) -> torch.Tensor:
    d = lambda t: None if t is None else t.double()  # noqa: E731
    h = x.double()
    if b.we is not None:
        h = F.conv2d(h, d(b.we), d(b.be)).clamp(0, 6)
    h = F.conv2d(h, d(b.wd), d(b.bd), stride=b.stride, padding=k // 2, groups=b.ce).clamp(0, 6)
    y = F.conv2d(h, d(b.wp), d(b.bp))
    return y + x.double() if b.residual else y


def block_for(k: int, s: int, cin: int, t: int, cout: int, sparsity: float, seed: int):
    b = make_block(cin, t, cout, s, sparsity, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    b.wd = torch.randn(b.ce, 1, k, k, generator=gen) / k
    return b


def run(b: BlockWeights, k: int, x: torch.Tensor, isa: str, rows: int, schedule: int = 0):
    blk = K.InvertedBlock(b.cin, b.ce, b.cout, k, b.stride,
                          packed(b.we, b.be, rows) if b.we is not None else None,
                          b.wd.numpy(), b.bd.numpy(), packed(b.wp, b.bp, rows),
                          residual=b.residual, schedule=schedule, isa=isa)
    return blk.kernel_name, blk.run(x.numpy())


CASES = [  # cin, t, cout, sparsity, rows, h, w, schedule
    (8, 6, 8, 0.0, 8, 13, 11, 1),
    (8, 6, 16, 0.8, 4, 9, 10, 2),
    (16, 1, 8, 0.0, 8, 14, 14, 0),
    (12, 4, 12, 0.5, 2, 7, 7, 0),
]


@pytest.mark.parametrize("name", INVRES)
def test_listed_block_matches_torch_and_the_scalar_kernel(name):
    kernel = need_kernel(name)
    k, s = kernel["tile"]["kernel"], kernel["tile"]["stride"]
    for i, (cin, t, cout, sp, rows, h, w, sched) in enumerate(CASES):
        b = block_for(k, s, cin, t, cout, sp, seed_of(f"{name}{i}"))
        x = torch.randn(2, cin, h, w, generator=torch.Generator().manual_seed(i))
        got_name, y = run(b, k, x, kernel["isa"], rows, sched)
        assert got_name == name
        ref = reference(b, x, k)
        atol = 2e-5 * max(1.0, (cin * t) ** 0.5) * max(1.0, float(ref.abs().max()) ** 0.5)
        torch.testing.assert_close(torch.from_numpy(y).double(), ref, rtol=1e-4, atol=atol)
        _, y_scalar = run(b, k, x, "scalar", rows, sched)
        np.testing.assert_allclose(y, y_scalar, rtol=1e-5, atol=atol)


def _fold(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (conv.weight * scale[:, None, None, None]).detach(), \
        (bn.bias - bn.running_mean * scale).detach()


def test_zoo_mobilenetv2_block_with_bn_folded_matches_torch():
    from engine import zoo
    from engine.zoo.init import randomize_bn
    torch.manual_seed(0)
    model = randomize_bn(zoo.get("mobilenetv2", width_mult=0.5).eval())
    for idx in (2, 3, 4):  # stride 2, residual, stride 2 to a wider output
        blk = model.features[idx]
        ex, dw, pj = blk.conv[0], blk.conv[1], blk.conv
        we, be = _fold(ex[0], ex[1])
        wd, bd = _fold(dw[0], dw[1])
        wp, bp = _fold(pj[2], pj[3])
        s = dw[0].stride[0]
        b = BlockWeights(we.shape[1], we.shape[0], wp.shape[0], s, we, be, wd, bd, wp, bp)
        x = torch.rand(1, b.cin, 20, 18)
        y = fused(b, rows=8)(x.numpy())
        with torch.no_grad():
            ref = blk(x)
        assert b.residual == blk.use_res_connect
        torch.testing.assert_close(torch.from_numpy(y), ref, rtol=1e-4, atol=1e-4)


def test_bad_arguments_raise_value_errors_naming_them():
    b = make_block(8, 6, 8, 1, 0.0)
    args = dict(expand=packed(b.we, b.be, 8), dw_weight=b.wd.numpy(), dw_bias=b.bd.numpy(),
                project=packed(b.wp, b.bp, 8))
    with pytest.raises(ValueError, match="no fused block kernel for a 4x4"):
        K.InvertedBlock(8, 48, 8, 4, 1, **dict(args, dw_weight=np.zeros(48 * 16, np.float32)))
    with pytest.raises(ValueError, match="residual block needs stride 1"):
        K.InvertedBlock(8, 48, 8, 3, 2, residual=True, **args)
    with pytest.raises(ValueError, match="expand:.*out_channels"):
        K.InvertedBlock(8, 40, 8, 3, 1, **dict(args, dw_weight=np.zeros(40 * 9, np.float32),
                                               dw_bias=None, expand=packed(b.we, None, 8)))
    with pytest.raises(ValueError, match="without an expand conv"):
        K.InvertedBlock(8, 48, 8, 3, 1, **dict(args, expand=None))
    blk = K.InvertedBlock(8, 48, 8, 3, 1, residual=True, **args)
    with pytest.raises(ValueError, match="x must be"):
        blk.run(np.zeros((1, 9, 5, 5), np.float32))
    with pytest.raises(ValueError, match="x must be float32"):
        blk.run(np.zeros((1, 8, 5, 5), np.float64))
    x = torch.rand(1, 8, 5, 5)
    np.testing.assert_allclose(blk.run(x.numpy()), b.torch_forward(x).numpy(), rtol=1e-4,
                               atol=1e-4)
