"""ADMM-based structured pruning (method "admm"; Zhang et al., "A Systematic DNN Weight Pruning
Framework using Alternating Direction Method of Multipliers", 2018; the method of the
block-punched and PatDNN line of work).

Pruning is the constraint W in S (S: weights whose zero set has the layer's structure at its
sparsity); ADMM splits it into W (trained by SGD on loss(W) + sum rho/2 ||W - Z + U||^2),
Z = Proj_S(W + U) (the layer's own mask scheme applied to W + U: exact Euclidean projection for
magnitude-l2 block and unstructured masks) and the scaled dual U += W - Z, with rho growing
geometrically. Over the ADMM epochs the weights move onto a structured-sparse support while the
loss is trained; then they are pruned hard to that support and retrained with the masks fixed
(regularised.py).
"""
from __future__ import annotations

import torch

from .regularised import RegularisedTrainer


class AdmmTrainer(RegularisedTrainer, method="admm"):
    """self.admm: {"Z": {layer: tensor}, "U": {...}, "rho": float, "updates": int}."""

    checkpointed = ("hard", "admm")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.admm: dict = {}

    def _schedule(self, per_epoch: int) -> None:
        super()._schedule(per_epoch)
        cfg = self.config
        self._admm_every = cfg.admm_every or max(1, per_epoch // 4)
        self._growth = cfg.rho_growth or (cfg.rho_max / cfg.rho) ** (
            1.0 / max(1, self._prune_epochs * per_epoch // self._admm_every - 1))

    def _begin_epoch(self) -> None:
        if not self.hard and not self.admm:
            self._admm_init()

    def _before_batch(self) -> None:
        if not self.hard and self.batch > 0 and self.batch % self._admm_every == 0:
            self._admm_update(self._growth)

    def _penalty(self):
        return None if self.hard else self._admm_penalty()

    def _epoch_stats(self) -> dict:
        rho = {"rho": self.admm["rho"]} if self.admm else {}
        return {**super()._epoch_stats(), **rho}

    def _harden(self) -> None:
        super()._harden()
        self.admm = {}

    def _project(self, name: str, v: torch.Tensor) -> torch.Tensor:
        """Proj_S(v): v with the layer's structured mask at its final sparsity applied."""
        return v * self._mask_for(name, self.targets[name].sparsity, v).to(v.dtype)

    def _admm_init(self) -> None:
        with torch.no_grad():
            z = {n: self._project(n, self._weight(n).detach().clone()) for n in self.targets}
            u = {n: torch.zeros_like(self._weight(n)) for n in self.targets}
        self.admm = {"Z": z, "U": u, "rho": float(self.config.rho), "updates": 0}

    def _admm_update(self, growth: float) -> None:
        """Z = Proj_S(W + U); U += W - Z; rho grows."""
        with torch.no_grad():
            for n in self.targets:
                w = self._weight(n).detach()
                z = self._project(n, w + self.admm["U"][n])
                self.admm["U"][n] += w - z
                self.admm["Z"][n] = z
        cfg = self.config
        rho = min(cfg.rho_max, self.admm["rho"] * growth)
        # U is the scaled dual (lambda / rho): keep lambda when rho changes
        for n in self.targets:
            self.admm["U"][n] *= self.admm["rho"] / rho
        self.admm["rho"] = rho
        self.admm["updates"] += 1

    def _admm_penalty(self):
        rho = self.admm["rho"]
        return sum(0.5 * rho * (self._weight(n) - self.admm["Z"][n] + self.admm["U"][n])
                   .pow(2).sum() for n in self.targets)
