"""The "Rethinking the Value of Network Pruning" baseline (Liu et al., 2019): a pruned
architecture (the same masks) trained from a fresh random initialisation."""
from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
from torch import nn

from mapping import Candidate

from .config import TrainConfig
from .gradual import GradualTrainer


def train_from_scratch(model: nn.Module, masks: dict, batches, loss_fn: Callable,
                       config: Optional[TrainConfig] = None, init_seed: int = 0) -> nn.Module:
    """`model` re-initialised (seed `init_seed`) and trained with `masks` (layer -> bool mask)
    enforced throughout; config's method, checkpoint and pruning schedule are ignored."""
    fresh = copy.deepcopy(model)
    torch.manual_seed(init_seed)
    for m in fresh.modules():
        if m is not fresh and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    targets = {n: Candidate("block", (1, 1), max(1e-6, min(0.999, float((~mk).float().mean()))))
               for n, mk in masks.items()}
    cfg = copy.deepcopy(config or TrainConfig())
    cfg.soft, cfg.method, cfg.checkpoint, cfg.prune_epochs = False, "gradual", None, 0
    t = GradualTrainer(fresh, targets, cfg)
    t.masks = {n: mk.clone() for n, mk in masks.items()}
    t.prune_step = 10 ** 9          # no pruning steps: the masks are given
    t.apply_masks()
    t.fit(batches, loss_fn)
    return t.model
