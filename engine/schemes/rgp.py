"""Regular-graph pruning (RGP, Chen et al., "Neural network pruning through its regular graph
structure"): a layer's kept connections are the edges of a (near-)regular graph with a short
average shortest path length, mapped onto blocks of channels.

A layer (O, I, K) with `block=(rows, cols)` has R = ceil(O / rows) output nodes and
C = ceil(I / cols) input nodes; an edge (r, c) keeps the rows x cols block of output channels r
and input channels c at every kernel position (whole blocks of the engine's block kernels).
The graph is bipartite and as regular as the counts allow: E = round((1 - sparsity) * R * C)
edges, every output node of degree floor or ceil of E / R (the degree is the sparsity), every
input node of degree floor or ceil of E / C. It starts from a seeded random near-regular graph,
then `swaps` double-edge swaps ((a, x), (b, y) -> (a, y), (b, x): degrees unchanged) are tried,
each kept only if it lowers the graph's average shortest path length (ASPL; unreachable pairs
count as 2 (R + C) hops, so connecting the graph comes first; above MAX_SOURCES nodes it is
estimated from that many breadth-first sources): information from any input
channel reaches any output channel of the next layers in few hops, the property the paper ties
to accuracy at high sparsity.

The mask does not depend on the weight (the scheme takes no importance): RGP is trained from
its mask (engine.train; the paper trains from scratch), not a post-training pruner. `seed`
fixes the graph. ASPL is computed with scipy.sparse.csgraph (breadth first from every node):
`swaps` bounds the work (O(swaps x nodes x edges)).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from .base import Importance, check_sparsity, register_scheme
from .block import BlockScheme, as_oik, parse_block
from .options import positive_int, reject_unknown


def _degrees(total: int, n: int) -> np.ndarray:
    """n degrees summing to `total`, each floor or ceil of total / n."""
    base, extra = divmod(total, n)
    return np.array([base + 1] * extra + [base] * (n - extra), dtype=np.int64)


def near_regular(r: int, c: int, edges: int, rng: np.random.Generator) -> np.ndarray:
    """Bool adjacency (r x c) with `edges` edges, degrees as regular as possible: each output
    node in a random order takes the input nodes with the most degree left (ties random)."""
    adj = np.zeros((r, c), dtype=bool)
    left = _degrees(edges, c)[rng.permutation(c)]
    out_deg = _degrees(edges, r)[rng.permutation(r)]
    for a in np.argsort(-out_deg, kind="stable"):
        k = int(out_deg[a])
        if k == 0:
            continue
        noise = rng.random(c)
        order = np.lexsort((noise, -left))      # most degree left first, ties random
        pick = order[:k]
        adj[a, pick] = True
        left[pick] -= 1
    return adj


def aspl(adj: np.ndarray, sources: Optional[np.ndarray] = None) -> float:
    """Average shortest path length of the bipartite graph (R + C nodes) of `adj`, from every
    node or from `sources` only (node indices: outputs 0..R-1, inputs R..); an unreachable pair
    counts as 2 (R + C) hops."""
    from scipy.sparse import bmat, csr_matrix
    from scipy.sparse.csgraph import shortest_path
    r, c = adj.shape
    a = csr_matrix(adj.astype(np.int8))
    g = bmat([[None, a], [a.T, None]], format="csr")
    d = shortest_path(g, method="D", unweighted=True, directed=False, indices=sources)
    n = r + c
    d[~np.isfinite(d)] = 2 * n
    rows = n if sources is None else len(sources)
    return float(d.sum() / (rows * (n - 1)))


# graphs with more nodes than this have their ASPL estimated from this many BFS sources (the
# same ones before and after a swap)
MAX_SOURCES = 128


def swap_down(adj: np.ndarray, swaps: int, rng: np.random.Generator) -> tuple:
    """Try `swaps` degree-preserving double-edge swaps, keeping those that lower the ASPL.
    Returns (adjacency, its ASPL, swaps kept)."""
    adj = adj.copy()
    n = sum(adj.shape)
    sources = None if n <= MAX_SOURCES else np.sort(rng.choice(n, MAX_SOURCES, replace=False))
    best = aspl(adj, sources)
    kept = 0
    for _ in range(swaps):
        rows, cols = np.nonzero(adj)
        if len(rows) < 2:
            break
        i, j = rng.choice(len(rows), 2, replace=False)
        a, x, b, y = rows[i], cols[i], rows[j], cols[j]
        if a == b or x == y or adj[a, y] or adj[b, x]:
            continue
        adj[a, x] = adj[b, y] = False
        adj[a, y] = adj[b, x] = True
        got = aspl(adj, sources)
        if got < best:
            best, kept = got, kept + 1
        else:
            adj[a, y] = adj[b, x] = False
            adj[a, x] = adj[b, y] = True
    return adj, best, kept


@register_scheme
class RGPScheme(BlockScheme):
    """Blocks of channels kept where a low-ASPL near-regular bipartite graph has edges (the
    block scheme's units and applicability; only the choice of the kept units differs)."""

    name = "rgp"

    def __init__(self, block: Sequence[int] = (1, 1), seed: int = 0, swaps: int = 100,
                 **unknown) -> None:
        reject_unknown(self.name, unknown, ("block", "seed", "swaps"))
        self.rows, self.cols = parse_block(block, self.name)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"scheme 'rgp': option 'seed' must be an int >= 0, got {seed!r}")
        self.seed = seed
        self.swaps = 0 if swaps == 0 and not isinstance(swaps, bool) else \
            positive_int(swaps, "swaps", self.name)
        self.last: dict = {}          # the last mask's graph: nodes, edges, aspl, swaps kept

    def graph(self, out_channels: int, in_channels: int, sparsity: float) -> np.ndarray:
        """The layer's kept blocks: bool (R, C) adjacency for `sparsity`."""
        r, c = -(-out_channels // self.rows), -(-in_channels // self.cols)
        edges = int(round((1.0 - sparsity) * r * c))
        edges = max(edges, max(r, c)) if sparsity < 1.0 else 0   # every node keeps one edge
        rng = np.random.default_rng([self.seed, out_channels, in_channels])
        adj = near_regular(r, c, min(edges, r * c), rng)
        adj, length, kept = swap_down(adj, self.swaps, rng)
        self.last = {"nodes": (r, c), "edges": int(adj.sum()), "aspl": length,
                     "swaps_kept": kept}
        return adj

    def mask(self, weight: torch.Tensor, sparsity: float,
             importance: Optional[Importance] = None) -> torch.Tensor:
        s = check_sparsity(sparsity, f" for weight of shape {tuple(weight.shape)}")
        o, i, k = as_oik(weight.detach()).shape
        adj = torch.from_numpy(self.graph(o, i, s))
        m = adj.repeat_interleave(self.rows, 0)[:o].repeat_interleave(self.cols, 1)[:, :i]
        return m[:, :, None].expand(o, i, k).reshape(weight.shape).clone()

    def describe(self) -> dict:
        return {"scheme": self.name, "block": [self.rows, self.cols], "seed": self.seed,
                "swaps": self.swaps}


__all__ = ["RGPScheme", "aspl", "near_regular", "swap_down"]
