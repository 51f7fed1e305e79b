"""The layer graph of a mapping Problem and a small message-passing encoder over it, in numpy.

What the GNN mapper (gnn.py; AGMC / GNN-RL, Yu et al., "Automatic Graph Encoder-Decoder
Model Compression" and "GNN-RL Compression: Topology-Aware Network Pruning using Multi-stage
Graph Embedding and Reinforcement Learning") embeds instead of hand-made per-layer features.

Graph: nodes = the problem's layers in problem order; edge j -> i when layer j's output reaches
layer i's input through ops that are not mapped layers (LayerSpec.inputs, filled by the engine
from a torch.fx trace), so a residual add gives a skip edge, a concat one edge per part, a
depthwise conv an edge to the pointwise conv after it. When any spec does not know its inputs
(inputs=None: specs written by hand, a model torch.fx cannot trace) the graph is the
sequential chain in problem order instead. Producers that are not in the problem (excluded
layers) and self-loops are dropped.

Encoder, R rounds of GraphSAGE-style mean aggregation over in- and out-edges:
    H_0 = X,  H_{r+1} = tanh(H_r S_r + (A_in H_r) I_r + (A_out H_r) O_r + b_r),
    g = mean over nodes of H_R
with A_in / A_out row-normalised (mean over a node's producers / consumers; none = zero row).
`backward` is the hand-written gradient (checked against finite differences in
tests/mapping/test_gnn.py:  python -m pytest tests/mapping/test_gnn.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..problem import Problem
from .genome import GenomeSpace
from .rl import _static_features

# the sparsity levels at which a node's best allowed speedup is a feature
LEVELS = (0.5, 0.7, 0.9)


@dataclass(frozen=True)
class LayerGraph:
    """Directed edges (producer, consumer) between node indices 0..n-1."""

    n: int
    edges: tuple
    source: str = "data flow"          # or "sequential chain" (LayerSpec.inputs unknown)

    def adjacency(self) -> tuple:
        """(A_in, A_out): row i averages over node i's producers / consumers."""
        a = np.zeros((self.n, self.n))
        for src, dst in self.edges:
            a[dst, src] = 1.0
        return _row_mean(a), _row_mean(a.T.copy())

    def permuted(self, perm) -> "LayerGraph":
        """The same graph with node perm[i] renamed i."""
        where = {int(old): new for new, old in enumerate(perm)}
        return LayerGraph(self.n, tuple((where[s], where[d]) for s, d in self.edges),
                          self.source)


def _row_mean(a: np.ndarray) -> np.ndarray:
    deg = a.sum(axis=1, keepdims=True)
    return np.divide(a, deg, out=np.zeros_like(a), where=deg > 0)


def layer_graph(specs: list) -> LayerGraph:
    """The data-flow graph of `specs` (see the module docstring for the fallback)."""
    n = len(specs)
    if any(s.inputs is None for s in specs):
        return LayerGraph(n, tuple((i - 1, i) for i in range(1, n)), "sequential chain")
    index = {s.name: i for i, s in enumerate(specs)}
    edges = []
    for i, s in enumerate(specs):
        for name in s.inputs:
            j = index.get(name)
            if j is not None and j != i and (j, i) not in edges:
                edges.append((j, i))
    return LayerGraph(n, tuple(edges))


def node_features(problem: Problem, space: GenomeSpace) -> np.ndarray:
    """(layers, 12 + 5 + len(LEVELS)) node features, each scaled to about [0, 1]: the RL
    mapper's per-layer features (order, op, kernel, stride, channels, FLOPs / params / dense
    latency share, best allowed speedup), then depthwise, output size, int8 allowed, number of
    allowed candidates, and the best allowed speedup at sparsity <= each of LEVELS."""
    specs = problem.layers
    dense = space.lat[:, 0]
    level = np.zeros_like(space.lat)
    for i, opts in enumerate(space.options):
        level[i, :len(opts)] = [c.sparsity for c in opts]
    at = np.zeros((len(specs), len(LEVELS)))
    for i, k in enumerate(space.sizes):
        for j, s in enumerate(LEVELS):
            ok = level[i, :k] <= s + 1e-9          # DENSE (0.0) always qualifies
            at[i, j] = np.log(dense[i] / space.lat[i, :k][ok].min())
    at = np.maximum(at, 0.0) / max(at.max(), 1e-12)
    out_hw = np.log([max(1, s.output_hw[0] * s.output_hw[1]) for s in specs]) + 1.0
    extra = np.stack([
        [s.is_depthwise for s in specs],
        out_hw / out_hw.max(),
        space.is8.any(axis=1),
        space.sizes / space.sizes.max(),
    ], axis=1).astype(float)
    return np.concatenate([_static_features(problem, space), extra, at], axis=1)


class GraphEncoder:
    """`rounds` message-passing rounds of width `hidden` (see the module docstring)."""

    def __init__(self, n_features: int, hidden: int, rounds: int, rng: np.random.Generator):
        self.hidden, self.rounds = hidden, rounds
        self.params = {}
        fan_in = n_features
        for r in range(rounds):
            std = 1.0 / np.sqrt(3 * fan_in)          # three summed terms
            for k in ("S", "I", "O"):
                self.params[f"{k}{r}"] = rng.normal(0.0, std, (fan_in, hidden))
            self.params[f"b{r}"] = np.zeros(hidden)
            fan_in = hidden
        self._cache: list = []

    def forward(self, X: np.ndarray, a_in: np.ndarray, a_out: np.ndarray) -> tuple:
        """(node embeddings (n, hidden), graph embedding (hidden,)); keeps what `backward`
        needs."""
        p, H = self.params, np.asarray(X, float)
        self._cache = [(a_in, a_out)]
        for r in range(self.rounds):
            hin, hout = a_in @ H, a_out @ H
            out = np.tanh(H @ p[f"S{r}"] + hin @ p[f"I{r}"] + hout @ p[f"O{r}"] + p[f"b{r}"])
            self._cache.append((H, hin, hout, out))
            H = out
        return H, H.mean(axis=0)

    def backward(self, d_nodes: np.ndarray, d_graph: np.ndarray) -> dict:
        """Parameter gradients of an objective whose gradients w.r.t. the last `forward`'s
        outputs are d_nodes (n, hidden) and d_graph (hidden,)."""
        p = self.params
        a_in, a_out = self._cache[0]
        dH = d_nodes + d_graph[None, :] / len(d_nodes)
        grads = {}
        for r in reversed(range(self.rounds)):
            H, hin, hout, out = self._cache[r + 1]
            dZ = dH * (1.0 - out ** 2)
            grads[f"S{r}"], grads[f"I{r}"], grads[f"O{r}"] = H.T @ dZ, hin.T @ dZ, hout.T @ dZ
            grads[f"b{r}"] = dZ.sum(axis=0)
            dH = dZ @ p[f"S{r}"].T + a_in.T @ (dZ @ p[f"I{r}"].T) + \
                a_out.T @ (dZ @ p[f"O{r}"].T)
        return grads
