"""AutoBot's bottlenecks: one trainable gate vector per coupled channel group, on a deep copy of
the model, and the model's FLOPs as a differentiable function of the gates (Castells & Yeom,
"Automatic Neural Network Pruning that Efficiently Preserves the Model Accuracy", 2021;
engine/train/autobot.py trains them: `python -m engine bench autobot --data digits`).

Gates. Every prunable channel group of engine.graph.dependency (coupled channels: a residual add
joins them, a depthwise conv carries them) gets one parameter vector beta [group.size]; its gate
values are s = sigmoid(beta) in (0, 1). Forward hooks on the copy multiply each output carrying
the group's channels after normalisation (every BatchNorm of the group; a producing conv /
linear that no BatchNorm follows directly) by s / s0, s0 = sigmoid(beta_0) the initial gate: at
the start the gated copy computes exactly what the model does, and a channel whose gate is 0
contributes what it would once removed (nothing: BN's shift is gated too). Coupled producers
share the one vector, so a residual group opens and closes as one.

FLOPs (multiply-accumulates of every nn.Conv2d / nn.Conv1d / nn.Linear the example runs):
a layer costs out * in_per_group * prod(kernel) * positions, where `out` and `in` are its
channel counts minus the sum of (1 - gate) over the gated channels it carries (a linear after a
flatten carries each channel H*W times), so a conv between two gated groups costs
(sum of gates in) * (sum of gates out) * kh * kw * H * W, as in the paper. With gates in {0, 1}
this is the MAC count of the physically shrunk model.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigError
from ..graph.dependency import ChannelGroup, build_groups, evaluating
from ..graph.inputs import run_hooked

COUNTED = (nn.Conv2d, nn.Conv1d, nn.Linear)


@dataclass(frozen=True)
class Part:
    """Where one gated group's channels sit along one dim: positions -> group channels."""

    group: int                   # index into Bottlenecks.groups
    pos: torch.Tensor            # positions along the dim carrying the group's channels
    chan: torch.Tensor           # the group channel at each of those positions


@dataclass
class LayerCost:
    """One counted layer: MACs = out * in * per (out / in reduced by the gates on their dims)."""

    name: str
    n_out: int
    n_in: int                    # per conv group (weight.shape[1])
    per: float                   # prod(kernel) * output positions
    out_parts: list
    in_parts: list


class Bottlenecks:
    """The gated copy of `model` (`.model`, weights frozen) and its FLOPs model."""

    def __init__(self, model: nn.Module, example_inputs: tuple, exclude=(),
                 init_gate: float = 0.98):
        if not 0.5 < init_gate < 1.0:
            raise ConfigError(f"init_gate must be in (0.5, 1), got {init_gate!r}")
        groups = build_groups(model, example_inputs)
        names = dict(model.named_modules())
        for ex in exclude:
            if ex not in names:
                raise ConfigError(f"exclude: {ex!r} is not a module of {type(model).__name__}")
        self.groups = [g for g in groups if g.prunable and not _touches(g, tuple(exclude))]
        if not self.groups:
            why = "; ".join(f"{g.name}: {', '.join(g.reasons) or 'excluded'}" for g in groups)
            raise ConfigError(f"{type(model).__name__} has no prunable channel group to gate "
                              f"({why or 'no conv / linear layers'})")
        self.beta0 = float(torch.logit(torch.tensor(init_gate, dtype=torch.float64)))
        self.s0 = torch.sigmoid(torch.tensor(self.beta0)).item()
        self.beta = [torch.full((g.size,), self.beta0, requires_grad=True) for g in self.groups]
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.costs = _layer_costs(self.model, example_inputs, self.groups)
        self.dense_macs = float(sum(c.n_out * c.n_in * c.per for c in self.costs))
        if self.dense_macs <= 0:
            raise ConfigError(f"{type(model).__name__}: no conv / linear computes anything on "
                              f"the example inputs")
        self.points = _gate_points(self.model, self.groups)
        self._handles = [self.model.get_submodule(name).register_forward_hook(
            self._hook(name, cdim)) for name, (cdim, _) in self.points.items()]

    def gates(self) -> list[torch.Tensor]:
        """The gate values s = sigmoid(beta), one tensor per gated group."""
        return [torch.sigmoid(b) for b in self.beta]

    def macs(self, gates: list[torch.Tensor]) -> torch.Tensor:
        """MACs of the model with these gate values (differentiable; {0, 1} gates: the MACs of
        the model with the zero-gated channels removed)."""
        total = torch.zeros((), dtype=gates[0].dtype)
        for c in self.costs:
            total = total + _kept(c.n_out, c.out_parts, gates) * \
                _kept(c.n_in, c.in_parts, gates) * c.per
        return total

    def _hook(self, name: str, cdim: int):
        def hook(module, inputs, out):
            factor = torch.ones(out.shape[cdim], dtype=out.dtype)
            for p in self.points[name][1]:
                g = torch.sigmoid(self.beta[p.group]).to(out.dtype) / self.s0
                factor = factor.index_put((p.pos,), factor[p.pos] * g[p.chan])
            shape = [1] * out.dim()
            shape[cdim] = -1
            return out * factor.reshape(shape)
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _touches(group: ChannelGroup, exclude: tuple) -> bool:
    return any(m.module == ex or m.module.startswith(ex + ".")
               for m in group.members for ex in exclude)


