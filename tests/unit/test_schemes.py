"""Per-layer mask schemes: importance, unstructured, block(-punched), pattern and N:M.

Checks exact per-layer sparsity, mask structure, that the kept units are the highest-scoring ones
(against plain scalar reference implementations), check() reasons and option validation.
"""
from __future__ import annotations

import math

import pytest
import torch

from engine.errors import ConfigError, SchemeError
from engine.graph.layers import LayerInfo
from engine.schemes import SCHEMES, apply_mask, get_scheme, load_all
from engine.schemes.block import BlockScheme, block_structure_holds
from engine.schemes.importance import IMPORTANCES, get_importance, l1, l2, score_units
from engine.schemes.nm import NMScheme
from engine.schemes.pattern import (CENTRE, PATTERN_LIBRARY, PatternScheme, assign_patterns,
                                    fixed_library, layer_library)
from engine.schemes.selection import nearest_unit_count, prune_lowest, prune_to_weight_count
from engine.schemes.unstructured import UnstructuredScheme

load_all()

SPARSITIES = (0.0, 0.5, 0.8, 0.9)
# conv 3x3 / conv 1x1 / linear, incl. odd channel counts (O=13, I=7).
SHAPES = ((13, 7, 3, 3), (13, 7), (16, 8, 1, 1), (32, 16, 3, 3), (24, 40))
BLOCKS = ((1, 1), (4, 1), (8, 1), (16, 1), (4, 4), (8, 4))


def rand(shape, seed=0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype)


def n_pruned(mask: torch.Tensor) -> int:
    return int((~mask).sum())


def conv_info(name="conv", o=16, i=8, k=3, groups=1) -> LayerInfo:
    return LayerInfo(name, "conv", (o, i // groups, k, k), (1, i, 8, 8), (1, o, 8, 8),
                     padding=(k // 2, k // 2), groups=groups)


def linear_info(name="fc", o=16, i=8) -> LayerInfo:
    return LayerInfo(name, "linear", (o, i), (1, i), (1, o))


# ----------------------------------------------------------------------------- registry / options

def test_all_mask_schemes_registered():
    for name, cls in (("unstructured", UnstructuredScheme), ("block", BlockScheme),
                      ("pattern", PatternScheme), ("nm", NMScheme)):
        assert SCHEMES[name] is cls
        assert isinstance(get_scheme(name), cls)


def test_unknown_scheme_lists_known():
    with pytest.raises(ConfigError) as e:
        get_scheme("nope")
    msg = str(e.value)
    assert "'nope'" in msg
    for name in ("unstructured", "block", "pattern", "nm"):
        assert name in msg


@pytest.mark.parametrize("name,options,option", [
    ("block", {"block": (0, 1)}, "block"),
    ("block", {"block": (4, -1)}, "block"),
    ("block", {"block": (4,)}, "block"),
    ("block", {"block": "44"}, "block"),
    ("block", {"block": (2.0, 1)}, "block"),
    ("block", {"block": (True, 1)}, "block"),
    ("block", {"blok": (4, 1)}, "blok"),
    ("nm", {"n": 0, "m": 4}, "n"),
    ("nm", {"n": 2, "m": -4}, "m"),
    ("nm", {"n": 1.5, "m": 4}, "n"),
    ("nm", {"n": 4, "m": 4}, "n"),
    ("nm", {"k": 4}, "k"),
    ("pattern", {"library": "bogus"}, "library"),
    ("pattern", {"patterns": 8}, "patterns"),
    ("unstructured", {"block": (4, 1)}, "block"),
])
def test_bad_options_raise_config_error_naming_option(name, options, option):
    with pytest.raises(ConfigError, match=f"'{option}'"):
        get_scheme(name, **options)


@pytest.mark.parametrize("name", ["unstructured", "block", "pattern"])
@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_bad_sparsity_raises(name, bad):
    with pytest.raises(ConfigError, match="sparsity"):
        get_scheme(name).mask(rand((8, 4, 3, 3)), bad)


def test_describe_and_block_property():
    assert get_scheme("block", block=[8, 4]).block == (8, 4)
    assert get_scheme("block", block=(8, 4)).describe() == {"scheme": "block", "block": [8, 4]}
    assert get_scheme("unstructured").block == (1, 1)
    assert get_scheme("nm", n=1, m=4).describe()["n"] == 1
    assert get_scheme("pattern", library="layer").describe()["library"] == "layer"


# ----------------------------------------------------------------------------- importance

def test_importance_functions():
    units = torch.tensor([[3.0, -4.0], [1.0, 1.0], [0.0, -2.0]])
    assert torch.allclose(l2(units), torch.tensor([5.0, math.sqrt(2.0), 2.0]))
    assert torch.allclose(l1(units), torch.tensor([7.0, 2.0, 2.0]))
    assert IMPORTANCES == {"l2": l2, "l1": l1}


def test_get_importance():
    assert get_importance(None) is l2          # default: L2 group norm
    assert get_importance("l2") is l2
    assert get_importance("l1") is l1
    fn = lambda u: u.sum(1)                    # noqa: E731
    assert get_importance(fn) is fn
    with pytest.raises(ConfigError) as e:
        get_importance("l3")
    assert "'l3'" in str(e.value) and "l1" in str(e.value) and "l2" in str(e.value)
    with pytest.raises(ConfigError):
        get_importance(3)


def test_score_units_checks_shape_and_nan():
    with pytest.raises(SchemeError, match="expected"):
        score_units(torch.ones(4, 2), lambda u: u)          # returns 2-D
    scores = score_units(torch.tensor([[1.0], [float("nan")]]), lambda u: u[:, 0])
    assert scores[1] == float("-inf") and scores[0] == 1.0
    half = score_units(torch.ones(3, 2, dtype=torch.float16))
    assert half.dtype == torch.float32


# ----------------------------------------------------------------------------- selection helpers

def test_prune_lowest_exact_count_and_ties_by_index():
    scores = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 2.0])
    assert prune_lowest(scores, 3).tolist() == [True, True, False, True, False, False]
    assert not prune_lowest(scores, 0).any()
    assert prune_lowest(scores, 6).all()
    for k in range(7):
        assert int(prune_lowest(rand(50, seed=k), k).sum()) == k


def test_prune_to_weight_count_nearest_prefix():
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0])
    sizes = torch.tensor([4, 4, 2, 4])
    for target, expect in ((0, 0), (2, 0), (3, 4), (6, 4), (7, 8), (9, 8), (10, 10), (100, 14)):
        pruned = prune_to_weight_count(scores, sizes, target)
        assert int(sizes[pruned].sum()) == expect, target
    assert nearest_unit_count(6, 4, 10) == 1 and nearest_unit_count(7, 4, 10) == 2
    assert nearest_unit_count(100, 4, 10) == 10 and nearest_unit_count(0, 4, 10) == 0


