"""Structure-LTH (method "lth"): iterative magnitude pruning (IMP) with weight rewinding, then
each layer's IMP mask regrouped onto its block shape and retrained from the rewind point (Chen
et al., "Coarsening the Granularity: Towards Structurally Sparse Lottery Tickets", ICML 2022;
IMP with rewinding: Frankle et al., "Linear Mode Connectivity and the Lottery Ticket
Hypothesis", 2020).

    python -m engine bench recovery --data mnist5k --methods gradual,lth --sparsities 0.8

The schedule over config.epochs (E), with R = imp_rounds, P = prune_epochs (None: 2/3 of E),
k = rewind_epoch: the first P epochs are R + 1 phases of P / (R + 1) epochs (rounded down at
each phase's end), then the final retraining takes the other E - P epochs.

  phase 0        dense training. The model's whole state (weights, biases, BatchNorm) after
                 epoch k is the rewind point (k = 0: the model the trainer was given).
  end of phase r (r = 0..R-1) IMP round r + 1 (the end of the dense phase is round 1's): prune unstructured to s_r = 1 - (1 - s)^(r / R) of each
                 target (s its final sparsity: p = 1 - (1 - s)^(1 / R) of the remaining weights
                 go each round), lowest |w| among the weights still kept, per layer (or over all
                 targets at once: imp_global); rewind the model to the rewind point with the new
                 masks, reset the optimizer's state, retrain the next phase.
  epoch P        (after round R's retraining) regroup each layer's IMP mask onto its target
                 (engine/schemes/regroup.py): block or regroup (rows, cols) -> the blocks
                 holding the most kept |w| (regroup: with its granularity); filter -> refill
                 of the output channels holding the most; unstructured -> the IMP mask itself
                 (the top kept |w|). Rewind, reset, and retrain the last E - P epochs with
                 those masks fixed: block masks at the block scheme's exact count, so the block
                 kernels run the result.

An epoch that ends a phase is recorded after its rewind (its "val": the freshly pruned, rewound
model).

With lr_schedule="cosine" each phase runs its own cosine from config.lr to 0 (an IMP round is a
training run of its own): the shared loop then runs at a constant rate (self.config is a copy
with lr_schedule "constant") and this trainer sets the rate per batch. Masks are enforced in
every step (trainer.py), so pruned weights stay exactly zero; a round's mask only loses entries.

Not here: the paper regroups after every round (the next round starts from the block mask);
this trainer regroups once, after the last round, as a post-processing step of IMP.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from ..errors import ConfigError
from ..schemes.block import as_oik
from ..schemes.regroup import RegroupScheme
from ..schemes.selection import prune_lowest, target_count
from .config import TrainConfig
from .trainer import PruneTrainer

SCHEMES = ("block", "regroup", "unstructured", "filter")   # what IMP masks are regrouped onto


def phase_ends(cfg: TrainConfig) -> list:
    """Epoch counts at which IMP phases 0..R end (the last one: prune_epochs), validated."""
    r, e = cfg.imp_rounds, cfg.epochs
    p = cfg.prune_epochs if cfg.prune_epochs is not None else max(1, (2 * e) // 3)
    if p < r + 1:
        raise ConfigError(f"lth: prune_epochs ({p}) must give each of the imp_rounds + 1 = "
                          f"{r + 1} IMP phases (dense, then one per round) at least one epoch")
    if p >= e:
        raise ConfigError(f"lth: prune_epochs ({p}) must be < epochs ({e}): the regrouped "
                          f"masks are retrained in the epochs after it")
    ends = [(i + 1) * p // (r + 1) for i in range(r + 1)]
    if cfg.rewind_epoch > ends[0]:
        raise ConfigError(f"lth: rewind_epoch ({cfg.rewind_epoch}) must be within the dense "
                          f"phase (its {ends[0]} epochs = prune_epochs {p} // (imp_rounds "
                          f"{r} + 1))")
    return ends


def round_sparsity(final: float, r: int, rounds: int) -> float:
    """Sparsity after IMP round r of `rounds` (the same fraction of the rest pruned each)."""
    return 1.0 - (1.0 - final) ** (min(r, rounds) / rounds)


class LthTrainer(PruneTrainer, method="lth"):
    """self.rewind: the model state to rewind to; self.imp_round: IMP rounds done (R + 1 once
    the masks are regrouped)."""

    checkpointed = ("rewind", "imp_round")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ends = phase_ends(self.config)
        self._cosine = self.config.lr_schedule == "cosine"
        self.config = dataclasses.replace(self.config, lr_schedule="constant")
        for name, cand in self.targets.items():
            self._regrouper(name, cand)            # an unsupported target fails here
        self.rewind = None
        self.imp_round = 0
        self._opt = None

    def _regrouper(self, name: str, cand) -> RegroupScheme:
        if cand.scheme not in SCHEMES:
            raise ConfigError(f"lth: train target {name!r} has scheme {cand.scheme!r}; the IMP "
                              f"mask is regrouped onto one of {SCHEMES}")
        if cand.scheme in ("filter", "unstructured"):   # refill whole channels / single weights
            gran = "channel" if cand.scheme == "filter" else "block"
            return RegroupScheme(block=(1, 1), granularity=gran)
        opts = dict(cand.options) if cand.scheme == "regroup" else {}
        sch = RegroupScheme(block=cand.block, **opts)
        o, i, _ = as_oik(self._weight(name).detach()).shape
        if sch.rows > o or sch.cols > i:
            raise ConfigError(f"lth: block {tuple(cand.block)} of train target {name!r} does "
                              f"not fit its weight ({o} outputs, {i} inputs)")
        return sch

    def _optimizer(self):
        self._opt = super()._optimizer()
        return self._opt

    def _resumed(self) -> None:
        if self.rewind is None and self.config.rewind_epoch == 0 and self.epoch == 0:
            self.rewind = _snapshot(self.model)

    def _before_batch(self) -> None:
        if not self._cosine:
            return
        bounds = [0, *self._ends, self.config.epochs]
        phase = next(i for i in range(len(bounds) - 1) if self.epoch < bounds[i + 1])
        start, end = bounds[phase] * self._per_epoch, bounds[phase + 1] * self._per_epoch
        lr = self.config.lr * 0.5 * (1.0 + math.cos(math.pi * (self.batch - start) /
                                                    (end - start)))
        for group in self._opt.param_groups:
            group["lr"] = lr

    def _end_epoch(self, batches) -> None:
        done = self.epoch + 1
        if done == self.config.rewind_epoch:
            self.rewind = _snapshot(self.model)
        if done not in self._ends:
            return
        r = self._ends.index(done) + 1
        if r <= self.config.imp_rounds:
            self._imp_prune(r)
        else:
            self._regroup()
        self.imp_round = r
        self._rewind()

    def _epoch_stats(self) -> dict:
        return {"imp_round": self.imp_round}

    def _imp_prune(self, r: int) -> None:
        """Round r: unstructured masks at round_sparsity(r), within the current masks."""
        cfg = self.config
        with torch.no_grad():
            scores = {n: torch.where(self.masks[n], self._weight(n).detach().abs().float(),
                                     torch.tensor(float("-inf"))).reshape(-1)
                      for n in self.targets}
        counts = {n: target_count(round_sparsity(c.sparsity, r, cfg.imp_rounds),
                                  scores[n].numel()) for n, c in self.targets.items()}
        if cfg.imp_global:
            names = list(scores)
            flat = prune_lowest(torch.cat([scores[n] for n in names]), sum(counts.values()))
            pruned = dict(zip(names, flat.split([scores[n].numel() for n in names])))
        else:
            pruned = {n: prune_lowest(scores[n], counts[n]) for n in scores}
        for n in self.targets:
            self.masks[n] = self.masks[n] & ~pruned[n].reshape(self.masks[n].shape)

    def _regroup(self) -> None:
        """The IMP masks onto the targets' structures, at their final sparsities."""
        for n, cand in self.targets.items():
            self.masks[n] = self._regrouper(n, cand).regroup(self._weight(n).detach(),
                                                             self.masks[n], cand.sparsity)

    def _rewind(self) -> None:
        """The model back to the rewind point under the current masks; optimizer state reset."""
        with torch.no_grad():
            self.model.load_state_dict(self.rewind)
        self.apply_masks()
        if self._opt is not None:
            self._opt.state.clear()


def _snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


__all__ = ["LthTrainer", "phase_ends", "round_sparsity"]