def _part(gi: int, member) -> Part:
    idx = torch.tensor(member.index, dtype=torch.int64)
    pos = torch.nonzero(idx >= 0).flatten()
    return Part(gi, pos, idx[pos])


def _parts(groups: list[ChannelGroup], module: str, dim: int, roles) -> list[Part]:
    return [_part(gi, m) for gi, g in enumerate(groups) for m in g.members
            if m.module == module and m.dim == dim and m.role in roles]


def _kept(n: int, parts: list[Part], gates: list[torch.Tensor]) -> torch.Tensor:
    """n minus the sum of (1 - gate) over the gated positions of a dim."""
    lost = [(1 - gates[p.group][p.chan]).sum() for p in parts]
    return n - sum(lost) if lost else torch.tensor(float(n))


def _layer_costs(model: nn.Module, example_inputs: tuple, groups) -> list[LayerCost]:
    """Every counted layer the example runs, with its output positions (batch 1 counted)."""
    seen: dict[str, float] = {}

    def record(name):
        def hook(module, inputs, out):
            cdim = out.dim() - 1 if isinstance(module, nn.Linear) else 1
            batch = out.shape[0] if out.dim() > 1 else 1
            seen[name] = seen.get(name, 0.0) + out.numel() / (batch * out.shape[cdim])
        return hook
    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules()
               if isinstance(m, COUNTED)]
    with evaluating(model), torch.no_grad():
        run_hooked(model, example_inputs, handles)
    costs = []
    for name, positions in seen.items():
        w = model.get_submodule(name).weight
        kernel = float(torch.tensor(w.shape[2:]).prod()) if w.dim() > 2 else 1.0
        costs.append(LayerCost(name, w.shape[0], w.shape[1], kernel * positions,
                               _parts(groups, name, 0, ("producer", "depthwise")),
                               _parts(groups, name, 1, ("consumer",))))
    return costs


def _gate_points(model: nn.Module, groups) -> dict:
    """module -> (channel dim of its output, [Part]): every BatchNorm of a gated group, and
    every producing layer of one whose output no BatchNorm takes directly."""
    normed = _fed_to_norm(model)
    points: dict = {}
    for gi, g in enumerate(groups):
        for m in g.members:
            if m.dim != 0 or m.role not in ("norm", "producer", "depthwise"):
                continue
            if m.role != "norm" and m.module in normed:
                continue
            cdim = -1 if isinstance(model.get_submodule(m.module), nn.Linear) else 1
            points.setdefault(m.module, (cdim, []))[1].append(_part(gi, m))
    return points


def _fed_to_norm(model: nn.Module) -> set:
    """Modules whose output is used only by BatchNorm modules (traced graph)."""
    gm = fx.symbolic_trace(model)
    mods = dict(gm.named_modules())
    out = set()
    for node in gm.graph.nodes:
        if node.op != "call_module" or not node.users:
            continue
        if all(u.op == "call_module" and isinstance(mods.get(u.target), _BatchNorm)
               for u in node.users):
            out.add(node.target)
    return out


__all__ = ["COUNTED", "Bottlenecks", "LayerCost", "Part"]
