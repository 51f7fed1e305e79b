"""What the regularised methods ("admm", "lasso") share: a phase of config.prune_epochs epochs
in which a penalty moves the weights onto the layers' structured support (masks not enforced,
the structure gap logged per epoch), then hard pruning to that structure and retraining with
the masks fixed ("masked retraining").
"""
from __future__ import annotations

from .trainer import PruneTrainer


class RegularisedTrainer(PruneTrainer):
    """The phase, then hard: a subclass adds the penalty (and its state) to the phase."""

    checkpointed = ("hard",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hard = False       # the masks are fixed (retraining phase)
        self._gap = None        # this epoch's structure gap (during the phase)

    def _resumed(self) -> None:
        if not self.hard and self.epoch >= self._prune_epochs:
            self._harden()                            # prune_epochs=0: one-shot + retraining

    def _masked(self) -> bool:
        return self.hard

    def _end_epoch(self, batches) -> None:
        self._gap = None if self.hard else self.structure_gap()
        if not self.hard and self.epoch + 1 >= self._prune_epochs:
            self._harden()

    def _epoch_stats(self) -> dict:
        return {} if self._gap is None else {"structure_gap": self._gap}

    def _harden(self) -> None:
        """End of the phase: prune hard to the final structure, masks fixed."""
        self.masks = {}
        self._prune_to(lambda final: final)
        self.hard = True