# ----------------------------------------------------------------------------- unstructured

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_unstructured_exact_sparsity_keeps_largest(shape, sparsity):
    w = rand(shape)
    mask = get_scheme("unstructured").mask(w, sparsity)
    assert mask.dtype == torch.bool and mask.shape == w.shape
    assert n_pruned(mask) == round(sparsity * w.numel())
    if 0 < sparsity:
        assert w.abs()[mask].min() >= w.abs()[~mask].max()


def test_unstructured_ties_deterministic():
    w = torch.ones(4, 5)
    mask = get_scheme("unstructured").mask(w, 0.5)
    assert (~mask).flatten().tolist() == [True] * 10 + [False] * 10
    assert torch.equal(mask, get_scheme("unstructured").mask(w, 0.5))


def test_unstructured_custom_importance_and_parameter():
    w = torch.nn.Parameter(rand((8, 6)))
    mask = get_scheme("unstructured").mask(w, 0.5, importance=lambda u: -u.abs()[:, 0])
    assert w.detach().abs()[~mask].min() >= w.detach().abs()[mask].max()  # keeps the smallest
    masked = apply_mask(w, mask)
    assert int((masked == 0).sum()) == 24


# ----------------------------------------------------------------------------- block

def ref_block_mask(w: torch.Tensor, rows: int, cols: int, sparsity: float, p: int = 2):
    """Scalar reference: score each unit by its Lp norm, prune lowest first (ties -> unit index),
    stop at the prefix whose pruned-weight count is nearest the target (ties -> shorter)."""
    o, i = w.shape[0], w.shape[1]
    w3 = w.reshape(o, i, -1)
    k_n = w3.shape[2]
    units = []
    for rb in range(math.ceil(o / rows)):
        for cb in range(math.ceil(i / cols)):
            for k in range(k_n):
                cells = [(r, c) for r in range(rb * rows, min(o, rb * rows + rows))
                         for c in range(cb * cols, min(i, cb * cols + cols))]
                vals = [abs(float(w3[r, c, k])) for r, c in cells]
                score = sum(v ** p for v in vals) ** (1.0 / p)
                units.append((score, len(units), cells, k))
    units.sort(key=lambda u: (u[0], u[1]))
    target = round(sparsity * w.numel())
    best, best_dist, cum = 0, target, 0
    for n, unit in enumerate(units, 1):
        cum += len(unit[2])
        if abs(cum - target) < best_dist:
            best, best_dist = n, abs(cum - target)
    mask = torch.ones(o, i, k_n, dtype=torch.bool)
    for _, _, cells, k in units[:best]:
        for r, c in cells:
            mask[r, c, k] = False
    return mask.reshape(w.shape)


