"""A real graph without a download: the k-nearest-neighbour graph of scikit-learn's digits, for
transductive node classification with the GNNs of engine.zoo.gcn (issue P10).

    g = digits_graph()            # g.x (1797, 64), g.y, g.adj (GCN), g.adj_mean (GraphSAGE),
                                  # g.train / g.val / g.test (boolean node masks)

No installed package, nor one installable from the registry, ships a citation graph (Cora,
CiteSeer, PubMed) inside its wheel: torch_geometric and dgl fetch them at run time. So the graph
is built from data scikit-learn bundles: nodes are the 1797 8x8 digit images (64 features, pixel
/ 16), 10 classes; each node is joined to its k = 10 nearest neighbours in pixel space
(Euclidean), the relation made symmetric (an edge when either is among the other's k nearest).
Normalised adjacencies, as sparse COO tensors:

    adj       D^-1/2 (A + I) D^-1/2      (Kipf & Welling's GCN, self loops added)
    adj_mean  D^-1 A                     (GraphSAGE's mean aggregator, no self loops)

Split (fixed, seeded, transductive: every node's features are seen, only train labels are):
`per_class` = 20 training nodes per class (Planetoid's convention), 300 validation nodes, the
remaining 1297 are the held-out test nodes. The experiment: `python -m engine bench gcn`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch


@dataclass
class Graph:
    x: torch.Tensor          # (nodes, features) float32
    y: torch.Tensor          # (nodes,) int64
    adj: torch.Tensor        # sparse (nodes, nodes): D^-1/2 (A + I) D^-1/2
    adj_mean: torch.Tensor   # sparse (nodes, nodes): D^-1 A
    train: torch.Tensor      # (nodes,) bool
    val: torch.Tensor
    test: torch.Tensor
    edges: int               # undirected edges of A (self loops not counted)

    @property
    def nodes(self) -> int:
        return self.x.shape[0]

    @property
    def classes(self) -> int:
        return int(self.y.max()) + 1


def knn_adjacency(x: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetric k-nearest-neighbour relation (dense bool, no self loops) over rows of x."""
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be in [1, {x.shape[0] - 1}], got {k}")
    d = torch.cdist(x.double(), x.double())
    d.fill_diagonal_(float("inf"))
    # ties broken by index (stable sort): the graph does not depend on the platform's topk
    nearest = torch.sort(d, dim=1, stable=True).indices[:, :k]
    a = torch.zeros(x.shape[0], x.shape[0], dtype=torch.bool)
    a.scatter_(1, nearest, True)
    return a | a.T


def gcn_norm(a: torch.Tensor) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 of a dense bool adjacency, as a coalesced sparse COO tensor."""
    a = a.float() + torch.eye(a.shape[0])
    dinv = a.sum(1).rsqrt()
    return (dinv[:, None] * a * dinv[None, :]).to_sparse().coalesce()


def mean_norm(a: torch.Tensor) -> torch.Tensor:
    """D^-1 A (row-stochastic) of a dense bool adjacency without isolated nodes, sparse COO."""
    a = a.float()
    deg = a.sum(1, keepdim=True)
    if bool((deg == 0).any()):
        raise ValueError("the mean aggregator needs every node to have a neighbour")
    return (a / deg).to_sparse().coalesce()


def split(y: torch.Tensor, per_class: int, val: int, seed: int) -> tuple:
    """Boolean train / val / test node masks: per_class train nodes of each class, then `val`
    validation nodes, the rest test; all drawn from one seeded permutation."""
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train = torch.zeros(len(y), dtype=torch.bool)
    for c in range(int(y.max()) + 1):
        of_c = perm[y[perm] == c][:per_class]
        train[of_c] = True
    rest = perm[~train[perm]]
    valm = torch.zeros_like(train)
    valm[rest[:val]] = True
    return train, valm, ~(train | valm)


def as_csr(adj: torch.Tensor) -> torch.Tensor:
    """`adj` as a sparse CSR tensor (torch's faster sparse-dense product on CPU: 1.4 ms against
    COO's 2 ms for 1797 nodes x 512 features), without torch's "beta" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return adj.to_sparse_csr()


def digits_graph(k: int = 10, per_class: int = 20, val: int = 300, seed: int = 0) -> Graph:
    """The kNN graph over scikit-learn's digits (see the module doc)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    a = knn_adjacency(x, k)
    train, valm, test = split(y, per_class, val, seed)
    return Graph(x, y, gcn_norm(a), mean_norm(a), train, valm, test, int(a.sum()) // 2)
