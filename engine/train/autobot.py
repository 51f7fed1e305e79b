"""AutoBot: which filters to keep under a FLOPs target, learned by trainable bottlenecks in one
epoch or less on part of the data (Castells & Yeom, "Automatic Neural Network Pruning that
Efficiently Preserves the Model Accuracy", 2021, a.k.a. "Towards Optimal Structured CNN Pruning
via Automatic Bottlenecks"). Run it: `python -m engine bench autobot --data digits`.

    res = engine.train.autobot(model, batches, flops_target=0.5)   # batches of (x, y)
    res.scores      # layer -> gate value per output channel (an importance: ChannelScores)
    res.sparsity    # group -> fraction of its channels to remove (per layer, not uniform)
    small, record = res.prune(model, (x,))          # the physically smaller model
    opt = engine.optimize(model, (x,), scheme="filter", sparsity=res.sparsity,
                          importance=res.scores)

The model's weights are frozen; only the gates train (engine/train/bottlenecks.py: one gate
vector per coupled channel group, multiplying its channels after BatchNorm), on
    task loss + flops_weight * L_flops + bool_weight * L_bool,
L_flops the paper's FLOPs-constraint term on r = FLOPs(gates) / FLOPs(dense) and the target t
((r - t) / (1 - t) above the target, 1 - r / t below: zero only on it), L_bool the mean of
|gate - round(gate)| (pushes gates to 0 or 1). Adam on the gates' logits, at most one pass over
the batches given; as in the authors' code, the gates kept are those of the lowest total loss
after 60% of the steps. The architecture follows from the gates: channels whose gate exceeds a
global threshold are kept, the threshold set so the shrunk model's FLOPs are the largest not
above the target (`threshold=None`; or a fixed one, e.g. 0.5); so layers get different ratios.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..progress import Bar
from ..schemes.importance import ChannelScores
from .bottlenecks import Bottlenecks


@dataclass
class AutoBotConfig:
    lr: float = 0.5                     # Adam on the gates' logits (the paper: 0.3 - 0.6)
    flops_weight: float = 7.0           # the paper's beta
    bool_weight: float = 0.5            # the paper's gamma
    steps: Optional[int] = None         # batches to train on (None: each batch given, once)
    init_gate: float = 0.98             # every gate's start value
    best_after: float = 0.6             # keep the lowest-loss gates after this share of steps
    threshold: Optional[float] = None   # None: fit the FLOPs target; a number: gates above it
    progress: bool = False

    def validate(self) -> None:
        for name in ("lr", "flops_weight", "bool_weight"):
            _number(name, getattr(self, name), 0.0, math.inf, lo_open=name == "lr")
        _number("best_after", self.best_after, 0.0, 1.0)
        if self.threshold is not None:
            _number("threshold", self.threshold, 0.0, 1.0, lo_open=True)
        if self.steps is not None and (isinstance(self.steps, bool) or
                                       not isinstance(self.steps, int) or self.steps < 1):
            raise ConfigError(f"steps must be an int >= 1 or None, got {self.steps!r}")


@dataclass
class AutoBotResult:
    gates: dict                  # group name -> gate values kept (lowest loss) [group size]
    scores: ChannelScores        # producing layer -> its gate per output channel
    sparsity: dict               # group name -> fraction of channels removed
    kept: dict                   # group name -> channel indices kept
    flops: dict                  # target, dense MACs, soft / at-0.5 / chosen ratios
    history: list = field(default_factory=list)   # per step: loss terms, FLOPs ratio

    @property
    def keep_ratios(self) -> dict:
        return {g: 1.0 - s for g, s in self.sparsity.items()}

    def prune(self, model: nn.Module, example_inputs: tuple, scheme: str = "filter"):
        """(physically smaller copy of `model`, record): every group cut to its AutoBot
        ratio, the lowest-gated channels removed (engine.schemes GroupScheme.prune)."""
        from ..schemes import get_scheme
        return get_scheme(scheme).prune(model, example_inputs, self.sparsity, self.scores)


def autobot(model: nn.Module, batches: Iterable, loss_fn: Optional[Callable] = None,
            flops_target: float = 0.5, config: Optional[AutoBotConfig] = None,
            example_inputs: Optional[tuple] = None, exclude=()) -> AutoBotResult:
    """Train AutoBot's bottlenecks on `batches` ((x, y) pairs) and derive which channels to
    keep so the model's FLOPs (conv / linear MACs) are at most `flops_target` (in (0, 1]) of
    the dense model's. `model` is not modified. example_inputs: for the channel graph and the
    layers' shapes (default: the first batch's first sample). exclude: module names whose
    channel groups stay whole (as in the filter scheme)."""
    cfg = config or AutoBotConfig()
    cfg.validate()
    target = _number("flops_target", flops_target, 0.0, 1.0, lo_open=True)
    batches = _batches(batches, cfg.steps)
    example = example_inputs if example_inputs is not None else (batches[0][0][:1],)
    loss_fn = loss_fn or nn.functional.cross_entropy
    net = Bottlenecks(model, example, exclude, cfg.init_gate)
    try:
        floor = float(net.macs(_floor(net))) / net.dense_macs
        if target < floor:
            raise ConfigError(f"flops_target {target} is below what keeping one channel per "
                              f"gated group costs ({floor:.4f} of the dense FLOPs)")
        gates, history = _train(net, batches, loss_fn, target, cfg)
    finally:
        net.remove()
    return _result(net, gates, history, target, cfg.threshold)


def pruning_loss(ratio: torch.Tensor, target: float) -> torch.Tensor:
    """The paper's FLOPs-constraint term: 0 at the target, 1 at the dense model or no FLOPs."""
    if ratio > target and target < 1.0:
        return (ratio - target) / (1.0 - target)
    return 1.0 - ratio / target


