"""Generated TIR kernels (one layer, compiled for the host) vs F.conv2d / F.linear on the
masked weight: 1x1 / 3x3 / 5x5, strides 1-2, dilation, odd channels, group heights 1 / 4 / 8,
sparsity 0 .. 1, fused bias / residual / ReLU / ReLU6, batch > 1, depthwise and grouped."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codegen_helpers import assert_close, random_mask
from engine.codegen.host import HostKernel
from engine.codegen.geometry import ConvGeometry
from engine.codegen.rowgroups import RowGroups
from engine.codegen.spmm_tir import VectorISA, conv_kernel, linear_kernel
from engine.codegen.targets import as_target, tvm_target, vector_isa


@pytest.fixture(scope="module")
def isa() -> VectorISA:
    return vector_isa(tvm_target(as_target("host")))


def _act(y, act):
    return y if act == "none" else getattr(F, act)(y)


def run_conv(isa, o, c, h, w, k, stride, pad, rows, *, sparsity=0.7, dil=1, act="none",
             bias=False, residual=False, batch=1, groups=1, dense=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    wt = torch.randn(o, c // groups, k, k, generator=g)
    if not dense and groups == 1:
        wt = wt * random_mask(wt.shape, sparsity, rows, seed)
    x = torch.randn(batch, c, h, w, generator=g) * 2
    b = torch.randn(o, generator=g) if bias else None
    ref = F.conv2d(x, wt, b, stride, pad, dil, groups)
    r = torch.randn(ref.shape, generator=g) if residual else None
    ref = _act(ref + r if residual else ref, act)
    if groups != 1:
        rg = RowGroups.grouped(wt.numpy(), groups, rows)
    elif dense:
        rg = RowGroups.dense(wt.numpy(), rows)
    else:
        rg = RowGroups.sparse(wt.numpy(), rows)
    geom = ConvGeometry.of(c, h, w, k, stride, pad, dil)
    kern = conv_kernel("t", geom, rg, isa, batch=batch, act=act, residual=residual,
                       bias=None if b is None else b.numpy())
    hk = HostKernel(kern)
    hk.bind(x.numpy(), None if r is None else r.numpy())()
    return hk.result(), ref, kern


SPARSE = [  # o, c, h, w, k, stride, pad, rows
    (13, 7, 9, 9, 1, 1, 0, 1),
    (13, 7, 9, 9, 1, 1, 0, 4),
    (13, 7, 9, 9, 1, 1, 0, 8),
    (13, 7, 9, 11, 1, 2, 0, 4),
    (17, 5, 10, 9, 3, 1, 1, 1),
    (17, 5, 10, 9, 3, 1, 1, 4),
    (17, 5, 10, 9, 3, 1, 1, 8),
    (17, 5, 11, 11, 3, 2, 1, 4),
    (16, 6, 11, 12, 3, 2, 1, 8),
    (8, 3, 13, 13, 5, 2, 2, 4),
]


@pytest.mark.parametrize("case", SPARSE, ids=["x".join(map(str, c)) for c in SPARSE])
def test_sparse_conv_matches_torch(isa, case):
    got, ref, kern = run_conv(isa, *case)
    assert kern.stats["rows"] == case[-1]
    assert 0.2 < kern.stats["density"] < 0.45
    assert_close(got, ref, 1e-5)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_sparsity_extremes(isa, sparsity):
    got, ref, kern = run_conv(isa, 12, 6, 8, 8, 3, 1, 1, 4, sparsity=sparsity, bias=True)
    assert kern.stats["stored"] == pytest.approx((1 - sparsity) * 12 * 54, abs=4)
    assert_close(got, ref, 1e-5)


@pytest.mark.parametrize("k,act", [(1, "relu"), (3, "relu"), (3, "relu6"), (1, "none"),
                                   (1, "hardswish"), (3, "silu")])
def test_fused_bias_residual_activation(isa, k, act):
    got, ref, kern = run_conv(isa, 12, 8, 9, 10, k, 1, k // 2, 4, act=act, bias=True,
                              residual=True)
    # 3x3 stride 1 "same": masked lanes, the epilogue in the SpMM store (no crop pass)
    assert kern.has_residual and not kern.stats["crop"] and kern.stats["masked"] == (k > 1)
    assert_close(got, ref, 1e-5)


MASKED = [  # o, c, h, w, k, pad (stride 1: the output as wide as the input), rows, dense
    (9, 5, 6, 1, 3, 1, 4, False),       # one column: every off-centre tap masked
    (12, 4, 3, 17, 3, 1, 4, False),     # a row longer than a vector
    (16, 6, 14, 14, 3, 1, 8, False),    # ResNet's 14x14: 13 vectors, a 4-pixel last tile
    (8, 3, 7, 7, 5, 2, 4, False),       # 5x5
    (10, 7, 12, 12, 3, 1, 4, True),     # dense: one shared column list, kx ranges constant
]


@pytest.mark.parametrize("case", MASKED, ids=["x".join(map(str, c)) for c in MASKED])
def test_masked_same_width_conv_matches_torch(isa, case):
    o, c, h, w, k, pad, rows, dense = case
    got, ref, kern = run_conv(isa, o, c, h, w, k, 1, pad, rows, act="relu", bias=True,
                              residual=True, dense=dense, batch=2)
    assert kern.stats["masked"] and not kern.stats["crop"]
    assert kern.stats["uniform"] == dense
    assert_close(got, ref, 1e-5)


@pytest.mark.parametrize("case", SPARSE[4:], ids=["x".join(map(str, c)) for c in SPARSE[4:]])
def test_cropped_layout_still_matches_torch(isa, case, monkeypatch):
    # the virtual-column layout (what convs that are not masked run), forced on these shapes
    import engine.codegen.geometry as geometry
    monkeypatch.setattr(geometry, "MASKED_COLUMNS", False)
    got, ref, kern = run_conv(isa, *case, bias=True, act="relu", residual=True)
    assert kern.stats["crop"] and not kern.stats["masked"]
    assert_close(got, ref, 1e-5)


def test_valid_padding_is_cropped(isa):
    got, ref, kern = run_conv(isa, 12, 5, 9, 11, 3, 1, 0, 4, bias=True)
    assert kern.stats["crop"] and not kern.stats["masked"]
    assert_close(got, ref, 1e-5)


def test_masked_asymmetric_padding(isa):
    # left 2, right 0 (the output keeps the width) and rows padded 0 above, 2 below
    g = torch.Generator().manual_seed(3)
    wt = torch.randn(6, 4, 3, 3, generator=g) * random_mask((6, 4, 3, 3), 0.5, 4, 3)
    x = torch.randn(1, 4, 5, 9, generator=g)
    ref = F.conv2d(F.pad(x, (2, 0, 0, 2)), wt)
    geom = ConvGeometry.of(4, 5, 9, 3, 1, (0, 2, 2, 0))
    assert geom.masked and geom.front == 2
    kern = conv_kernel("t", geom, RowGroups.sparse(wt.numpy(), 4), isa)
    hk = HostKernel(kern)
    hk.bind(x.numpy())()
    assert_close(hk.result(), ref, 1e-5)


def test_batch_of_two(isa):
    got, ref, _ = run_conv(isa, 9, 3, 15, 13, 3, 2, 1, 1, batch=2, act="relu6", bias=True)
    assert_close(got, ref, 1e-5)


def test_dilation(isa):
    got, ref, _ = run_conv(isa, 8, 4, 12, 12, 3, 1, 2, 4, dil=2)
    assert_close(got, ref, 1e-5)


def test_pixel_bands_and_short_last_band(isa):
    # 512 channels x 784 pixels: the input of a band of tiles exceeds 1 MiB, several bands
    got, ref, kern = run_conv(isa, 16, 512, 28, 28, 1, 1, 0, 4, sparsity=0.8)
    assert kern.stats["bands"] > 1
    assert_close(got, ref, 1e-5)


@pytest.mark.parametrize("case", [(13, 96, 30, 30, 1, 1, 0, 4), (12, 32, 26, 27, 3, 1, 1, 8),
                                  (12, 48, 48, 48, 3, 2, 1, 4)])
def test_projection_items_tile_by_tile(isa, case):
    """Layers reading more per pixel than they write, on large images: each band's items go
    tile by tile (all groups of a tile), short last group / tile / band, fused epilogue."""
    got, ref, kern = run_conv(isa, *case, act="relu6", bias=True, residual=True)
    assert kern.stats["tile_major"]
    assert_close(got, ref, 1e-5)
    expanding, _, kern = run_conv(isa, 96, 13, 30, 30, 1, 1, 0, 4)  # writes more: by group
    assert not kern.stats["tile_major"]


def test_dense_conv(isa):
    got, ref, kern = run_conv(isa, 10, 7, 12, 12, 3, 1, 1, 4, dense=True, bias=True,
                              act="relu")
    assert kern.stats["uniform"] and kern.stats["density"] == 1.0
    assert_close(got, ref, 1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv(isa, stride):
    got, ref, _ = run_conv(isa, 16, 16, 13, 13, 3, stride, 1, 1, groups=16, act="relu6",
                           bias=True)
    assert_close(got, ref, 1e-5)


def test_grouped_conv(isa):
    got, ref, _ = run_conv(isa, 16, 8, 10, 10, 3, 1, 1, 2, groups=4)
    assert_close(got, ref, 1e-5)


@pytest.mark.parametrize("rows,batch,dense", [(1, 1, False), (4, 1, False), (8, 3, False),
                                              (16, 1, True), (16, 2, True)])
def test_linear_matches_torch(isa, rows, batch, dense):
    g = torch.Generator().manual_seed(rows)
    w = torch.randn(21, 37, generator=g)
    if not dense:
        w = w * random_mask(w.shape, 0.75, rows, rows)
    x = torch.randn(batch, 37, generator=g)
    b = torch.randn(21, generator=g)
    rg = RowGroups.dense(w.numpy(), rows) if dense else RowGroups.sparse(w.numpy(), rows)
    kern = linear_kernel("lin", rg, isa, batch=batch, bias=b.numpy(), act="relu")
    hk = HostKernel(kern)
    hk.bind(x.numpy())()
    assert_close(hk.result(), F.relu(F.linear(x, w, b)), 1e-5)


def test_kernel_names_follow_the_naming_rule(isa):
    _, _, kern = run_conv(isa, 8, 4, 8, 8, 1, 1, 0, 4)
    assert kern.label == f"tir_f32_spmm_4x{4 * 0 + isa.lanes * isa.nv(4)}__{isa.name}"
    assert "T.parallel" in kern.source and "T.vectorized" in kern.source


def test_same_structure_shares_one_parsed_function(isa):
    rg = RowGroups.dense(np.ones((8, 4, 1, 1), np.float32), 4)
    geom = ConvGeometry.of(4, 8, 8)
    a = conv_kernel("layer_a", geom, rg, isa)
    b = conv_kernel("layer_b", geom, rg, isa)
    assert a.structure_key == b.structure_key
    assert a.prim_func().attrs["global_symbol"] == "layer_a"
