"""A trainer's checkpoint: written atomically after every epoch, resumed from bit for bit.

It holds the model, the optimizer, the masks, the step counters, the history, the RNG states and
the state of the method (trainer.checkpointed: e.g. ADMM's Z, U and rho). Every checkpoint has
the keys of every method ("prune_step", "hard", "admm", "alpha"; defaults where the method has
none): one layout, whatever the method.
"""
from __future__ import annotations

import os
import random
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import ConfigError

_METHOD_DEFAULTS = {"prune_step": 0, "hard": False, "admm": {}, "alpha": {}}


def _state(trainer, opt) -> dict:
    method = {**_METHOD_DEFAULTS, **{k: getattr(trainer, k) for k in trainer.checkpointed}}
    return {"model": trainer.model.state_dict(), "optimizer": opt.state_dict(),
            "masks": trainer.masks, "epoch": trainer.epoch, "batch": trainer.batch,
            "history": trainer.history, **method, "config": asdict(trainer.config),
            "targets": _target_keys(trainer),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()}}


def _target_keys(trainer) -> dict:
    return {n: c.key for n, c in trainer.targets.items()}


def save_checkpoint(trainer, opt, path) -> None:
    """Write the checkpoint to `path` (a temporary file renamed over it: never half written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(_state(trainer, opt), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(trainer, opt, path) -> None:
    """Restore `trainer` and `opt` from the checkpoint at `path` (made for the same targets)."""
    st = torch.load(path, weights_only=False)
    if st["targets"] != _target_keys(trainer):
        raise ConfigError(f"checkpoint {path} was made for other targets; delete it or "
                          f"pass the same plan")
    trainer.model.load_state_dict(st["model"])
    opt.load_state_dict(st["optimizer"])
    trainer.masks = st["masks"]
    trainer.epoch, trainer.batch = st["epoch"], st["batch"]
    trainer.history = st["history"]
    for k in trainer.checkpointed:
        setattr(trainer, k, st[k])
    torch.set_rng_state(st["rng"]["torch"])
    random.setstate(st["rng"]["python"])