def _train(net: Bottlenecks, batches: list, loss_fn: Callable, target: float,
           cfg: AutoBotConfig) -> tuple[list, list]:
    opt = torch.optim.Adam(net.beta, lr=cfg.lr)
    best, best_loss, history = None, math.inf, []
    bar = Bar("[autobot]", len(batches), cfg.progress, unit="steps")
    for i, (x, y) in enumerate(batches):
        gates = net.gates()
        task = loss_fn(net.model(x), y)
        ratio = net.macs(gates) / net.dense_macs
        flops_l = pruning_loss(ratio, target)
        bool_l = sum((g - g.round()).abs().mean() for g in gates) / len(gates)
        loss = task + cfg.flops_weight * flops_l + cfg.bool_weight * bool_l
        rec = {"step": i, "loss": loss.item(), "task": task.item(), "flops": ratio.item(),
               "bool": bool_l.item()}
        history.append(rec)
        if i >= cfg.best_after * (len(batches) - 1) and rec["loss"] < best_loss:
            best, best_loss = [g.detach().clone() for g in gates], rec["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.step(f"loss {rec['loss']:.3f} flops {rec['flops']:.3f}")
    bar.close()
    if best is None:              # the loss was never finite: the last gates
        best = [g.detach().clone() for g in net.gates()]
    return best, history


def _result(net: Bottlenecks, gates: list, history: list, target: float,
            threshold: Optional[float]) -> AutoBotResult:
    at_half = _hard(net, gates, 0.5)
    keep = at_half if threshold == 0.5 else (
        _hard(net, gates, threshold) if threshold is not None else _fit(net, gates, target))
    scores = ChannelScores()
    for g, s in zip(net.groups, gates):
        for m in g.members:
            if m.dim == 0 and m.role in ("producer", "depthwise"):
                scores[m.module] = torch.tensor([float(s[c]) if c >= 0 else math.inf
                                                 for c in m.index])
    ratio = {name: float(net.macs(k)) / net.dense_macs
             for name, k in (("at_0.5", at_half), ("chosen", keep))}
    flops = {"target": target, "dense_macs": net.dense_macs,
             "soft": float(net.macs(gates)) / net.dense_macs, **ratio}
    return AutoBotResult(
        gates={g.name: s for g, s in zip(net.groups, gates)}, scores=scores,
        sparsity={g.name: 1.0 - float(k.sum()) / g.size for g, k in zip(net.groups, keep)},
        kept={g.name: torch.nonzero(k).flatten().tolist() for g, k in zip(net.groups, keep)},
        flops=flops, history=history)


def _hard(net: Bottlenecks, gates: list, threshold: float) -> list:
    """{0, 1} gates: kept where above `threshold`, and in every member of a group at least its
    highest-gated channel (the filter scheme never empties a layer)."""
    out = []
    for g, s in zip(net.groups, gates):
        k = (s > threshold).to(s.dtype)
        for m in g.members:
            owned = torch.tensor(sorted({c for c in m.index if c >= 0}), dtype=torch.int64)
            if len(owned) and not bool(k[owned].any()):
                k[owned[torch.argmax(s[owned])]] = 1.0
        out.append(k)
    return out


def _floor(net: Bottlenecks) -> list:
    """The fewest channels the filter scheme keeps: one per member of every gated group."""
    return _hard(net, [torch.zeros(g.size) for g in net.groups], 1.0)


def _fit(net: Bottlenecks, gates: list, target: float) -> list:
    """The lowest global threshold whose kept channels cost at most `target` of the dense
    FLOPs (binary search over the gate values: fewer channels above a higher threshold)."""
    values = torch.unique(torch.cat([g.detach() for g in gates]))
    lo, hi = -1, len(values) - 1       # threshold values[i] (i = -1: keep every channel)
    if float(net.macs(_hard(net, gates, -1.0))) <= target * net.dense_macs:
        return _hard(net, gates, -1.0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if float(net.macs(_hard(net, gates, float(values[mid])))) <= target * net.dense_macs:
            hi = mid
        else:
            lo = mid
    return _hard(net, gates, float(values[hi]))


def _batches(batches: Iterable, steps: Optional[int]) -> list:
    if batches is None:
        raise ConfigError("autobot needs batches of (x, y)")
    out = list(batches)[:steps] if steps is not None else list(batches)
    if not out:
        raise ConfigError("autobot: no batches to train the bottlenecks on")
    for i, b in enumerate(out):
        if not (isinstance(b, (tuple, list)) and len(b) == 2 and isinstance(b[0], torch.Tensor)
                and len(b[0]) > 0):
            raise ConfigError(f"autobot: batch {i} is not a non-empty (x, y) pair of tensors")
    return out


def _number(name: str, v, lo: float, hi: float, lo_open: bool = False) -> float:
    ok = (not isinstance(v, bool) and isinstance(v, numbers.Real) and
          (lo < v if lo_open else lo <= v) and v <= hi)
    if not ok:
        raise ConfigError(f"{name} must be a number in {'(' if lo_open else '['}{lo}, {hi}], "
                          f"got {v!r}")
    return float(v)


__all__ = ["AutoBotConfig", "AutoBotResult", "autobot", "pruning_loss"]
