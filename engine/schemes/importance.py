"""Importance functions: score prunable units so a scheme can keep the highest-scoring ones.

An importance maps a 2-D tensor [n_units, unit_size] (one row per unit: a weight, a block, a
kernel) to a 1-D tensor [n_units] of scores; higher is kept. The default is the L2 group norm.
`score_units` is the one place schemes call an importance: it checks the result's shape and makes
NaN scores lowest, so a broken weight is pruned first rather than ordered arbitrarily.
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
    if isinstance(name_or_callable, str):
        if name_or_callable not in IMPORTANCES:
            raise ConfigError(f"unknown importance {name_or_callable!r}; "
                              f"known importances: {sorted(IMPORTANCES)}")
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


__all__ = ["l1", "l2", "IMPORTANCES", "DEFAULT_IMPORTANCE", "get_importance", "score_units",
           "magnitude_scores"]