@pytest.mark.parametrize("shape", [(13, 7, 3, 3), (13, 7), (16, 8, 1, 1), (9, 10, 1, 3)])
@pytest.mark.parametrize("block", [(1, 1), (4, 1), (4, 2), (3, 3), (8, 4), (16, 1)])
@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_block_matches_scalar_reference(shape, block, sparsity):
    w = rand(shape, seed=1, dtype=torch.float64)  # float64: no near-ties between the two
    mask = get_scheme("block", block=block).mask(w, sparsity)
    assert torch.equal(mask, ref_block_mask(w, *block, sparsity))


def test_block_matches_reference_with_l1_importance():
    w = rand((13, 7, 3, 3), seed=2, dtype=torch.float64)
    mask = get_scheme("block", block=(4, 2)).mask(w, 0.7, importance="l1")
    assert torch.equal(mask, ref_block_mask(w, 4, 2, 0.7, p=1))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("block", [(1, 1), (4, 1), (8, 4), (3, 5)])
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_block_exact_sparsity(shape, block, sparsity):
    w = rand(shape, seed=3)
    mask = get_scheme("block", block=block).mask(w, sparsity)
    target = round(sparsity * w.numel())
    rows, cols = block
    o, i = shape[0], shape[1]
    if o % rows == 0 and i % cols == 0:
        unit = rows * cols
        assert n_pruned(mask) == nearest_unit_count(target, unit, w.numel() // unit) * unit
    # within half of the largest unit of the target (the largest unit is at most rows*cols)
    assert abs(n_pruned(mask) - target) <= rows * cols / 2
    assert block_structure_holds(mask, block)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("shape", [(64, 32, 1, 1), (32, 16, 3, 3), (48, 40), (13, 7, 3, 3)],
                         ids=["conv1x1", "conv3x3", "linear", "conv3x3-odd"])
def test_block_structure_holds(block, shape):
    w = rand(shape, seed=4)
    mask = get_scheme("block", block=block).mask(w, 0.8)
    assert block_structure_holds(mask, block)
    assert n_pruned(mask) > 0
    if block != (1, 1):  # break one unit: flip a single weight inside a kept/pruned block
        broken = mask.clone()
        broken.view(-1)[0] = ~broken.view(-1)[0]
        assert not block_structure_holds(broken, block)


def test_block_1x1_equals_unstructured():
    w = rand((13, 7, 3, 3), seed=5)
    for sparsity in SPARSITIES:
        assert torch.equal(get_scheme("block").mask(w, sparsity),
                           get_scheme("unstructured").mask(w, sparsity))
    custom = lambda u: u.sum(1)  # noqa: E731  (non-built-in importance goes the general path)
    assert torch.equal(get_scheme("block", block=(1, 1)).mask(w, 0.6, custom),
                       get_scheme("unstructured").mask(w, 0.6, custom))
    ties = torch.ones(6, 4, 3, 3)
    assert torch.equal(get_scheme("block").mask(ties, 0.5),
                       get_scheme("unstructured").mask(ties, 0.5))


def test_block_rows_equal_o_is_column_pruning():
    w = rand((12, 6, 3, 3), seed=6)
    mask = get_scheme("block", block=(12, 1)).mask(w, 0.5)
    cols = mask.reshape(12, -1)                   # GEMM view: each column all kept or all pruned
    assert bool((cols.all(0) | (~cols).all(0)).all())
    assert n_pruned(mask) == round(0.5 * w.numel())
    norms = w.reshape(12, -1).norm(dim=0)
    assert norms[cols[0]].min() >= norms[~cols[0]].max()


def test_block_punches_kernel_positions_independently():
    # One channel block; kernel positions with big weights must be the ones kept.
    w = torch.full((4, 4, 3, 3), 0.01)
    w[:, :, 1, 1] = 5.0
    w[:, :, 0, 2] = 3.0
    mask = get_scheme("block", block=(4, 4)).mask(w, 7 / 9)
    assert mask[:, :, 1, 1].all() and mask[:, :, 0, 2].all()
    assert int(mask.sum()) == 2 * 16


def test_block_ties_deterministic():
    w = torch.ones(8, 4)
    mask = get_scheme("block", block=(4, 1)).mask(w, 0.5)
    assert (~mask[:4]).all() and mask[4:].all()    # lower unit index pruned first


def test_block_sparsity_zero_keeps_all_and_rejects_bad_weight():
    assert get_scheme("block", block=(4, 1)).mask(rand((13, 7, 3, 3)), 0.0).all()
    with pytest.raises(SchemeError, match="shape"):
        get_scheme("block", block=(4, 1)).mask(rand((4, 4, 3)), 0.5)


def test_block_check_reasons():
    s = get_scheme("block", block=(8, 1))
    reason = s.check(conv_info("layer1.conv", o=4, i=16))
    assert reason == "block (8,1) does not fit layer layer1.conv with 4 output channels"
    reason = get_scheme("block", block=(1, 8)).check(linear_info("head", o=16, i=4))
    assert "does not fit layer head" in reason and "4 input channels" in reason
    depthwise = s.check(conv_info("dw", o=32, i=32, groups=32))
    assert "depthwise" in depthwise and "dw" in depthwise
    assert "grouped" in s.check(conv_info("g", o=32, i=32, groups=4))
    assert s.check(conv_info("ok", o=16, i=8)) is None
    assert s.check(conv_info("odd", o=13, i=7)) is None   # fits; edge blocks handled
    assert s.check(linear_info("fc", o=64, i=48)) is None
    # an int8 block (quads): wider than the input channels up to their next quad, one unit
    # across them; not an fp32 one
    assert get_scheme("block", block=(4, 4), quads=True).check(conv_info("stem", o=32, i=3)) is None
    assert "3 input channels" in get_scheme("block", block=(4, 4)).check(conv_info("stem", o=32, i=3))
    assert "3 input channels" in get_scheme("block", block=(4, 8), quads=True).check(
        conv_info("stem", o=32, i=3))
    with pytest.raises(ConfigError, match="quads"):
        get_scheme("block", block=(4, 4), quads="yes")


def test_block_wider_than_the_inputs_is_one_unit_across_them():
    w = rand((32, 3, 3, 3))
    mask = get_scheme("block", block=(4, 4), quads=True).mask(w, 0.75)
    assert block_structure_holds(mask, (4, 3))          # the whole 3 channels of 4 rows at a tap
    # the units' scores: the 4 x 3 block norms, the lowest 75% pruned
    units = w.reshape(8, 4, 3, 9).permute(0, 3, 1, 2).reshape(72, 12).norm(dim=1)
    keep = mask.reshape(8, 4, 3, 9)[:, 0, 0, :].reshape(72)
    assert int(keep.sum()) == 18 and units[keep].min() >= units[~keep].max()


def test_block_structure_holds_validates_block():
    with pytest.raises(ConfigError, match="block"):
        block_structure_holds(torch.ones(4, 4, dtype=torch.bool), (0, 1))


def test_block_low_precision_weight():
    w = rand((16, 8, 3, 3), seed=7).to(torch.bfloat16)
    mask = get_scheme("block", block=(4, 1)).mask(w, 0.5)
    assert block_structure_holds(mask, (4, 1)) and n_pruned(mask) == w.numel() // 2


# ----------------------------------------------------------------------------- pattern

def test_pattern_library_data():
    assert len(PATTERN_LIBRARY) == 8
    assert len(set(PATTERN_LIBRARY)) == 8
    for pat in PATTERN_LIBRARY:
        assert len(set(pat)) == 4 and CENTRE in pat and all(0 <= p < 9 for p in pat)
    lib = fixed_library()
    assert lib.shape == (8, 9) and lib.sum(1).eq(4).all() and lib[:, CENTRE].all()


def check_pattern_mask(w: torch.Tensor, mask: torch.Tensor, sparsity: float,
                       library: torch.Tensor) -> None:
    kernels, kmask = w.reshape(-1, 9), mask.reshape(-1, 9)
    nk = kernels.shape[0]
    kept = kmask.any(1)
    patterns = {tuple(row.tolist()) for row in library}
    for row in kmask[kept]:                       # every kept kernel is a library pattern
        assert tuple(row.tolist()) in patterns
        assert row[CENTRE]
    target = round(sparsity * w.numel())
    drop = nearest_unit_count(target - 5 * nk, 4, nk)
    assert int((~kept).sum()) == drop             # connectivity count
    assert abs(n_pruned(mask) - target) <= 2      # within half a kernel
    # Each kernel got its best pattern (brute force over the library).
    energy = kernels.pow(2)
    for n in range(nk):
        best = max(float(energy[n][lib_row].sum()) for lib_row in library)
        chosen = library[int(assign_patterns(kernels[n:n + 1], library)[0])]
        assert math.isclose(float(energy[n][chosen].sum()), best, rel_tol=1e-6)
        if kept[n]:
            assert torch.equal(kmask[n], chosen)
    # Connectivity pruning removed the lowest-norm kernels (norm after the pattern step).
    if 0 < int((~kept).sum()) < nk:
        chosen = library[assign_patterns(kernels, library)]
        norms = (kernels * chosen).norm(dim=1)
        assert norms[kept].min() >= norms[~kept].max()


@pytest.mark.parametrize("shape", [(13, 7, 3, 3), (16, 8, 3, 3), (4, 3, 3, 3)])
@pytest.mark.parametrize("sparsity", [5 / 9, 0.6, 0.8, 0.9])
def test_pattern_masks(shape, sparsity):
    w = rand(shape, seed=8)
    mask = get_scheme("pattern").mask(w, sparsity)
    check_pattern_mask(w, mask, sparsity, fixed_library())


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.55])
def test_pattern_below_five_ninths_raises(sparsity):
    with pytest.raises(ConfigError, match="5/9"):
        get_scheme("pattern").mask(rand((8, 4, 3, 3)), sparsity)


