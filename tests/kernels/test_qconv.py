"""The int8 conv / linear kernels (engine._kernels.QConv through engine.runtime.qconv) against
an independent reference, and against engine.quant's simulation of the same layer.

Reference: the exact integer convolution of (x - zx) with the int8 weight (int64, F.conv2d
not involved), then spe.h's requantization written out in numpy float32, in units of the output
scale (one fma, the residual, the activation, round half to even). Every variant this CPU runs
must give those bytes exactly; the C++ runner's sweep (kernels/tests/qconv_sweep.cc) covers
every listed kernel and its tails, this covers the Python path: packing (pack_quads), linear
layers, errors, and the tie to the calibration.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from engine import _kernels as K
from engine.errors import ConfigError
from engine.quant import calibrate, dequantize, qconv_of, quantize, simulate
from engine.runtime.qconv import QuantConv, pack_quads

VARIANTS = ["scalar", "avx2", "avx512vnni", "neon", "neondot"]


def runs(variant: str) -> bool:
    try:
        QuantConv(np.ones((1, 4, 1, 1), np.int8), [1.0], input=(1.0, 0), output=(1.0, 0),
                  isa=variant)
        return True
    except ConfigError:
        return False


def need(variant):
    if not runs(variant):
        pytest.skip(f"int8 variant {variant} does not run on this CPU / build")


def reference(x, wq, ws, bias, sx, zx, sy, zy, stride, pad, dil, act, res=None, rq=None):
    """spe.h's int8 conv, written independently: exact sums, then float32 requantization."""
    n, c, h, w = x.shape
    o, _, kh, kw = wq.shape
    xi = np.pad(x.astype(np.int64) - zx, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    acc = np.zeros((n, o, ho, wo), np.int64)
    for ky in range(kh):
        for kx in range(kw):
            win = xi[:, :, ky * dil: ky * dil + stride * (ho - 1) + 1: stride,
                     kx * dil: kx * dil + stride * (wo - 1) + 1: stride]
            acc += np.einsum("nchw,oc->nohw", win, wq[:, :, ky, kx].astype(np.int64))
    # in units of the output scale, the constants folded in float64 and rounded once
    scale = (np.float64(np.float32(sx)) * ws.astype(np.float64) / np.float64(np.float32(sy))).astype(np.float32)
    b = np.zeros(o, np.float32) if bias is None else (bias.astype(np.float64) / np.float64(np.float32(sy))).astype(np.float32)
    # fma(float(a), scale, bias): the sum rounded to float32 first (as the kernels convert it),
    # the product exact in float64 (24 + 24 bits), one rounding of the sum to float32
    v = (acc.astype(np.float32).astype(np.float64) * scale[None, :, None, None].astype(np.float64)
         + b[None, :, None, None]).astype(np.float32)
    if res is not None:
        rs = np.float64(np.float32(np.float64(np.float32(rq[0])) / np.float64(np.float32(sy))))
        v = ((res.astype(np.float64) - rq[1]) * rs + v).astype(np.float32)
    if act in ("relu", "relu6"):
        v = np.maximum(v, np.float32(0))
    if act == "relu6":
        v = np.minimum(v, np.float32(6.0 / np.float64(np.float32(sy))))
    v = np.minimum(v, np.float32(512))
    q = np.where(v < -2.0**31, -2**31, np.rint(np.maximum(v, -2.0**31))).astype(np.int64) + zy
    return np.clip(q, 0, 255).astype(np.uint8)


def _layer(rng, o, c, kh, sparsity, rows):
    wq = rng.integers(-127, 128, (o, c, kh, kh)).astype(np.int8)
    # prune in (rows x 4 channels) blocks at each tap, then a few single weights
    for o0 in range(0, o, rows):
        for c0 in range(0, c, 4):
            for t in range(kh * kh):
                if rng.random() < sparsity:
                    wq[o0:o0 + rows, c0:c0 + 4, t // kh, t % kh] = 0
    wq[rng.random(wq.shape) < 0.1] = 0
    return wq


CASES = [  # (o, c, h, w, k, stride, pad, dil, rows, act, residual, batch)
    (16, 32, 14, 14, 1, 1, 0, 1, 4, "relu", True, 1),
    (24, 13, 9, 11, 3, 1, 1, 1, 8, "relu6", False, 2),
    (10, 8, 12, 12, 3, 2, 1, 1, 2, "none", True, 1),
    (7, 6, 10, 9, 5, 1, 2, 1, 3, "relu", False, 1),
    (12, 20, 11, 11, 3, 1, 2, 2, 4, "none", False, 1),
    (32, 64, 7, 7, 1, 2, 0, 1, 8, "relu", True, 2),
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "o%d-c%d-%dx%d-k%ds%dp%dd%d-r%d-%s-res%d-n%d" % c)
def test_matches_the_integer_reference(variant, case):
    need(variant)
    o, c, h, w, k, s, p, d, rows, act, with_res, n = case
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    wq = _layer(rng, o, c, k, 0.5, rows)
    ws = rng.uniform(0.002, 0.02, o).astype(np.float32)
    bias = rng.normal(0, 1, o).astype(np.float32)
    sx, zx, sy, zy, rq = 0.03, int(rng.integers(0, 256)), 0.07, int(rng.integers(0, 256)), (0.05, 120)
    layer = QuantConv(wq, ws, bias, input=(sx, zx), output=(sy, zy),
                      residual=rq if with_res else None, act=act, stride=s, padding=p,
                      dilation=d, rows=rows, isa=variant)
    assert layer.kernel_name.endswith("__" + variant)
    x = rng.integers(0, 256, (n, c, h, w)).astype(np.uint8)
    ho, wo = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
    res = rng.integers(0, 256, (n, o, ho, wo)).astype(np.uint8) if with_res else None
    got = layer.run(x, res)
    want = reference(x, wq, ws, bias, sx, zx, sy, zy, s, p, d, act, res, rq)
    assert got.dtype == np.uint8 and got.shape == want.shape
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{len(bad)} bytes differ, first at {tuple(bad[0])}: " \
                          f"{got[tuple(bad[0])]} vs {want[tuple(bad[0])]}"
    assert layer.nnz == int(np.count_nonzero(wq))


def test_linear_layer_and_pack_quads_layout():
    rng = np.random.default_rng(5)
    wq = _layer(rng, 9, 22, 1, 0.6, 4)[:, :, 0, 0]
    packed = pack_quads(wq, 4)
    # every stored quad is an (entry, row) of the dense weight, and the rest of it is zero
    dense, at = np.zeros((9, 24), np.int8), 0
    for g in range(len(packed.group_row0)):
        r0, r = packed.group_row0[g], packed.group_rows[g]
        for e in range(packed.group_ptr[g], packed.group_ptr[g + 1]):
            q = packed.entry_quad[e]
            dense[r0:r0 + r, 4 * q: 4 * q + 4] = packed.values[at:at + 4 * r].reshape(r, 4)
            at += 4 * r
    assert at == packed.values.size
    assert np.array_equal(dense[:, :22], wq) and not dense[:, 22:].any()
    layer = QuantConv(wq, np.full(9, 0.01, np.float32), None, input=(0.02, 10), output=(0.05, 3))
    x = rng.integers(0, 256, (5, 22)).astype(np.uint8)
    want = reference(x[:, :, None, None], wq[:, :, None, None], np.full(9, 0.01, np.float32), None,
                     0.02, 10, 0.05, 3, 1, 0, 1, "none")[:, :, 0, 0]
    assert np.array_equal(layer.run(x), want)


def test_variants_agree_on_a_large_layer():
    """Every available variant, the same bytes, on a layer long enough for many tiles and the
    threads (ResNet-50's 1x1 at 28x28)."""
    rng = np.random.default_rng(9)
    wq = _layer(rng, 128, 256, 1, 0.8, 4)
    ws = rng.uniform(0.002, 0.02, 128).astype(np.float32)
    x = rng.integers(0, 256, (1, 256, 28, 28)).astype(np.uint8)
    outs = {v: QuantConv(wq, ws, None, input=(0.02, 7), output=(0.1, 0), act="relu",
                         isa=v).run(x) for v in VARIANTS if runs(v)}
    assert "scalar" in outs and len(outs) >= 2 or not any(runs(v) for v in VARIANTS[1:])
    for v, y in outs.items():
        assert np.array_equal(y, outs["scalar"]), v


@pytest.mark.parametrize("kwargs, match", [
    (dict(input=(0.0, 0)), "input scale"),
    (dict(output=(0.1, 300)), "output zero point"),
    (dict(act="hardswish"), "hardswish"),
    (dict(isa="avx9000"), "variant not available"),
])
def test_bad_arguments_name_the_problem(kwargs, match):
    args = dict(input=(0.1, 0), output=(0.1, 0), name="layer7")
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match) as e:
        QuantConv(np.ones((4, 4, 1, 1), np.int8), np.ones(4, np.float32), **args)
    assert "layer7" in str(e.value)


def test_bad_inputs_are_refused():
    layer = QuantConv(np.ones((4, 4, 3, 3), np.int8), np.ones(4, np.float32), input=(0.1, 0),
                      output=(0.1, 0), name="conv3")
    with pytest.raises(ConfigError, match="uint8"):
        layer.run(np.zeros((1, 4, 8, 8), np.float32))
    with pytest.raises(ConfigError, match="conv3.*too small"):
        layer.run(np.zeros((1, 4, 2, 2), np.uint8))
    with pytest.raises(ConfigError, match="residual"):   # no residual qparams at build time
        layer.run(np.zeros((1, 4, 8, 8), np.uint8), np.zeros((1, 4, 6, 6), np.uint8))
    with pytest.raises(ValueError, match="in_channels"):  # a weight for a channel past C
        K.QConv(4, 3, (1, 1), (1, 1), (0, 0), (1, 1), np.array([0], np.int32),
                np.array([4], np.int32), np.array([0, 1], np.int64), np.array([0], np.int32),
                np.ones(16, np.int8), np.ones(4, np.float32), input=(0.1, 0), output=(0.1, 0))


class ConvBnRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


def test_calibrated_layer_is_what_simulate_computes():
    """qconv_of(conv, cal.layer(...)) on quantize(x): dequantized, the simulation's output of the
    layer (fake-quantized conv -> BN folded -> ReLU -> fake-quantized output) to the last unit,
    off by one unit only where the simulation's fp32 sums round across a boundary."""
    torch.manual_seed(0)
    model = ConvBnRelu().eval()
    model.bn.running_mean.uniform_(-0.3, 0.3)
    model.bn.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():                               # 70% of the weights pruned
        w = model.conv.weight
        w[torch.rand_like(w) < 0.7] = 0
    batches = [torch.randn(2, 8, 10, 10) for _ in range(4)]
    cal = calibrate(model, batches)
    lq = cal.layer("conv")
    layer = qconv_of(model.conv, lq, rows=4)
    sim = simulate(model, cal)
    x = batches[0]
    with torch.no_grad():
        want = sim(x)
    xq = quantize(x, lq.input).to(torch.uint8).numpy()
    got = dequantize(torch.from_numpy(layer.run(xq)).to(torch.int64), lq.output)
    step = float(lq.output.scale)
    diff = (got - want).abs() / step
    assert float(diff.max()) <= 1.0 + 1e-4
    assert float((diff > 0.5).float().mean()) < 0.01
    # the user's model is untouched, and a layer the kernels cannot fuse is refused by name
    assert model.training is False and model.conv.weight.grad is None
    with pytest.raises(ConfigError, match="depthwise"):
        qconv_of(nn.Conv2d(8, 8, 3, groups=8), lq)


def test_nchw4_chain_is_the_nchw_chain():
    """Two layers chained in the kernels' NCHW4 layout (the second reads the first's output in
    place: a 1x1) give the NCHW chain's bytes; to_nchw4 / from_nchw4 are inverses."""
    from engine.runtime.qconv import from_nchw4, to_nchw4
    rng = np.random.default_rng(11)
    w1, w2 = _layer(rng, 22, 13, 3, 0.5, 4), _layer(rng, 9, 22, 1, 0.5, 8)
    s1, s2 = (rng.uniform(0.002, 0.02, n).astype(np.float32) for n in (22, 9))
    x = rng.integers(0, 256, (2, 13, 11, 10)).astype(np.uint8)
    res = rng.integers(0, 256, (2, 9, 6, 5)).astype(np.uint8)

    def chain(layout):
        a = QuantConv(w1, s1, None, input=(0.03, 5), output=(0.05, 9), act="relu", stride=2,
                      padding=1, input_layout=layout, output_layout=layout)
        b = QuantConv(w2, s2, None, input=(0.05, 9), output=(0.07, 120), residual=(0.04, 100),
                      input_layout=layout, output_layout=layout)
        if layout == "nchw":
            return b.run(a.run(x), res)
        y = b.run(a.run(to_nchw4(x, 7)), to_nchw4(res))
        assert y.shape == (2, 3, 6, 5, 4) and (y[:, 2, :, :, 1:] == 120).all()   # pad channels
        return from_nchw4(y, 9)

    want = chain("nchw")
    assert np.array_equal(chain("nchw4"), want)
    assert np.array_equal(from_nchw4(to_nchw4(x), 13), x)


def test_depthwise_refuses_scales_that_overflow_when_folded():
    """A denormal output scale passes "> 0" but folds residual_scale / sy to inf: refused (an
    inf constant would make the variants disagree on NaN)."""
    from engine.runtime.qconv import QuantDepthwise
    w = np.ones((8, 1, 3, 3), np.int8)
    with pytest.raises(ConfigError, match="overflows float"):
        QuantDepthwise(w, np.ones(8, np.float32), input=(1e-3, 0), output=(1e-39, 0),
                       residual=(1.0, 0), padding=1, name="dw1")
    ok = QuantDepthwise(w, np.ones(8, np.float32), input=(0.1, 0), output=(0.1, 0), padding=1)
    assert ok.run(np.zeros((1, 2, 5, 5, 4), np.uint8)).shape == (1, 2, 5, 5, 4)
