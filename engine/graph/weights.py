"""Every weight layer of a model, not only the ones the engine prunes: a module holding a weight
matrix or kernel (a parameter of two or more dimensions: embeddings, recurrent layers,
attention projections, transposed convs, ...) that the layer list (engine.graph.layers) does not
carry is listed here with its kind, weight shapes, parameter count and the reason it stays
dense, so a plan names every weight a user has and the model's sparsity is counted over all of
them (engine.pipeline.result.OptimizedModel.sparsity).

Norm scales and biases (one dimension) are not weight layers. A parameter shared by several
modules (tied embeddings) is counted once, at the first module holding it."""
from __future__ import annotations

from torch import nn

from .transposed import unsupported

# (torch class, reason) in order: the first isinstance match names the reason
_REASONS: tuple = (
    (nn.Embedding, "embedding: a table lookup, left dense"),
    (nn.EmbeddingBag, "embedding: a table lookup, left dense"),
    # recurrent layers are decomposed into prunable linears (engine.graph.recurrent); one
    # listed here was kept whole, and the caller's `reasons` say why
    (nn.RNNBase, "recurrent layer kept whole (not decomposed into prunable linears); runs in "
                 "torch, dense"),
    (nn.MultiheadAttention, "MultiheadAttention: its input projection runs inside torch's "
                            "attention (no sparse path yet); left dense"),
    (nn.ConvTranspose2d, "ConvTranspose2d: not decomposed into phase convs (not called on the "
                         "example inputs, or a filter / channel scheme); runs in torch, dense"),
    (nn.ConvTranspose1d, "ConvTranspose1d: no transposed-conv kernel yet; runs in torch, dense"),
    (nn.ConvTranspose3d, "ConvTranspose3d: no transposed-conv kernel yet; runs in torch, dense"),
    (nn.Conv3d, "Conv3d: no 3-D conv kernel yet; runs in torch, dense"),
)


def weight_params(mod: nn.Module) -> list:
    """(name, parameter) of `mod`'s own weight matrices / kernels (two or more dimensions)."""
    return [(n, p) for n, p in mod.named_parameters(recurse=False)
            if p is not None and p.dim() >= 2]


def _reason(name: str, mod: nn.Module, parent: dict, model: nn.Module, reasons: dict) -> str:
    if name in reasons:
        return reasons[name]
    owner = parent.get(name)
    if owner is not None and isinstance(model.get_submodule(owner), nn.MultiheadAttention):
        return ("MultiheadAttention's output projection: torch's attention reads its weight "
                "directly (the module is never called); left dense")
    if isinstance(mod, nn.ConvTranspose2d) and unsupported(mod) is not None:
        return unsupported(mod)
    for cls, why in _REASONS:
        if isinstance(mod, cls):
            return why
    if isinstance(mod, (nn.Conv2d, nn.Linear)):
        return (f"{type(mod).__name__} not called as a module on the example inputs (unused, "
                f"or its weight is read by other code); left dense")
    return f"{type(mod).__name__}: the engine has no pruning path for this layer type; left dense"


def other_weight_layers(model: nn.Module, listed: list, reasons: dict = None) -> list:
    """A dict per weight layer of `model` that is not in `listed` (the engine's LayerInfo list),
    the reason from `reasons` (module name -> why) where it has one:
    {"layer", "kind", "weight_shape" (the first weight's shape), "weights" ({param name:
    shape}), "params" (weight elements not counted before: shared ones count once), "reason"}.
    A parameter shared with a listed layer says so and counts 0."""
    names = {l.name for l in listed}
    mods = dict(model.named_modules())
    owner: dict = {}                         # id(param) -> the module counted for it
    for n in names:
        for _, p in weight_params(mods[n]):
            owner.setdefault(id(p), n)
    parent = {f"{n}.{c}": n for n, m in mods.items() for c, _ in m.named_children()}
    parent = {k[1:] if k.startswith(".") else k: v for k, v in parent.items()}
    out = []
    for name, mod in mods.items():
        params = weight_params(mod)
        if name in names or not params:
            continue
        shared = [owner[id(p)] for _, p in params if id(p) in owner]
        count = sum(p.numel() for _, p in params if id(p) not in owner)
        for _, p in params:
            owner.setdefault(id(p), name)
        reason = _reason(name, mod, parent, model, reasons or {})
        if shared:
            reason += f" (weight shared with {shared[0]!r}, counted there)"
        out.append({"layer": name, "kind": type(mod).__name__,
                    "weight_shape": list(params[0][1].shape),
                    "weights": {n: list(p.shape) for n, p in params},
                    "params": int(count), "reason": reason})
    return out


def shared_weight(model: nn.Module, name: str) -> str:
    """The other module holding layer `name`'s weight (tied weights), or ''."""
    w = getattr(model.get_submodule(name), "weight", None)
    if w is None:
        return ""
    for other, mod in model.named_modules():
        if other != name and any(p is w for _, p in weight_params(mod)):
            return other
    return ""
