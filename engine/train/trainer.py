"""The pruning-aware trainer: one training loop, shared by every pruning method.

    t = PruneTrainer(model, targets, TrainConfig(method="admm", epochs=10))
    t.fit(batches, loss_fn)          # returns the trained model; the masks hold exactly

PruneTrainer(...) returns the trainer of config.kind, a subclass registered with `method=`:
gradual.GradualTrainer (Zhu & Gupta's schedule, masks enforced throughout), soft.SoftTrainer
(Soft Filter Pruning), admm.AdmmTrainer and lasso.LassoTrainer (a regularised phase, then hard
pruning and masked retraining; regularised.py). This module holds what they share: the loop over
epochs and batches (learning-rate schedule, distillation, gradients of pruned weights zeroed
before the optimizer step and the weights re-masked after it, so momentum or weight decay cannot
revive them), the per-epoch record, the progress bar and the checkpoints. A method fills in the
hooks of the loop: _schedule, _resumed, _begin_epoch, _before_batch, _masked, _penalty,
_end_epoch, _epoch_stats.

Checkpoints (config.checkpoint, checkpoint.py) hold the model, optimizer, masks, step counters
and RNG states, written atomically after every epoch; fit() on a trainer whose checkpoint exists
resumes from it, and a resumed run gives the same weights as an uninterrupted one.
"""
from __future__ import annotations

import copy
import math
import random
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..graph.layers import get_module, is_transposed_linear
from ..progress import Bar as _Progress
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .filters import link_norms
from .masks import TargetMasks


