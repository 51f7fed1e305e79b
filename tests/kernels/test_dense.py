"""Tests of the packed dense conv (engine._kernels.DenseConv: implicit GEMM and Winograd
F(4x4, 3x3) / F(2x2, 3x3)) against float64 torch.

Every ISA this CPU runs and every f32_gemm kernel the library lists (kernels/src/dense/
dense_list.h) is checked against F.conv2d plus bias, residual and activation: per ISA, the
geometries ResNet-style networks use (1x1 at stride 1 and 2, 3x3 at stride 1 and 2, the 7x7
stem) and an asymmetric one, output channels off the panel heights, input channels past one K
block; per listed tile, the layer forced onto it with output rows and pixels around its size;
the pointwise path of a flat 1x1 (the input read in place; pixel remainders below a vector;
the GEMV at one pixel) and the packed path forced on it; strided convs on the phase path and
the gathered pointwise path, picked and forced; the direct path of convs with few input
channels (the mobile
stems) and each listed f32_conv tile (dense/dense_list.h); Winograd (each variant forced, and
the one the input size picks) on 3x3 stride-1 layers with partial tiles, within the error bound
kernels/README.md documents. kernels/tests/dense_sweep.cc runs the same kind of sweep through
the C API (and NEON under qemu-aarch64).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import _kernels as K

from kernel_catalog import BY_NAME, CONV, GEMM, ISAS, need, need_kernel, seed_of


def reference(x, w, bias, stride, padding, dilation, residual, act):
    y = F.conv2d(x.double(), w.double(), None if bias is None else bias.double(), stride,
                 padding, dilation)
    if residual is not None:
        y = y + residual.double()
    acts = {"relu": lambda: y.clamp_min(0), "relu6": lambda: y.clamp(0, 6),
            "hardswish": lambda: F.hardswish(y), "silu": lambda: F.silu(y)}
    return acts[act]() if act in acts else y


def check(name, isa, o, c, k, s, p, d, hw, algo="gemm", act="relu", res=True, bias=True, n=2,
          rtol=1e-5):
    """Runs one layer and compares; returns its kernel name. The error bound is rtol times the
    sum of |products| (the rounding scale of any summation order), per output."""
    g = torch.Generator().manual_seed(seed_of(name))
    w = torch.randn(o, c, *k, generator=g)
    b = torch.randn(o, generator=g) if bias else None
    x = torch.randn(n, c, *hw, generator=g)
    ho = (hw[0] + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (hw[1] + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    r = torch.randn(n, o, ho, wo, generator=g) if res else None
    layer = K.DenseConv(o, c, k, s, p, d, w.numpy(), None if b is None else b.numpy(), act, isa,
                        algo)
    y = torch.from_numpy(layer.run(x.numpy(), None if r is None else r.numpy()))
    ref = reference(x, w, b, s, p, d, r, act)
    mag = F.conv2d(x.double().abs(), w.double().abs(), None, s, p, d) + 1
    err = ((y.double() - ref).abs() / mag).max().item()
    assert err <= rtol, f"{name} on {isa}: error {err:.3g} of the products' magnitude"
    return layer.kernel_name(*hw)


GEOMETRIES = {  # name: (o, c, kernel, stride, padding, dilation, input)
    "1x1s1": (37, 19, (1, 1), (1, 1), (0, 0), (1, 1), (9, 11)),
    "1x1s2": (64, 32, (1, 1), (2, 2), (0, 0), (1, 1), (13, 14)),
    "3x3s1-k300": (20, 300, (3, 3), (1, 1), (1, 1), (1, 1), (8, 7)),
    "3x3s2": (17, 30, (3, 3), (2, 2), (1, 1), (1, 1), (9, 8)),
    "7x7s2-stem": (16, 3, (7, 7), (2, 2), (3, 3), (1, 1), (20, 23)),
    "3x5-asym": (9, 5, (3, 5), (2, 1), (2, 1), (2, 3), (16, 19)),
}


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("isa", ISAS)
def test_gemm_matches_torch(isa, geometry):
    need(isa)
    o, c, k, s, p, d, hw = GEOMETRIES[geometry]
    name = check(geometry, isa, o, c, k, s, p, d, hw, act="relu6")
    assert name.startswith("f32_conv_" if direct_tiles(*GEOMETRIES[geometry]) else "f32_gemm_")
    assert name.endswith("__" + isa)


def direct_tiles(o, c, k, s, p, d, hw) -> bool:
    """Whether "gemm" runs a layer on the f32_conv tiles (kernels/README.md): the direct path
    for a small K (1x1s2 here: K = 32) or up to 4 input channels, not a flat 1x1, the phase path for a strided
    conv past 1x1 with an output of 64 pixels or more; else the f32_gemm tiles (the implicit
    GEMM, the pointwise path)."""
    if c * k[0] * k[1] <= 64 or c <= 4:
        return (k, s, p) != ((1, 1), (1, 1), (0, 0))
    ho = (hw[0] + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (hw[1] + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    return max(s) > 1 and max(k) > 1 and ho * wo >= 64


@pytest.mark.parametrize("kernel", GEMM)
def test_listed_tile(kernel):
    info = need_kernel(kernel)
    rows, pixels = info["tile"]["rows"], info["tile"]["pixels"]
    for o in (max(1, rows - 1), rows + 17):
        for px in (pixels - 1, 2 * pixels + 3):
            got = check(f"{kernel}-{o}-{px}", info["isa"], o, 37, (1, 1), (1, 1), (0, 0), (1, 1),
                        (1, px), algo=kernel, n=1)
            assert got == kernel


DIRECT = {  # name: (o, c, kernel, stride, padding, dilation, input, act): few input channels
    "stem-3x3s2": (32, 3, (3, 3), (2, 2), (1, 1), (1, 1), (37, 53), "relu6"),
    "c1-3x3s1p0": (5, 1, (3, 3), (1, 1), (0, 0), (1, 1), (9, 70), "hardswish"),
    "c2-3x3s2p0": (13, 2, (3, 3), (2, 2), (0, 0), (1, 1), (20, 41), "silu"),
    "c4-3x3s1": (16, 4, (3, 3), (1, 1), (1, 1), (1, 1), (11, 17), "relu"),
    "c3-5x3-s3x2-d2": (9, 3, (5, 3), (3, 2), (2, 3), (2, 1), (29, 31), "none"),
}


@pytest.mark.parametrize("shape", DIRECT)
@pytest.mark.parametrize("isa", ISAS)
def test_direct_matches_torch(isa, shape):
    """The direct path of "gemm" (K = C*kh*kw <= 64, not a flat 1x1), and the implicit GEMM
    forced on the same layer."""
    need(isa)
    o, c, k, s, p, d, hw, act = DIRECT[shape]
    name = check(f"direct-{shape}", isa, o, c, k, s, p, d, hw, act=act)
    assert name.startswith("f32_conv_") and name.endswith("__" + isa), name
    name = check(f"direct-{shape}", isa, o, c, k, s, p, d, hw, algo="gemm-packed", act=act, n=1)
    assert name.startswith("f32_gemm_"), name


@pytest.mark.parametrize("kernel", CONV)
def test_listed_conv_tile(kernel):
    """A direct conv tile forced on a 3-channel 3x3 layer: output rows below and past its
    height, output rows narrower, as wide and wider than its pixels (partial vectors)."""
    info = need_kernel(kernel)
    rows, pixels = info["tile"]["rows"], info["tile"]["pixels"]
    for o in (max(1, rows - 1), 2 * rows + 1):
        for wo, s in ((pixels - 1, 2), (2 * pixels + 3, 1)):
            got = check(f"{kernel}-{o}-{wo}", info["isa"], o, 3, (3, 3), (s, s), (1, 1), (1, 1),
                        (5, wo * s), algo=kernel, act="relu6", n=1)
            assert got == kernel


POINTWISE = {  # name: (o, c, input, act): the pointwise path's whole vectors and remainders
    "7x7-o70": (70, 37, (7, 7), "hardswish"),      # 49 = 3 x 16 + 1; rows past 4 panels
    "14x14-k300": (17, 300, (14, 14), "silu"),     # 196 = 12 x 16 + 4; K past a packed block
    "1x3-k1": (5, 1, (1, 3), "relu6"),             # fewer pixels than a vector
    "1x1-o70": (70, 301, (1, 1), "relu"),          # one pixel: the GEMV, rows past 4 panels
    "1x1-o1000": (1000, 131, (1, 1), "silu"),      # a classifier's rows, a short K
}


@pytest.mark.parametrize("algo", ["gemm", "gemm-packed"])
@pytest.mark.parametrize("shape", POINTWISE)
@pytest.mark.parametrize("isa", ISAS)
def test_pointwise_matches_torch(isa, shape, algo):
    """A flat 1x1 conv on "gemm" (the pointwise path: the input read in place) and forced
    onto the packed path."""
    need(isa)
    o, c, hw, act = POINTWISE[shape]
    name = check(f"pw-{shape}", isa, o, c, (1, 1), (1, 1), (0, 0), (1, 1), hw, algo=algo,
                 act=act)
    assert name.startswith("f32_gemv_") == (algo == "gemm" and hw == (1, 1)), name


STRIDED = {  # name: (o, c, kernel, stride, padding, dilation, input): K past the direct path's
    "3x3s2": (20, 40, (3, 3), (2, 2), (1, 1), (1, 1), (30, 25)),        # phase; rows off 8
    "7x7s2-stem": (12, 3, (7, 7), (2, 2), (3, 3), (1, 1), (40, 37)),     # direct (3 channels)
    "7x7s2-c5": (12, 5, (7, 7), (2, 2), (3, 3), (1, 1), (40, 37)),       # phase, 4 phases
    "3x3s3d2": (9, 16, (3, 3), (3, 3), (2, 2), (2, 2), (31, 29)),        # 9 phases, dilated
    "3x3s2-7x7out": (17, 80, (3, 3), (2, 2), (1, 1), (1, 1), (14, 13)),  # im2col gathered
    "1x1s2": (40, 70, (1, 1), (2, 2), (0, 0), (1, 1), (15, 13)),         # pixels gathered
}


@pytest.mark.parametrize("algo", ["gemm", "gemm-phase", "gemm-pointwise"])
@pytest.mark.parametrize("shape", STRIDED)
@pytest.mark.parametrize("isa", ISAS)
def test_strided_matches_torch(isa, shape, algo):
    """Strided convs past the direct path's K on "gemm" (the phase path, or the pointwise path
    on gathered pixels) and forced onto each."""
    need(isa)
    name = check(f"strided-{shape}-{algo}", isa, *STRIDED[shape], algo=algo, act="silu")
    want = direct_tiles(*STRIDED[shape]) if algo == "gemm" else algo == "gemm-phase"
    assert name.startswith("f32_conv_" if want else "f32_gemm_"), name


@pytest.mark.parametrize("algo", ["winograd-f4", "winograd-f2"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("size,pad,c", [((6, 6), 1, 3), ((14, 14), 1, 70), ((9, 30), 0, 300),
                                        ((23, 17), 2, 8)])
def test_winograd_matches_torch(isa, size, pad, c, algo):
    need(isa)
    # F(4x4, 3x3) rounds more than a direct sum: kernels/README.md measures up to ~1.2e-5 of
    # max |y| on ResNet-50's 3x3 layers (F(2x2) ~3x less); 1e-4 of the products' magnitude
    # bounds both with margin
    check(f"wino-{size}-{pad}-{c}", isa, 20, c, (3, 3), (1, 1), (pad, pad), (1, 1), size,
          algo=algo, rtol=1e-4)


def test_winograd_variant_follows_the_input_size():
    """"winograd" runs F(2x2) where 4x4 tiles would leave most of a vector empty (7x7: 2x2
    tiles), F(4x4) where they fill it (14x14: 4x4 tiles): bit for bit the forced variant."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(24, 40, 3, 3, generator=g).numpy()
    layers = {a: K.DenseConv(24, 40, (3, 3), (1, 1), (1, 1), (1, 1), w, algo=a)
              for a in ("winograd", "winograd-f4", "winograd-f2")}
    for hw, variant in ((7, "winograd-f2"), (14, "winograd-f4")):
        x = torch.randn(1, 40, hw, hw, generator=g).numpy()
        other = "winograd-f4" if variant == "winograd-f2" else "winograd-f2"
        y = layers["winograd"].run(x)
        assert np.array_equal(y, layers[variant].run(x)), hw
        assert not np.array_equal(y, layers[other].run(x)), hw


