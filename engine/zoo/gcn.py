"""Graph neural networks in plain torch whose weight layers are ordinary nn.Linear layers, so
engine.optimize prunes them onto its block-sparse linear kernels while the sparse adjacency
product stays a torch op (torch.sparse.mm) that the lowering leaves alone (issue P10).

    model = GCN(64, 512, 10, layers=3)           # 64 -> 512 -> 512 -> 10
    logits = model(x, adj)                       # x: (nodes, features), adj: sparse (nodes, nodes)
    opt = engine.optimize(model, (x, adj), scheme="block", block=(4, 1), sparsity=0.8)

GCN is Kipf & Welling's ("Semi-Supervised Classification with Graph Convolutional Networks",
ICLR 2017): H' = relu(A_hat H W + b) with A_hat = D^-1/2 (A + I) D^-1/2. Each layer multiplies in
the cheaper order, as DGL's GraphConv does: a widening layer (in < out features) propagates first,
(A_hat H) W + b; the others transform first, A_hat (H W + b) (the bias inside the propagation,
where the kernel fuses it). That is a variant, not Kipf's layer: A_hat (H W + b) = A_hat H W +
(A_hat 1) b^T, and A_hat's rows do not sum to 1 (0.78-1.26 on the digits kNN graph), so each
node's bias is scaled by its row sum; a learned bias absorbs most of it, and the accuracies in
the README are this model's. The order also suits the engine's linear kernels, which produce
features x nodes: only the transform-first layers' outputs are transposed for the propagation.
SAGE is GraphSAGE with the mean aggregator (Hamilton et al., "Inductive Representation Learning
on Large Graphs", NeurIPS 2017): H' = relu(H W_self + A_mean H W_neigh + b), A_mean = D^-1 A (rows
sum to 1, so the bias commutes with the mean), in the same cheaper order. The normalised
adjacencies come from engine.bench.graph_data (or any sparse COO / CSR tensor).

Not registered in the zoo: zoo.get / zoo.input_shape describe one input tensor of a fixed shape,
and these models take two (node features and a sparse adjacency of the graph's size).
The experiment: `python -m engine bench gcn` (engine/bench/gcn.py).
"""
from __future__ import annotations

import torch
from torch import nn


def _widths(in_features: int, hidden: int, classes: int, layers: int) -> list:
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    return [in_features] + [hidden] * (layers - 1) + [classes]


class GCN(nn.Module):
    """`layers` graph convolutions in_features -> hidden -> ... -> classes (logits per node)."""

    def __init__(self, in_features: int, hidden: int, classes: int, layers: int = 3,
                 dropout: float = 0.5):
        super().__init__()
        w = _widths(in_features, hidden, classes, layers)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(w[:-1], w[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        last = len(self.linears) - 1
        for i, lin in enumerate(self.linears):
            x = self.dropout(x)
            if lin.in_features < lin.out_features:
                x = lin(torch.sparse.mm(adj, x))
            else:
                x = torch.sparse.mm(adj, lin(x))
            if i < last:
                x = torch.relu(x)
        return x


class SAGE(nn.Module):
    """GraphSAGE-mean: per layer a self and a neighbour linear (adj: the mean aggregator)."""

    def __init__(self, in_features: int, hidden: int, classes: int, layers: int = 3,
                 dropout: float = 0.5):
        super().__init__()
        w = _widths(in_features, hidden, classes, layers)
        self.selfs = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(w[:-1], w[1:]))
        self.neighs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(w[:-1], w[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        last = len(self.selfs) - 1
        for i, (s, n) in enumerate(zip(self.selfs, self.neighs)):
            x = self.dropout(x)
            if n.in_features < n.out_features:
                x = s(x) + n(torch.sparse.mm(adj, x))
            else:
                x = s(x) + torch.sparse.mm(adj, n(x))
            if i < last:
                x = torch.relu(x)
        return x


class OnGraph(nn.Module):
    """`model` bound to one graph: forward(x) = model(x, adj), for trainers and accuracy helpers
    that call a model on one input (engine.train). Its layers are `model.<name>`."""

    def __init__(self, model: nn.Module, adj: torch.Tensor):
        super().__init__()
        self.model = model
        self.adj = adj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.adj)


MODELS = {"gcn": GCN, "sage": SAGE}
