"""Structure-LTH's regroup / refill (engine/schemes/regroup.py): from an unstructured (IMP) mask,
a block mask of the asked block shape at exactly the target sparsity, keeping the blocks (or
whole output channels) that hold the most IMP-kept |w|, checked against a brute-force numpy
reference written here; bad options name themselves."""
import numpy as np
import pytest
import torch

from engine.errors import ConfigError, SchemeError
from engine.schemes import get_scheme
from engine.schemes.block import block_structure_holds
from engine.schemes.regroup import RegroupScheme
from mapping import Candidate


def imp_mask(w: torch.Tensor, density: float, seed: int = 1) -> torch.Tensor:
    """A random unstructured keep-mask (an IMP mask stand-in) keeping `density` of w."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(w.shape, generator=g) < density


def brute_force_blocks(w: np.ndarray, keep: np.ndarray, rows: int, cols: int,
                       sparsity: float) -> np.ndarray:
    """Reference: every (rows x cols, one kernel position) block scored by the sum of |w| over
    its kept weights, the n highest kept (dims divisible by the block here)."""
    o, i = w.shape[:2]
    w3 = (np.abs(w) * keep).reshape(o, i, -1)
    k = w3.shape[2]
    blocks = [(r, c, p) for r in range(0, o, rows) for c in range(0, i, cols) for p in range(k)]
    score = [w3[r:r + rows, c:c + cols, p].sum() for r, c, p in blocks]
    n_keep = len(blocks) - int(round(sparsity * w.size)) // (rows * cols)
    out = np.zeros((o, i, k), dtype=bool)
    for b in sorted(range(len(blocks)), key=lambda j: -score[j])[:n_keep]:
        r, c, p = blocks[b]
        out[r:r + rows, c:c + cols, p] = True
    return out.reshape(w.shape)


@pytest.mark.parametrize("shape,block", [((16, 8, 3, 3), (4, 1)), ((16, 8, 3, 3), (4, 4)),
                                         ((32, 16), (8, 1)), ((8, 12, 1, 1), (2, 2))])
@pytest.mark.parametrize("sparsity", [0.5, 0.75])
def test_regroup_is_a_block_mask_at_exactly_the_target(shape, block, sparsity):
    w = torch.randn(shape)
    m = get_scheme("regroup", block=block).regroup(w, imp_mask(w, 1 - sparsity), sparsity)
    assert m.dtype == torch.bool and m.shape == w.shape
    assert block_structure_holds(m, block)
    assert int((~m).sum()) == round(sparsity * w.numel())


@pytest.mark.parametrize("shape,block", [((8, 4, 3, 3), (2, 2)), ((12, 8), (4, 1)),
                                         ((8, 8, 1, 1), (1, 4))])
def test_regroup_keeps_the_blocks_with_most_kept_magnitude(shape, block):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    keep = imp_mask(w, 0.3)
    got = RegroupScheme(block=block).regroup(w, keep, 0.5).numpy()
    ref = brute_force_blocks(w.numpy(), keep.numpy(), *block, 0.5)
    np.testing.assert_array_equal(got, ref)
    # not the same as scoring all of |w|: pruned weights count zero
    whole = get_scheme("block", block=block).mask(w, 0.5, "l1").numpy()
    assert not np.array_equal(whole, ref)


def test_refill_keeps_the_channels_with_most_kept_norm():
    w = torch.randn(10, 6, 3, 3, generator=torch.Generator().manual_seed(4))
    keep = imp_mask(w, 0.2)
    m = RegroupScheme(block=(1, 4), granularity="channel").regroup(w, keep, 0.6)
    kept_norm = (w.abs() * keep).reshape(10, -1).sum(1).numpy()
    top = set(np.argsort(-kept_norm)[:4])                     # 40% of 10 channels
    rows = m.reshape(10, -1)
    assert {int(r) for r in np.nonzero(rows.all(1).numpy())[0]} == top
    assert not bool(rows[[r for r in range(10) if r not in top]].any())
    assert block_structure_holds(m, (1, 4)) and int((~m).sum()) == round(0.6 * w.numel())


def test_refill_row_blocks_follow_the_block_rows():
    w = torch.randn(16, 8, 3, 3)
    m = RegroupScheme(block=(4, 1), granularity="channel").regroup(w, imp_mask(w, 0.25), 0.75)
    assert block_structure_holds(m, (4, 1)) and int((~m).sum()) == round(0.75 * w.numel())
    per_row = m.reshape(16, -1).all(1).reshape(4, 4)
    assert bool((per_row == per_row[:, :1]).all()) and int(per_row[:, 0].sum()) == 1


def test_mask_without_imp_mask_regroups_the_magnitude_mask():
    w = torch.randn(16, 8, 3, 3)
    s = RegroupScheme(block=(4, 1))
    magnitude = get_scheme("unstructured").mask(w, 0.8)
    assert torch.equal(s.mask(w, 0.8), s.regroup(w, magnitude, 0.8))
    # an already IMP-pruned weight (zeros outside its mask) regroups the same either way
    pruned = w * magnitude
    assert torch.equal(s.mask(pruned, 0.8), s.regroup(w, magnitude, 0.8))
    assert s.describe() == {"scheme": "regroup", "block": [4, 1], "granularity": "block"}


@pytest.mark.parametrize("options,option", [({"block": (0, 1)}, "block"),
                                            ({"block": (4,)}, "block"),
                                            ({"block": "4x1"}, "block"),
                                            ({"granularity": "kernel"}, "granularity"),
                                            ({"rows": 4}, "rows")])
def test_bad_options_name_the_option(options, option):
    with pytest.raises(ConfigError, match=option):
        get_scheme("regroup", **options)


def test_block_larger_than_the_layer_or_wrong_mask_is_refused():
    w = torch.randn(4, 8, 3, 3)
    with pytest.raises(SchemeError, match=r"block \(8,1\).*\(4, 8, 3, 3\)"):
        RegroupScheme(block=(8, 1)).regroup(w, w != 0, 0.5)
    with pytest.raises(SchemeError, match=r"unstructured mask has shape \(4, 8\)"):
        RegroupScheme(block=(4, 1)).regroup(w, torch.ones(4, 8, dtype=torch.bool), 0.5)
    with pytest.raises(ConfigError, match="sparsity"):
        RegroupScheme(block=(4, 1)).regroup(w, w != 0, 1.5)


def test_candidate_key_round_trips():
    c = Candidate("regroup", (8, 1), 0.8)
    assert c.key == "regroup8x1@0.80/native" and Candidate.from_key(c.key) == c


def test_optimize_runs_regroup_on_the_block_kernels():
    import engine
    from qnet import qnet
    torch.manual_seed(0)
    m = qnet()
    x = torch.randn(2, 3, 32, 32)
    kw = dict(block=(8, 1), sparsity=0.75, measure=False, progress=False)
    opt = engine.optimize(m, (x,), scheme="regroup", **kw)
    pruned = [c for c in opt.plan if c.scheme == "regroup"]
    assert pruned and all(c.block == (8, 1) for c in pruned)
    for c in pruned:
        w = opt.pruned_model.get_submodule(c.layer).weight.detach()
        assert block_structure_holds(w != 0, (8, 1))
    # the block scheme's kernels: same block, same row groups
    block = engine.optimize(m, (x,), scheme="block", **kw)
    assert [c.kernel for c in opt.plan] == [c.kernel for c in block.plan]
    with torch.no_grad():
        torch.testing.assert_close(opt(x), opt.pruned_model(x), rtol=1e-4, atol=1e-4)


def test_refill_keeps_at_least_one_row_block():
    """A 4-row layer at 90% (0.4 rows to keep): the best row is kept, as the filter scheme
    keeps one filter, never an all-zero layer."""
    w = torch.randn(4, 6, 3, 3, generator=torch.Generator().manual_seed(2))
    keep = imp_mask(w, 0.3)
    m = RegroupScheme(block=(1, 1), granularity="channel").regroup(w, keep, 0.9)
    rows = m.reshape(4, -1).all(1)
    assert int(rows.sum()) == 1
    assert int(rows.nonzero()) == int((w.abs() * keep).reshape(4, -1).sum(1).argmax())


def test_plan_records_the_granularity_and_replays_the_same_masks():
    import engine
    from qnet import qnet
    torch.manual_seed(0)
    m = qnet()
    x = torch.randn(1, 3, 32, 32)
    kw = dict(measure=False, progress=False)
    opt = engine.optimize(m, (x,), scheme="regroup", block=(4, 1), sparsity=0.75,
                          granularity="channel", **kw)
    pruned = [c for c in opt.plan if c.scheme == "regroup" and c.pruned]
    assert pruned and all(c.options == {"granularity": "channel"} for c in pruned)
    again = engine.optimize(m, (x,), plan=opt.plan, **kw)
    for c in pruned:
        a = opt.pruned_model.get_submodule(c.layer).weight != 0
        b = again.pruned_model.get_submodule(c.layer).weight != 0
        assert torch.equal(a, b), c.layer