def test_thread_count_does_not_change_results(restore_threads):
    g = torch.Generator().manual_seed(1)
    w, x = torch.randn(40, 300, 3, 3, generator=g), torch.randn(2, 300, 17, 15, generator=g)
    for algo in ("gemm", "winograd-f4", "winograd-f2"):
        layer = K.DenseConv(40, 300, (3, 3), (1, 1), (1, 1), (1, 1), w.numpy(), algo=algo)
        K.set_num_threads(1)
        y1 = layer.run(x.numpy())
        K.set_num_threads(3)
        assert np.array_equal(y1, layer.run(x.numpy())), algo
    # the direct path splits output rows over threads
    stem = K.DenseConv(32, 3, (3, 3), (2, 2), (1, 1), (1, 1), w[:32, :3].numpy())
    xs = torch.randn(2, 3, 45, 39, generator=g).numpy()
    K.set_num_threads(1)
    y1 = stem.run(xs)
    K.set_num_threads(3)
    assert np.array_equal(y1, stem.run(xs)) and stem.kernel_name(45, 39).startswith("f32_conv_")
    # the phase path and the gathered pointwise path split pixels (bands that start inside an
    # output row) or output rows (the gathered pointwise path at 7x7) over threads
    for o, c, k, s, p, hw in ((24, 40, 3, 2, 1, (29, 31)), (32, 64, 3, 2, 1, (14, 14)),
                              (48, 80, 1, 2, 0, (28, 27)), (20, 3, 7, 2, 3, (44, 41))):
        layer = K.DenseConv(o, c, (k, k), (s, s), (p, p), (1, 1),
                            torch.randn(o, c, k, k, generator=g).numpy())
        xp = torch.randn(2, c, *hw, generator=g).numpy()
        K.set_num_threads(1)
        y1 = layer.run(xp)
        for t in (2, 3):
            K.set_num_threads(t)
            assert np.array_equal(y1, layer.run(xp)), (o, c, k, hw, t)
    # the pointwise path splits rows (small images) or pixels (large ones) over threads, in
    # equal shares per thread: 10 panels in 4 blocks (3 + 2 per thread), 49 vectors in bands
    for o, c, hw in ((40, 300, (7, 7)), (40, 300, (40, 40)), (160, 960, (7, 7)),
                     (32, 192, (28, 28)), (1000, 320, (1, 1))):  # the GEMV: runs of rows
        xp = torch.randn(1, c, *hw, generator=g).numpy()
        wp = torch.randn(o, c, 1, 1, generator=g).numpy()
        layer = K.DenseConv(o, c, (1, 1), (1, 1), (0, 0), (1, 1), wp)
        K.set_num_threads(1)
        y1 = layer.run(xp)
        for t in (2, 3):
            K.set_num_threads(t)
            assert np.array_equal(y1, layer.run(xp)), (o, c, hw, t)


