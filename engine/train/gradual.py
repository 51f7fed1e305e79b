"""Gradual magnitude pruning with masked fine-tuning (method "gradual", the default).

The schedule is Zhu & Gupta's ("To prune, or not to prune", 2017), the standard gradual one:
at pruning step t of T the target sparsity of a layer with final sparsity s_f is

    s_t = s_f * (1 - (1 - t / T) ** 3)

so most weights go early, while the network is still far from converged, and the last steps
are small. At each pruning step every layer's mask is recomputed from its current weights with
the layer's OWN scheme (block rows x cols, pattern, N:M, unstructured) and importance, so the
structure the kernels need holds throughout; between pruning steps training continues with the
masks enforced (trainer.py).
"""
from __future__ import annotations

from .trainer import PruneTrainer


def cubic_sparsity(final: float, step: int, steps: int) -> float:
    """Zhu & Gupta's schedule: the sparsity to reach at pruning step `step` of `steps`."""
    if steps <= 0 or step >= steps:
        return final
    return final * (1.0 - (1.0 - step / steps) ** 3)


class GradualTrainer(PruneTrainer, method="gradual"):
    """T pruning steps over config.prune_epochs, one every config.prune_every batches."""

    checkpointed = ("prune_step",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prune_step = 0

    def _schedule(self, per_epoch: int) -> None:
        super()._schedule(per_epoch)
        self._steps = max(1, self._prune_epochs * per_epoch // self.config.prune_every)

    def _before_batch(self) -> None:
        if self.prune_step < self._steps and self.batch % self.config.prune_every == 0:
            self.prune_step += 1
            k, steps = self.prune_step, self._steps
            self._prune_to(lambda final: cubic_sparsity(final, k, steps))
            # Adam's moments of weights just pruned would push them back: the masks are
            # re-applied after every step, so they cannot revive

    def _end_epoch(self, batches) -> None:
        if self.prune_step >= self._steps:
            self._prune_to(lambda final: final)   # exactly the final sparsity
