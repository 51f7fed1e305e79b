"""Data flow between a model's prunable layers: per layer, the layers whose outputs reach it.

    inputs = layer_inputs(model, ["conv1", "layer1.0.conv1", ...])   # name -> (producers)

The model is traced with torch.fx, the listed layers as leaf modules (nothing is run, the model
is not modified). Every other op (BN, activations, pooling, flatten, residual adds, concats,
...) passes on the union of the producers of its inputs, so a residual add gives the layer after
it both branches as producers, a concat every part, a depthwise conv the pointwise conv after
it. engine.measure.model_specs stores the result as LayerSpec.inputs, the layer graph of the
GNN mapper (mapping/search/graph_embed.py). A model torch.fx cannot trace, or one calling a
layer fx does not see as a module call, gives None (the mapper then assumes the sequential
chain).
"""
from __future__ import annotations

from typing import Optional

from torch import fx, nn


class _LayerLeaves(fx.Tracer):
    """Keeps the listed layers as call_module nodes (transformers' Conv1D is not a torch leaf)."""

    def __init__(self, layers: set):
        super().__init__()
        self.layers = layers

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.layers or super().is_leaf_module(m, qualname)


def layer_inputs(model: nn.Module, names: list) -> Optional[dict]:
    """layer name -> tuple of producer layer names in execution order (() when the layer reads
    only model inputs), or None when the data flow cannot be traced."""
    layers = set(names)
    try:
        graph = _LayerLeaves(layers).trace(model)
    except Exception:  # noqa: BLE001  (fx raises many types; no data flow is a valid answer)
        return None
    called = {n.target for n in graph.nodes if n.op == "call_module"}
    if not layers <= called:
        return None
    src: dict = {}                       # fx node -> producer layers of its value
    out: dict = {n: [] for n in names}
    for node in graph.nodes:
        producers = []
        for arg in node.all_input_nodes:
            producers += [p for p in src.get(arg, ()) if p not in producers]
        if node.op == "call_module" and node.target in layers:
            out[node.target] += [p for p in producers if p not in out[node.target]]
            src[node] = (node.target,)
        else:
            src[node] = tuple(producers)
    return {n: tuple(v) for n, v in out.items()}