def test_pattern_layer_library():
    w = rand((32, 16, 3, 3), seed=9)
    lib = layer_library(w)
    assert lib.shape == (8, 9) and lib.sum(1).eq(4).all() and lib[:, CENTRE].all()
    assert len({tuple(r.tolist()) for r in lib}) == 8
    mask = get_scheme("pattern", library="layer").mask(w, 0.8)
    check_pattern_mask(w, mask, 0.8, lib)
    # A layer whose kernels all prefer the corners: that set comes first, the fixed library fills.
    corners = torch.full((4, 4, 3, 3), 0.1)
    corners[:, :, 0, 0] = corners[:, :, 0, 2] = corners[:, :, 2, 2] = 1.0
    lib = layer_library(corners)
    assert lib[0].nonzero().flatten().tolist() == [0, 2, 4, 8]
    assert [tuple(r.nonzero().flatten().tolist()) for r in lib[1:]] == list(PATTERN_LIBRARY[:7])


def test_pattern_rejects_non_3x3_weight_and_check_reasons():
    s = get_scheme("pattern")
    with pytest.raises(SchemeError, match="3x3"):
        s.mask(rand((8, 4, 1, 1)), 0.8)
    with pytest.raises(SchemeError, match="3x3"):
        s.mask(rand((8, 4)), 0.8)
    assert "3x3" in s.check(conv_info("c1", k=1)) and "c1" in s.check(conv_info("c1", k=1))
    assert "linear" in s.check(linear_info("fc"))
    assert "depthwise" in s.check(conv_info("dw", o=16, i=16, groups=16))
    assert s.check(conv_info("c3", k=3)) is None


