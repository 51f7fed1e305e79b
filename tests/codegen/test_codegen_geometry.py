"""Phase-plane geometry and row groups (numpy only): the flat SpMM on them equals F.conv2d."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.codegen.geometry import ConvGeometry, make_planes
from engine.codegen.rowgroups import RowGroups

CASES = [  # C, H, W, kernel, stride, padding (int or top,left,bottom,right), dilation
    (3, 7, 9, 3, 1, 1, 1),
    (2, 8, 8, 3, 2, 1, 1),
    (2, 9, 7, 1, 2, 0, 1),
    (2, 10, 11, 3, 2, 1, 2),
    (1, 5, 5, 5, 3, 2, 1),
    (2, 6, 6, 1, 1, 0, 1),
    (2, 6, 7, 3, 1, (0, 1, 2, 0), 1),
    (2, 6, 7, 2, 2, 0, 1),
    (2, 5, 6, 5, 1, 2, 1),                 # masked: 5x5 same
    (2, 5, 6, 3, 1, (0, 2, 1, 0), 1),      # masked: left 2, right 0
    (1, 4, 5, (1, 3), 1, (0, 1, 0, 1), 1), # masked: 1x3
]


def _flat_spmm(x, w, g: ConvGeometry):
    planes = make_planes(x, g)
    o = w.shape[0]
    cols = np.arange(w[0].size)
    off = g.offsets(cols)
    y = np.zeros((o, g.pixels))
    for j, col in enumerate(cols):
        y += np.outer(w.reshape(o, -1)[:, col],
                      planes[off[j]:off[j] + g.pixels] * g.lane_valid(col % g.taps))
    return y.reshape(o, g.out_h, g.wp)[:, :, :g.out_w]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_flat_spmm_on_planes_is_conv2d(case):
    c, h, w_, k, s, p, d = case
    g = ConvGeometry.of(c, h, w_, k, s, p, d)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((c, h, w_)).astype(np.float32)
    kh, kw = (k, k) if isinstance(k, int) else k
    w = rng.standard_normal((3, c, kh, kw)).astype(np.float32)
    pad = g.padding
    xt = F.pad(torch.from_numpy(x)[None], (pad[1], pad[3], pad[0], pad[2]))
    ref = F.conv2d(xt, torch.from_numpy(w), stride=s, dilation=d)[0].numpy()
    got = _flat_spmm(x, w, g)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_direct_and_crop_flags():
    assert ConvGeometry.of(8, 10, 10, 1, 1, 0).direct
    assert not ConvGeometry.of(8, 10, 10, 1, 2, 0).crop          # 1x1 stride 2: no crop
    g = ConvGeometry.of(8, 10, 10, 3, 1, 1)     # same width, stride 1: masked, no crop
    assert g.masked and not g.crop and g.wp == 10 and g.pixels == 10 * 10 and g.front == 1
    g = ConvGeometry.of(8, 10, 10, 3, 1, 0)     # narrower output: virtual columns, cropped
    assert not g.masked and g.crop and g.wp == 10 and g.pixels == 8 * 10
    g = ConvGeometry.of(8, 10, 10, 3, 1, 2, 2)  # dilated "same": masked
    assert g.masked and not g.crop and g.front == 2
    g = ConvGeometry.of(8, 10, 10, 3, 2, 1)     # strided: 4 phases at the output's width
    assert len(g.phases) == 4 and g.masked and g.wp == 5 and not g.crop
    g = ConvGeometry.of(3, 224, 224, 7, 2, 3)   # a ResNet stem
    assert g.masked and g.wp == 112 and g.front == 2 and g.pixels == 112 * 112


def test_masked_lanes_are_the_taps_off_the_row():
    g = ConvGeometry.of(2, 3, 4, 3, 1, 1)
    assert g.lane_valid(0).tolist() == [False, True, True, True] * 3    # kx = 0: dx = -1
    assert g.lane_valid(4).all()                                        # centre tap
    assert g.lane_valid(5).tolist() == [True, True, True, False] * 3    # kx = 2: dx = +1
    assert ConvGeometry.of(2, 3, 4, 3, 1, 0).lane_valid(0).all()        # not masked
    g = ConvGeometry.of(1, 6, 6, 3, 2, 1)       # stride 2: kx = 0 reads the odd phase, left
    assert g.column_shift(0) == -1 and g.column_shift(1) == 0 and g.column_shift(2) == 0
    assert g.lane_valid(0).tolist() == [False, True, True] * 3


def test_too_small_input_is_refused():
    with pytest.raises(ValueError, match="too small"):
        ConvGeometry.of(1, 2, 2, 5, 1, 0)


@pytest.mark.parametrize("rows", [1, 3, 4, 8])
def test_sparse_rowgroups_round_trip(rows):
    rng = np.random.default_rng(rows)
    w = rng.standard_normal((13, 5, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.7] = 0
    rg = RowGroups.sparse(w, rows)
    assert rg.rows == rows and rg.n_groups == -(-13 // rows)
    np.testing.assert_array_equal(rg.to_dense(), w.reshape(13, -1))
    assert rg.stored <= 13 * 45 and rg.values.size == rg.entries * rows


def test_dense_rowgroups_share_columns():
    w = np.arange(10 * 12, dtype=np.float32).reshape(10, 12) + 1
    rg = RowGroups.dense(w, 16)
    assert rg.uniform and rg.n_groups == 1 and rg.last_rows == 10 and rg.stored == 120
    np.testing.assert_array_equal(rg.to_dense(), w)


def test_grouped_rowgroups_read_own_group_only():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((12, 2, 3, 3)).astype(np.float32)
    rg = RowGroups.grouped(w, groups=6, rows=2)
    full = np.zeros((12, 12, 9), np.float32)
    for o in range(12):
        full[o, (o // 2) * 2:(o // 2) * 2 + 2] = w[o].reshape(2, 9)
    np.testing.assert_array_equal(rg.to_dense(), full.reshape(12, -1))
    with pytest.raises(ValueError, match="must divide"):
        RowGroups.grouped(w, groups=6, rows=4)