def test_bad_input_is_a_clear_error():
    w = np.zeros((4, 3, 3, 3), np.float32)
    geo = ((3, 3), (1, 1), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="unknown algo"):
        K.DenseConv(4, 3, *geo, w, algo="fft")
    with pytest.raises(ValueError, match="winograd needs a 3x3"):
        K.DenseConv(4, 3, (3, 3), (2, 2), (1, 1), (1, 1), w, algo="winograd")
    with pytest.raises(ValueError, match="weight must be"):
        K.DenseConv(4, 2, *geo, w)
    with pytest.raises(ValueError, match="unknown activation"):
        K.DenseConv(4, 3, *geo, w, act="mish")
    layer = K.DenseConv(4, 3, *geo, w)
    with pytest.raises(ValueError, match="float32"):
        layer.run(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="x must be"):
        layer.run(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="residual"):
        layer.run(np.zeros((1, 3, 5, 5), np.float32), np.zeros((1, 4, 4, 4), np.float32))
    tiny = K.DenseConv(4, 3, (3, 3), (1, 1), (0, 0), (1, 1), w)
    with pytest.raises(ValueError, match="too small"):
        tiny.run(np.zeros((1, 3, 2, 2), np.float32))


def test_listed():
    for isa in ISAS:
        assert any(BY_NAME[k]["isa"] == isa for k in GEMM), isa
        assert any(BY_NAME[k]["isa"] == isa for k in CONV), isa
