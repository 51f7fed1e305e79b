"""Scheme API: a pruning scheme turns a weight into a keep-mask; applying and packing are separate.

Two families:
- `MaskScheme`: per-layer schemes (unstructured, block, pattern, N:M). `mask()` returns a boolean
  tensor shaped like the weight; the engine multiplies it in (`apply_mask`) and packs it later.
- `GroupScheme`: schemes that remove whole channels over coupled groups (filter, channel) and
  physically shrink the model; see engine/schemes/channel.py.

Schemes register themselves by name with `@register_scheme`; the registry refuses duplicates.
"""
from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Optional

import torch

from ..errors import ConfigError, SchemeError
from ..graph.layers import LayerInfo

# An importance maps a 2-D tensor [n_units, unit_size] of weights (one row per prunable unit)
# to a 1-D tensor [n_units] of scores; higher scores are kept.
Importance = Callable[[torch.Tensor], torch.Tensor]

SCHEMES: dict[str, type] = {}


def register_scheme(cls):
    name = cls.name
    if name in SCHEMES:
        raise RuntimeError(f"scheme {name!r} registered twice ({SCHEMES[name]} and {cls})")
    SCHEMES[name] = cls
    return cls


def check_sparsity(sparsity: float, where: str = "") -> float:
    # a number, not a bool or a numeric string; NaN fails the range test
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or \
            not (0.0 <= float(sparsity) < 1.0):
        raise ConfigError(f"sparsity must be a number in [0, 1), got {sparsity!r}{where}")
    return float(sparsity)


class MaskScheme(ABC):
    """A per-layer scheme: weight -> boolean keep-mask of the same shape."""

    name: ClassVar[str]

    def check(self, layer: LayerInfo) -> Optional[str]:
        """Return None if the scheme applies to `layer`, else the reason it does not."""
        return None

    @abstractmethod
    def mask(self, weight: torch.Tensor, sparsity: float,
             importance: Optional[Importance] = None) -> torch.Tensor:
        """Keep-mask (bool, same shape as `weight`) pruning `sparsity` of the weights."""

    @property
    def block(self) -> tuple:
        """(rows, cols) block the scheme's masks are structured in; (1, 1) if none."""
        return (1, 1)

    def describe(self) -> dict:
        return {"scheme": self.name, "block": list(self.block)}


def apply_mask(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if mask.shape != weight.shape:
        raise SchemeError(f"mask shape {tuple(mask.shape)} != weight shape {tuple(weight.shape)}")
    return weight * mask.to(weight.dtype)