# ----------------------------------------------------------------------------- N:M

def nm_groups(mask_or_w: torch.Tensor, m: int) -> torch.Tensor:
    """[O, K, I/m, m]: groups of m consecutive input channels at fixed (o, k)."""
    o, i = mask_or_w.shape[0], mask_or_w.shape[1]
    x = mask_or_w.reshape(o, i, -1).permute(0, 2, 1)
    return x.reshape(o, x.shape[1], i // m, m)


@pytest.mark.parametrize("shape", [(13, 8, 3, 3), (16, 16), (13, 24, 1, 1), (8, 32, 3, 3)])
@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (1, 2)])
def test_nm_groups_keep_exactly_n_largest(shape, n, m):
    w = rand(shape, seed=10)
    s = get_scheme("nm", n=n, m=m)
    mask = s.mask(w, None)
    groups, wg = nm_groups(mask, m), nm_groups(w.abs(), m)
    assert bool(groups.sum(-1).eq(n).all())
    kept_min = torch.where(groups, wg, torch.full_like(wg, float("inf"))).min(-1).values
    pruned_max = torch.where(~groups, wg, torch.full_like(wg, -1.0)).max(-1).values
    assert bool((kept_min >= pruned_max).all())
    assert n_pruned(mask) == round((1 - n / m) * w.numel())
    assert torch.equal(mask, s.mask(w, 1 - n / m))    # the fixed sparsity is accepted


