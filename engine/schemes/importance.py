"""Importance functions: score prunable units so a scheme can keep the highest-scoring ones.

An importance maps a 2-D tensor [n_units, unit_size] (one row per unit: a weight, a block, a
kernel) to a 1-D tensor [n_units] of scores; higher is kept. The default is the L2 group norm.
`score_units` is the one place schemes call an importance: it checks the result's shape and makes
NaN scores lowest, so a broken weight is pruned first rather than ordered arbitrarily.

`ChannelScores` is the other kind: scores precomputed per output channel of layers (AutoBot's
trained bottleneck gates, engine/train/autobot.py), which only the group schemes (filter /
channel) take, as their `importance`.
"""
from __future__ import annotations

from typing import Union

import torch

from ..errors import ConfigError, SchemeError
from .base import Importance


def l2(units: torch.Tensor) -> torch.Tensor:
    """L2 norm of each unit (group norm)."""
    return torch.linalg.vector_norm(units, ord=2, dim=1)


def l1(units: torch.Tensor) -> torch.Tensor:
    """L1 norm (sum of magnitudes) of each unit."""
    return units.abs().sum(dim=1)


IMPORTANCES: dict[str, Importance] = {"l2": l2, "l1": l1}
DEFAULT_IMPORTANCE = "l2"


def get_importance(name_or_callable: Union[str, Importance, None] = None) -> Importance:
    """An importance by name ("l2", "l1"), a callable passed through, or the default (L2)."""
    if name_or_callable is None:
        return IMPORTANCES[DEFAULT_IMPORTANCE]
    if isinstance(name_or_callable, ChannelScores):
        raise ConfigError("importance: precomputed channel scores (e.g. AutoBot's) rank whole "
                          "channels; only the filter / channel schemes take them")
    if isinstance(name_or_callable, str):
        if name_or_callable not in IMPORTANCES:
            hint = (" (AutoBot's scores are precomputed: pass importance="
                    "engine.train.autobot(...).scores with scheme 'filter' or 'channel')"
                    if name_or_callable == "autobot" else "")
            raise ConfigError(f"unknown importance {name_or_callable!r}; "
                              f"known importances: {sorted(IMPORTANCES)}{hint}")
        return IMPORTANCES[name_or_callable]
    if callable(name_or_callable):
        return name_or_callable
    raise ConfigError(f"importance must be a name or a callable, got {name_or_callable!r}")


def score_units(units: torch.Tensor, importance: Union[str, Importance, None] = None
                ) -> torch.Tensor:
    """Scores [n_units] (float, NaN -> -inf) of `units` [n_units, unit_size]."""
    fn = get_importance(importance)
    x = units.detach()
    if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    with torch.no_grad():
        scores = fn(x)
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (units.shape[0],):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise SchemeError(f"importance {getattr(fn, '__name__', fn)!r} returned {shape} for units "
                          f"of shape {tuple(units.shape)}; expected ({units.shape[0]},)")
    scores = scores.detach()
    if not scores.is_floating_point():
        scores = scores.float()
    return torch.where(torch.isnan(scores), torch.full_like(scores, float("-inf")), scores)


def magnitude_scores(weight: torch.Tensor, importance: Union[str, Importance, None]
                     ) -> torch.Tensor:
    """Per-weight scores (flat): |w| for the built-in importances, else the importance of each
    weight as a unit of size 1."""
    fn = get_importance(importance)
    if fn is l2 or fn is l1:
        # l2 and l1 of a single weight are both |w|: skip the [n, 1] round trip on big layers.
        fn = _abs_of_single
    return score_units(weight.reshape(-1, 1), fn)


def _abs_of_single(units: torch.Tensor) -> torch.Tensor:
    return units[:, 0].abs()


class ChannelScores(dict):
    """Precomputed scores per output channel: layer name -> 1-D tensor over that layer's output
    channels (rows); higher is kept. The group schemes score a coupled group by the mean of its
    producing layers' scores (coupled layers of one group may all be given, or any one)."""

    def group_scores(self, group) -> torch.Tensor:
        """Scores per channel of `group` (an engine.graph ChannelGroup), float64, NaN lowest."""
        rows = [m for m in group.members
                if m.dim == 0 and m.role in ("producer", "depthwise") and m.module in self]
        if not rows:
            raise SchemeError(f"channel scores: none given for group {group.name!r} (its "
                              f"layers: {sorted({m.module for m in group.members})})")
        total = torch.zeros(group.size, dtype=torch.float64)
        count = torch.zeros(group.size, dtype=torch.float64)
        for m in rows:
            s = self[m.module]
            if not isinstance(s, torch.Tensor) or tuple(s.shape) != (len(m.index),):
                shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise SchemeError(f"channel scores for {m.module!r}: expected a tensor of shape "
                                  f"({len(m.index)},) (its output channels), got {shape}")
            idx = torch.tensor(m.index, dtype=torch.int64)
            ok = idx >= 0
            total.index_add_(0, idx[ok], s.detach().to(torch.float64)[ok])
            count.index_add_(0, idx[ok], torch.ones(int(ok.sum()), dtype=torch.float64))
        if bool((count == 0).any()):
            raise SchemeError(f"channel scores: channels of group {group.name!r} carried by "
                              f"none of the scored layers {[m.module for m in rows]}")
        scores = total / count
        return torch.where(torch.isnan(scores), torch.full_like(scores, float("-inf")), scores)


__all__ = ["l1", "l2", "IMPORTANCES", "DEFAULT_IMPORTANCE", "ChannelScores", "get_importance",
           "score_units", "magnitude_scores"]
