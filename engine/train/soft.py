"""Soft Filter Pruning (method "soft", or soft=True; He et al., "Soft Filter Pruning for
Accelerating Deep Convolutional Neural Networks", 2018).

At the end of every epoch the currently least important units are zeroed, but they learn again
during the next one: the masks are recomputed from the weights each time (no "once pruned,
always pruned") and ramp up with the cubic schedule over the pruning epochs; after the last
epoch the model is pruned to the final masks for good.
"""
from __future__ import annotations

from ..accuracy import recalibrate_bn
from .gradual import cubic_sparsity
from .trainer import PruneTrainer


class SoftTrainer(PruneTrainer, method="soft"):
    """Masks applied between epochs, never enforced during one."""

    def _masked(self) -> bool:
        return False

    def _end_epoch(self, batches) -> None:
        e, last = self.epoch + 1, self.epoch + 1 >= self.config.epochs
        self.masks = {}
        # (norm layers of pruned filters are zeroed only at the very end: a zero scale would
        # stop the filter's gradient, and SFP lets filters come back)
        self._prune_to(lambda final: cubic_sparsity(final, e, self._prune_epochs), norms=last)
        if last:
            # the last prune is not followed by training: re-estimate the BatchNorm statistics
            # it shifted (one pass over the training inputs, no gradients)
            recalibrate_bn(self.model, (b[0] if isinstance(b, (tuple, list)) else b
                                        for b in batches))
            self.model.train()