class PruneTrainer(TargetMasks):
    """Structured pruning + masked fine-tuning of (a copy of) `model`."""

    _methods: dict = {}         # config.kind -> trainer class
    checkpointed: tuple = ()    # the attributes a method adds to a checkpoint

    def __init_subclass__(cls, method: Optional[str] = None, **kw):
        super().__init_subclass__(**kw)
        if method is not None:
            if method in PruneTrainer._methods:
                raise TypeError(f"two trainers for method {method!r}")
            PruneTrainer._methods[method] = cls

    def __new__(cls, model=None, targets=None, config: Optional[TrainConfig] = None,
                teacher=None):
        if cls is PruneTrainer:       # an unknown method stays here: validate() says so
            cls = PruneTrainer._methods.get((config or TrainConfig()).kind, cls)
        return super().__new__(cls)

    def __init__(self, model: nn.Module, targets: dict, config: Optional[TrainConfig] = None,
                 teacher: Optional[nn.Module] = None):
        self.config = config or TrainConfig()
        self.config.validate()
        if self.config.distill_alpha > 0 and teacher is None:
            raise ConfigError("distill_alpha > 0 needs a teacher model (e.g. the dense one)")
        self.teacher = None if teacher is None else copy.deepcopy(teacher).eval()
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():     # optimize() hands over a frozen copy
            p.requires_grad_(True)
        self.targets = dict(targets)
        for name in self.targets:
            _check_target(self.model, name)
        self.masks: dict = {}
        self.epoch = 0
        self.batch = 0          # batches seen over the whole run
        self.history: list = []
        self._norm_links: dict = {}   # filter target -> [(norm module, producer row -> index)]
        self.notes: list = []

    def fit(self, batches: Iterable, loss_fn: Callable, val: Optional[Callable] = None,
            max_epochs: Optional[int] = None):
        """Train for config.epochs over `batches` (a re-iterable of (x, y); shuffle inside it
        if you want). val: optional callable model -> float logged per epoch. Resumes from
        config.checkpoint when it exists. max_epochs: stop after this many epochs in this call
        (the schedule is still config.epochs'; a later fit() resumes). Returns self.model."""
        batches = list(batches) if not hasattr(batches, "__len__") else batches
        if len(batches) == 0:
            raise ConfigError("no training batches")
        opt = self._start(batches)
        cfg = self.config
        stop = cfg.epochs if max_epochs is None else min(cfg.epochs, self.epoch + max_epochs)
        while self.epoch < stop:
            self._run_epoch(batches, loss_fn, val, opt)
        self.model.eval()
        return self.model

    def _optimizer(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.config.lr, momentum=0.9,
                                   weight_decay=self.config.weight_decay)
        return torch.optim.Adam(params, lr=self.config.lr,
                                weight_decay=self.config.weight_decay)

    # -- the loop ------------------------------------------------------------------------------
    def _start(self, batches):
        """Before this call's first epoch: the schedule's shape, the norm layers of filter
        targets, the seeds, the optimizer and the state (from the checkpoint when it exists)."""
        cfg = self.config
        self._schedule(len(batches))
        if any(c.scheme == "filter" for c in self.targets.values()):
            first = next(iter(batches))
            x = first[0] if isinstance(first, (tuple, list)) else first
            self._norm_links = link_norms(self.model, self.targets, x, self.notes)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        opt = self._optimizer()
        if cfg.checkpoint and Path(cfg.checkpoint).exists():
            load_checkpoint(self, opt, cfg.checkpoint)
        elif not self.masks:
            self._prune_to(lambda final: 0.0)        # all-ones masks: nothing pruned yet
        self._resumed()
        self.model.train()
        return opt

    def _run_epoch(self, batches, loss_fn: Callable, val: Optional[Callable], opt) -> None:
        cfg = self.config
        bar = _Progress(f"[train {cfg.kind}] epoch {self.epoch + 1}/{cfg.epochs}", len(batches),
                        cfg.progress, stream=sys.stderr)
        self._begin_epoch()
        total = 0.0
        for x, y in batches:
            total += self._train_step(opt, x, y, loss_fn)
            bar.step(f"loss {total / (bar.done + 1):.4f}")
        self._end_epoch(batches)
        self.epoch += 1
        rec = self._record(total / len(batches), val)
        self.history.append(rec)
        bar.close(_summary(rec))
        if cfg.checkpoint:
            save_checkpoint(self, opt, cfg.checkpoint)

    def _train_step(self, opt, x, y, loss_fn: Callable) -> float:
        """One optimizer step on batch (x, y); returns the task loss (without penalties)."""
        cfg = self.config
        self._before_batch()
        masked = self._masked()
        if cfg.lr_schedule == "cosine":      # a function of the batch count: resumable
            lr = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * self.batch /
                                                (cfg.epochs * self._per_epoch)))
            for group in opt.param_groups:
                group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        out = self.model(x)
        loss = loss_fn(out, y)
        if self.teacher is not None and cfg.distill_alpha > 0:
            loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * \
                _distill(out, self.teacher, x, cfg.distill_temperature)
        task_loss = float(loss.detach())
        penalty = self._penalty()
        if penalty is not None:
            loss = loss + penalty
        loss.backward()
        if masked:
            self._mask_grads()
        opt.step()
        if masked:
            self.apply_masks()
        self.batch += 1
        return task_loss

    def _record(self, loss: float, val: Optional[Callable]) -> dict:
        rec = {"epoch": self.epoch, "loss": loss, "sparsity": _mean(self.sparsity())}
        rec.update(self._epoch_stats())
        if val is not None:
            self.model.eval()
            rec["val"] = float(val(self.model))
            self.model.train()
        return rec

    # -- hooks of a method (defaults: masks enforced, nothing else) ----------------------------
    def _schedule(self, per_epoch: int) -> None:
        """The run's shape, from the batches per epoch (fit() may be given other batches)."""
        cfg = self.config
        self._per_epoch = per_epoch
        self._prune_epochs = cfg.prune_epochs if cfg.prune_epochs is not None else \
            max(1, (2 * cfg.epochs) // 3)

    def _resumed(self) -> None:
        """After the state is set up or loaded, before the first epoch of this call."""

    def _begin_epoch(self) -> None:
        """Before the first batch of an epoch."""

    def _before_batch(self) -> None:
        """Before each batch (self.batch: batches seen so far)."""

    def _masked(self) -> bool:
        """Whether the masks are enforced in this batch's step."""
        return True

    def _penalty(self) -> Optional[torch.Tensor]:
        """A term added to the loss (not to the logged task loss), or None."""
        return None

    def _end_epoch(self, batches) -> None:
        """After the last batch of an epoch (self.epoch not yet advanced)."""

    def _epoch_stats(self) -> dict:
        """What the method adds to the epoch's record."""
        return {}


def _check_target(model: nn.Module, name: str) -> None:
    try:
        mod = get_module(model, name)
    except AttributeError:
        raise ConfigError(f"train target {name!r} is not a module of the model") from None
    if not isinstance(mod, (nn.Conv2d, nn.Conv1d, nn.Linear)) and not is_transposed_linear(mod):
        raise ConfigError(f"train target {name!r} is a {type(mod).__name__}, not a "
                          f"conv / linear")


def _distill(student_logits, teacher: nn.Module, x, temperature: float):
    """Hinton et al.'s distillation term: T^2 KL(softmax(teacher / T) || softmax(student / T))."""
    with torch.no_grad():
        t = teacher(x)
    log_p = torch.log_softmax(student_logits / temperature, dim=-1)
    q = torch.softmax(t / temperature, dim=-1)
    return torch.nn.functional.kl_div(log_p, q, reduction="batchmean") * temperature ** 2


def _summary(rec: dict) -> str:
    return (f"loss {rec['loss']:.4f} sparsity {rec['sparsity']:.3f}"
            + (f" gap {rec['structure_gap']:.4f}" if "structure_gap" in rec else "")
            + (f" val {rec['val']:.4f}" if "val" in rec else ""))


def _mean(d: dict) -> float:
    return sum(d.values()) / max(1, len(d))
