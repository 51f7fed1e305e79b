"""Reweighted group lasso (method "lasso"; Candes et al.'s reweighting applied to groups, used
for block pruning in the block-punched line of work).

The loss gets lambda * sum_g alpha_g ||W_g||_2 over the layer's groups (its blocks; a whole
filter for filter targets; single weights for the other schemes), with alpha_g = 1 / (||W_g||
+ eps) re-estimated every epoch, so groups already small are pushed to zero and large ones are
left alone; then hard pruning and masked retraining as for ADMM (regularised.py).
"""
from __future__ import annotations

import torch

from ..schemes.block import block_units, as_oik
from .regularised import RegularisedTrainer


class LassoTrainer(RegularisedTrainer, method="lasso"):
    """self.alpha: layer -> the per-group weights of the penalty."""

    checkpointed = ("hard", "alpha")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha: dict = {}

    def _begin_epoch(self) -> None:
        if not self.hard:
            self._reweight()

    def _penalty(self):
        return None if self.hard else self._lasso_penalty()

    def _harden(self) -> None:
        super()._harden()
        self.alpha = {}

    def _group_shape(self, name: str) -> tuple:
        c = self.targets[name]
        return tuple(c.block) if c.block else (1, 1)

    def _group_norms(self, name: str, w: torch.Tensor) -> torch.Tensor:
        if self.targets[name].scheme == "filter":          # a group is a whole filter
            return torch.sqrt(w.reshape(w.shape[0], -1).pow(2).sum(dim=1) + 1e-12)
        rows, cols = self._group_shape(name)
        units, _ = block_units(as_oik(w), rows, cols)
        return torch.sqrt(units.pow(2).sum(dim=1) + 1e-12)

    def _reweight(self) -> None:
        eps = self.config.lasso_eps
        with torch.no_grad():
            self.alpha = {n: 1.0 / (self._group_norms(n, self._weight(n).detach()) + eps)
                          for n in self.targets}

    def _lasso_penalty(self):
        return self.config.lasso * sum((self.alpha[n] * self._group_norms(n, self._weight(n)))
                                       .sum() for n in self.targets)
