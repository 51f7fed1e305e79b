"""The int8 glue kernels (engine._kernels.quantize / dequantize / max_pool2d_u8) against torch:
quantize is engine.quant.quantize (torch.round of x times the float reciprocal) byte for byte,
dequantize its inverse map exactly, max pooling of codes torch's max_pool2d of the same codes,
in both layouts (NCHW, and NCHW4 whose pad channels hold the zero point)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import _kernels as K
from engine.quant import ACT_U8, QParams, dequantize, quantize
from engine.runtime.qconv import from_nchw4, to_nchw4


def _qp(scale, zp):
    return QParams(torch.tensor(scale, dtype=torch.float32), torch.tensor(zp), ACT_U8)


@pytest.mark.parametrize("layout", ["nchw", "nchw4"])
@pytest.mark.parametrize("shape", [(2, 13, 9, 7), (1, 3, 33, 31), (1, 8, 1, 1), (3, 4, 5, 40),
                                   (1, 5, 70, 33), (2, 6, 3, 1100)])   # blocks of rows, tails
@pytest.mark.parametrize("zp", [0, 131, 255])
def test_quantize_and_dequantize_are_engine_quant(layout, shape, zp):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g) * 3
    x[0, 0, 0, 0] = 1e9                                  # clamps (no int32 overflow on the way)
    x[-1, -1, -1, -1] = -1e9
    scale = 0.037
    # values on both clamps and on ties: x * (1 / scale) at k + 0.5 (as float computes it)
    k = torch.arange(-300, 300, dtype=torch.float32)
    ties = (k + 0.5) / np.float32(1.0 / scale)
    n = min(len(ties), x.numel() - 2)      # the clamped first and last stay
    x.view(-1)[1:1 + n] = ties[:n]
    want = quantize(x, _qp(scale, zp)).to(torch.uint8).numpy()
    got = K.quantize(x.numpy(), scale, zp, layout)
    if layout == "nchw4":
        c = shape[1]
        assert got.shape == (shape[0], (c + 3) // 4, shape[2], shape[3], 4)
        assert np.array_equal(got, to_nchw4(want, zp))   # pad channels at the zero point
        back = K.dequantize(got, c, scale, zp, layout)
    else:
        assert np.array_equal(got, want)
        back = K.dequantize(got, shape[1], scale, zp, layout)
    ref = dequantize(torch.from_numpy(want).to(torch.int64), _qp(scale, zp))
    assert torch.equal(torch.from_numpy(back), ref)


@pytest.mark.parametrize("layout", ["nchw", "nchw4"])
@pytest.mark.parametrize("k, s, p, hw", [(3, 2, 1, (112, 112)), (2, 2, 0, (9, 11)),
                                         (3, 1, 1, (7, 8)), (5, 3, 2, (13, 12)), (3, 2, 0, (8, 9))])
def test_max_pool_is_torch_on_the_codes(layout, k, s, p, hw):
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    c = 10
    q = rng.integers(0, 256, (2, c) + hw).astype(np.uint8)
    want = F.max_pool2d(torch.from_numpy(q), k, s, p).numpy()
    x = to_nchw4(q, 0) if layout == "nchw4" else q
    got = K.max_pool2d_u8(x, c, (k, k), (s, s), (p, p), layout)
    assert np.array_equal(from_nchw4(got, c) if layout == "nchw4" else got, want)


def test_glue_refuses_bad_input_by_name():
    x = np.zeros((1, 3, 4, 4), np.float32)
    x[0, 1, 2, 3] = np.nan
    x[0, 2, 0, 0] = np.inf
    for layout in ("nchw", "nchw4"):      # the first one, by index, whichever thread saw it
        with pytest.raises(ValueError, match=r"x\[27\] is not finite"):
            K.quantize(x, 0.1, 0, layout)
    big = np.zeros((2, 6, 9, 37), np.float32)       # in a later image, a quad's second half,
    big[1, 5, 8, 36] = np.nan                       # a block's tail ...
    big[1, 5, 3, 17] = -np.inf                      # ... and before it, mid-vector: this one
    for layout in ("nchw", "nchw4"):
        with pytest.raises(ValueError, match=r"x\[%d\] is not finite" % (((6 + 5) * 9 + 3) * 37 + 17)):
            K.quantize(big, 0.1, 7, layout)
    with pytest.raises(ValueError, match="scale"):
        K.quantize(np.zeros((1, 3, 4, 4), np.float32), 0.0, 0)
    with pytest.raises(ValueError, match="zero point"):
        K.dequantize(np.zeros((1, 3, 4, 4), np.uint8), 3, 0.1, 256)
    with pytest.raises(ValueError, match="layout"):
        K.quantize(np.zeros((1, 3, 4, 4), np.float32), 0.1, 0, "nhwc")
    with pytest.raises(ValueError, match="uint8"):
        K.max_pool2d_u8(np.zeros((1, 1, 4, 4, 4), np.uint8), 8, (2, 2), (2, 2), (0, 0), "nchw4")
    with pytest.raises(ValueError):                     # torch's rule: padding <= kernel / 2
        K.max_pool2d_u8(np.zeros((1, 3, 4, 4), np.uint8), 3, (2, 2), (2, 2), (2, 2))