@pytest.mark.parametrize("i,expect_tail", [(7, 2), (5, 1), (6, 2)])
def test_nm_ragged_input_channels(i, expect_tail):
    w = rand((13, i, 3, 3), seed=11)
    mask = get_scheme("nm", n=2, m=4).mask(w)
    per_ok = mask.reshape(13, i, 9).sum(1)        # kept per (o, k)
    assert bool(per_ok.eq(2 * (i // 4) + expect_tail).all())
    head = nm_groups(mask[:, : (i // 4) * 4], 4)
    assert bool(head.sum(-1).eq(2).all())


def test_nm_ties_and_zero_weights():
    mask = get_scheme("nm", n=2, m=4).mask(torch.zeros(2, 8))
    assert mask.tolist() == [[True, True, False, False] * 2] * 2


def test_nm_sparsity_mismatch_raises():
    s = get_scheme("nm", n=2, m=4)
    assert s.sparsity == 0.5
    with pytest.raises(ConfigError, match="sparsity"):
        s.mask(rand((8, 8)), 0.8)
    with pytest.raises(ConfigError, match="sparsity"):
        s.mask(rand((8, 8)), 0.0)


def test_nm_check_reasons():
    s = get_scheme("nm", n=2, m=4)
    assert "depthwise" in s.check(conv_info("dw", o=16, i=16, groups=16))
    reason = s.check(linear_info("fc", o=16, i=3))
    assert "fc" in reason and "3 input channels" in reason
    assert s.check(conv_info("c", o=16, i=8)) is None
    assert s.check(linear_info("fc", o=16, i=7)) is None  # ragged tail handled in mask()


# ----------------------------------------------------------------------------- cross-scheme

@pytest.mark.parametrize("shape", [(13, 7, 3, 3), (32, 16, 3, 3)])
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_every_scheme_hits_per_layer_sparsity(shape, sparsity):
    w = rand(shape, seed=12)
    numel, target = w.numel(), round(sparsity * w.numel())
    assert n_pruned(get_scheme("unstructured").mask(w, sparsity)) == target
    assert abs(n_pruned(get_scheme("block", block=(4, 1)).mask(w, sparsity)) - target) <= 2
    if sparsity >= 5 / 9:
        assert abs(n_pruned(get_scheme("pattern").mask(w, sparsity)) - target) <= 2
    else:
        with pytest.raises(ConfigError):
            get_scheme("pattern").mask(w, sparsity)
    if sparsity == 0.5 and shape[1] % 4 == 0:
        assert n_pruned(get_scheme("nm", n=2, m=4).mask(w, sparsity)) == numel // 2


def test_masks_are_deterministic():
    w = rand((32, 16, 3, 3), seed=13)
    for name, opts, s in (("unstructured", {}, 0.8), ("block", {"block": (4, 2)}, 0.8),
                          ("pattern", {}, 0.8), ("pattern", {"library": "layer"}, 0.8),
                          ("nm", {"n": 2, "m": 4}, 0.5)):
        a = get_scheme(name, **opts).mask(w, s)
        b = get_scheme(name, **opts).mask(w.clone(), s)
        assert torch.equal(a, b), name


def test_large_layer_masks():
    w = rand((2048, 2048), seed=14)
    cases = (("unstructured", {}, 0.9), ("block", {"block": (1, 1)}, 0.9),
             ("block", {"block": (4, 1)}, 0.9), ("block", {"block": (3, 5)}, 0.9),
             ("nm", {"n": 2, "m": 4}, 0.5))
    for name, opts, s in cases:
        scheme = get_scheme(name, **opts)
        scheme.mask(w[:64, :64], s)                 # warm up torch kernels
        mask = scheme.mask(w, s)
        assert abs(n_pruned(mask) - round(s * w.numel())) <= 8
    conv = rand((256, 256, 3, 3), seed=15)
    mask = get_scheme("pattern").mask(conv, 0.8)
    assert abs(n_pruned(mask) - round(0.8 * conv.numel())) <= 2
