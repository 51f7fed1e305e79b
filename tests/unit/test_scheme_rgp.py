"""Regular-graph pruning (engine/schemes/rgp.py): the mask is whole (rows x cols) blocks at every
kernel position, as regular as the counts allow (each output / input block row keeps floor or
ceil of the mean), at the asked sparsity; the edge swaps keep degrees and never raise the
average shortest path length, checked against a plain breadth-first reference written here;
the scheme runs through optimize() on the block kernels against the masked torch model."""
from collections import deque

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.schemes import get_scheme
from engine.schemes.block import block_structure_holds
from engine.schemes.rgp import aspl, near_regular, swap_down
from mapping import Candidate


def bfs_aspl(adj: np.ndarray) -> float:
    """The reference: BFS from every node of the bipartite graph, unreachable = 2 n hops."""
    r, c = adj.shape
    n = r + c
    nbrs = [list(np.nonzero(adj[i])[0] + r) for i in range(r)] + \
        [list(np.nonzero(adj[:, j])[0]) for j in range(c)]
    total = 0
    for s in range(n):
        dist = [-1] * n
        dist[s] = 0
        q = deque([s])
        while q:
            u = q.popleft()
            for v in nbrs[u]:
                if dist[v] < 0:
                    dist[v] = dist[u] + 1
                    q.append(v)
        total += sum(d if d >= 0 else 2 * n for i, d in enumerate(dist) if i != s)
    return total / (n * (n - 1))


@pytest.mark.parametrize("r,c,e", [(8, 8, 16), (6, 20, 40), (16, 4, 40), (5, 7, 7)])
def test_graph_is_near_regular_and_its_aspl_matches_bfs(r, c, e):
    adj = near_regular(r, c, e, np.random.default_rng(1))
    assert adj.sum() == e
    for deg, n in ((adj.sum(1), r), (adj.sum(0), c)):
        assert deg.max() - deg.min() <= 1 and abs(deg.mean() - e / n) < 1e-9
    assert aspl(adj) == pytest.approx(bfs_aspl(adj))


def test_swaps_keep_degrees_and_lower_the_aspl():
    rng = np.random.default_rng(3)
    adj = near_regular(12, 24, 60, rng)
    before = bfs_aspl(adj)
    got, length, kept = swap_down(adj, 200, np.random.default_rng(4))
    assert (got.sum(0) == adj.sum(0)).all() and (got.sum(1) == adj.sum(1)).all()
    assert length == pytest.approx(bfs_aspl(got)) and length <= before
    assert kept > 0 and length < before


@pytest.mark.parametrize("shape,block", [((64, 32, 3, 3), (4, 1)), ((96, 64, 1, 1), (8, 4)),
                                         ((30, 17), (4, 2)), ((10, 64, 1, 1), (4, 1))])
@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_mask_is_blocks_at_the_asked_sparsity(shape, block, sparsity):
    s = get_scheme("rgp", block=block, swaps=30)
    m = s.mask(torch.randn(shape), sparsity)
    assert m.shape == torch.Size(shape) and m.dtype == torch.bool
    assert block_structure_holds(m, block)
    flat = m.reshape(shape[0], shape[1], -1)
    assert bool((flat == flat[:, :, :1]).all())          # the same blocks at every position
    r, c = s.last["nodes"]
    if s.last["edges"] > max(r, c):                        # not raised to one edge a node
        assert abs((1 - m.float().mean().item()) - sparsity) < 1.0 / min(r, c) + 0.02


def test_mask_depends_on_seed_not_on_weight():
    a, b = torch.randn(64, 32, 3, 3), torch.randn(64, 32, 3, 3)
    s = get_scheme("rgp", block=(4, 1), seed=5, swaps=10)
    assert torch.equal(s.mask(a, 0.8), s.mask(b, 0.8))
    assert not torch.equal(s.mask(a, 0.8), get_scheme("rgp", block=(4, 1), seed=6,
                                                     swaps=10).mask(a, 0.8))


@pytest.mark.parametrize("options,option", [({"block": (0, 1)}, "block"), ({"seed": -1}, "seed"),
                                            ({"swaps": -3}, "swaps"), ({"swaps": False}, "swaps"),
                                            ({"degree": 3}, "degree")])
def test_bad_options_name_the_option(options, option):
    with pytest.raises(ConfigError, match=f"'{option}'"):
        get_scheme("rgp", **options)


def test_candidate_key_round_trips():
    c = Candidate("rgp", (4, 1), 0.8)
    assert c.key == "rgp4x1@0.80/native" and Candidate.from_key(c.key) == c
    with pytest.raises(ValueError, match="block"):
        Candidate("rgp", None, 0.8)


def test_optimize_runs_rgp_on_the_block_kernels():
    import engine
    from qnet import qnet
    torch.manual_seed(0)
    m = qnet()
    x = torch.randn(2, 3, 32, 32)
    opt = engine.optimize(m, (x,), scheme="rgp", block=(4, 1), sparsity=0.75, measure=False,
                          progress=False)
    pruned = [c for c in opt.plan if c.scheme == "rgp"]
    assert pruned and all(c.block == (4, 1) for c in pruned)
    with torch.no_grad():
        torch.testing.assert_close(opt(x), opt.pruned_model(x), rtol=1e-4, atol=1e-4)
