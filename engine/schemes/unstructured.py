"""Unstructured magnitude pruning: any single weight may go (the baseline; rarely faster).

Exactly round(sparsity * numel) weights are pruned: those with the lowest score, |w| by default
(the L2 and L1 norms of a single weight). Ties are broken by flat index in the weight (lower index
pruned first), the same order `BlockScheme(block=(1, 1))` uses, so the two give identical masks.
"""
from __future__ import annotations

from typing import Optional

import torch

from .base import Importance, MaskScheme, check_sparsity, register_scheme
from .importance import magnitude_scores
from .options import reject_unknown
from .selection import prune_lowest, target_count


@register_scheme
class UnstructuredScheme(MaskScheme):
    """Magnitude pruning of individual weights to an exact per-layer count."""

    name = "unstructured"

    def __init__(self, **unknown) -> None:
        reject_unknown(self.name, unknown, ())

    def mask(self, weight: torch.Tensor, sparsity: float,
             importance: Optional[Importance] = None) -> torch.Tensor:
        s = check_sparsity(sparsity, f" for weight of shape {tuple(weight.shape)}")
        scores = magnitude_scores(weight, importance)
        pruned = prune_lowest(scores, target_count(s, weight.numel()))
        return (~pruned).reshape(weight.shape)
