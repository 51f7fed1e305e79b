"""Gradual magnitude pruning with masked fine-tuning, structured per layer, resumable.

The schedule is Zhu & Gupta's ("To prune, or not to prune", 2017), the standard gradual one:
at pruning step t of T the target sparsity of a layer with final sparsity s_f is

    s_t = s_f * (1 - (1 - t / T) ** 3)

so most weights go early, while the network is still far from converged, and the last steps
are small. At each pruning step every layer's mask is recomputed from its current weights with
the layer's OWN scheme (block rows x cols, pattern, N:M, unstructured) and importance, so the
structure the kernels need holds throughout; between pruning steps training continues with the
masks enforced: gradients of pruned weights are zeroed before the optimizer step and the
weights are re-masked after it (momentum or weight decay cannot revive them).

Three other methods (config.method) share the masks, checkpoints and retraining:

- "admm": ADMM-based structured pruning (Zhang et al., "A Systematic DNN Weight Pruning Framework
  using Alternating Direction Method of Multipliers", 2018; the method of the block-punched and
  PatDNN line of work). Pruning is the constraint W in S (S: weights whose zero set has the
  layer's structure at its sparsity); ADMM splits it into W (trained by SGD on
  loss(W) + sum rho/2 ||W - Z + U||^2), Z = Proj_S(W + U) (the layer's own mask scheme applied
  to W + U: exact Euclidean projection for magnitude-l2 block and unstructured masks) and the
  scaled dual U += W - Z, with rho growing geometrically. Over the ADMM epochs the weights move
  onto a structured-sparse support while the loss is trained; then they are pruned hard to that
  support and retrained with the masks fixed ("masked retraining").
- "lasso": reweighted group lasso (Candes et al.'s reweighting applied to groups; used for block
  pruning in the same line of work): loss + lambda * sum_g alpha_g ||W_g||_2 over the layer's
  blocks (single weights for non-block schemes), alpha_g = 1 / (||W_g|| + eps) re-estimated
  every epoch so groups already small are pushed to zero and large ones are left alone; then
  hard pruning and masked retraining as for ADMM.
- "soft" (or soft=True): Soft Filter Pruning, see fit().

Checkpoints (config.checkpoint) hold the model, optimizer, masks, step counters and RNG states,
written atomically after every epoch; fit() on a trainer whose checkpoint exists resumes from
it, and a resumed run gives the same weights as an uninterrupted one.
"""
from __future__ import annotations

import copy
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..graph.layers import get_module
from ..schemes import apply_mask, get_scheme
from ..schemes.block import _to_units, as_oik

METHODS = ("gradual", "soft", "admm", "lasso")


@dataclass
class TrainConfig:
    epochs: int = 10
    method: str = "gradual"             # "gradual", "soft" (SFP), "admm" or "lasso"
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"             # "adam" or "sgd" (momentum 0.9)
    lr_schedule: str = "constant"       # "constant" or "cosine" (per batch, to 0 at the end)
    prune_epochs: Optional[int] = None  # epochs over which sparsity ramps up, or of the ADMM /
                                        # lasso phase before hard pruning (None: 2/3)
    prune_every: int = 1                # pruning steps happen every this many batches
    importance: str = "l2"
    checkpoint: Optional[str] = None    # path; resumed from when it exists
    seed: int = 0
    progress: bool = False
    soft: bool = False                  # SFP-style: pruned weights keep learning until the end
    distill_alpha: float = 0.0          # weight of the distillation term (needs a teacher)
    distill_temperature: float = 4.0
    rho: float = 1e-2                   # ADMM: initial penalty
    rho_max: float = 10.0               # ADMM: final penalty
    rho_growth: Optional[float] = None  # ADMM: rho *= this at every Z/U update (None: the
                                        # factor that reaches rho_max at the phase's end)
    admm_every: Optional[int] = None    # ADMM: batches between Z/U updates (None: 4 per epoch)
    lasso: float = 1e-4                 # group lasso: lambda
    lasso_eps: float = 1e-3             # group lasso: reweighting epsilon

    @property
    def kind(self) -> str:
        """The effective method ("soft" when soft=True)."""
        return "soft" if self.soft else self.method

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}; got "
                              f"{self.method!r}")
        if self.soft and self.method not in ("gradual", "soft"):
            raise ConfigError(f"soft=True is SFP; it cannot be combined with method "
                              f"{self.method!r}")
        for name in ("rho", "rho_max", "lasso", "lasso_eps"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"{name} must be > 0, got {v!r}")
        if self.rho_max < self.rho:
            raise ConfigError(f"rho_max ({self.rho_max}) must be >= rho ({self.rho})")
        if self.rho_growth is not None and not self.rho_growth >= 1.0:
            raise ConfigError(f"rho_growth must be >= 1, got {self.rho_growth}")
        if self.admm_every is not None and self.admm_every < 1:
            raise ConfigError(f"admm_every must be >= 1 batch, got {self.admm_every}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', got "
                              f"{self.lr_schedule!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.prune_epochs is not None and not 0 <= self.prune_epochs <= self.epochs:
            raise ConfigError(f"prune_epochs must be in [0, epochs], got {self.prune_epochs}")
        if self.prune_every < 1:
            raise ConfigError(f"prune_every must be >= 1, got {self.prune_every}")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ConfigError(f"distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if self.distill_temperature <= 0:
            raise ConfigError(f"distill_temperature must be > 0, got "
                              f"{self.distill_temperature}")


@dataclass(frozen=True)
class Target:
    """What one layer is trained towards: like mapping.Candidate (which also works as a
    target), plus scheme "filter": whole output filters, the SFP unit."""
    scheme: str
    block: Optional[tuple] = None
    sparsity: float = 0.0
    options: tuple = ()

    def __post_init__(self):
        if self.scheme not in ("filter", "block", "unstructured", "pattern", "nm"):
            raise ConfigError(f"train target scheme must be filter, block, unstructured, "
                              f"pattern or nm; got {self.scheme!r}")
        if not 0.0 < self.sparsity < 1.0:
            raise ConfigError(f"train target sparsity must be in (0, 1), got {self.sparsity}")

    @property
    def key(self) -> str:
        head = f"block{self.block[0]}x{self.block[1]}" if self.scheme == "block" else self.scheme
        return f"{head}@{self.sparsity:.2f}" + (f"{dict(self.options)}" if self.options else "")


def cubic_sparsity(final: float, step: int, steps: int) -> float:
    """Zhu & Gupta's schedule: the sparsity to reach at pruning step `step` of `steps`."""
    if steps <= 0 or step >= steps:
        return final
    return final * (1.0 - (1.0 - step / steps) ** 3)


def targets_from_plan(plan) -> dict:
    """layer -> mapping.Candidate for every pruned Choice of a Plan."""
    from mapping import Candidate
    out = {}
    for c in plan:
        if c.pruned:
            out[c.layer] = Candidate(c.scheme, tuple(c.block) if c.block else None, c.sparsity,
                                     c.backend if c.backend in ("native", "tir") else "native",
                                     tuple(sorted(c.options.items())))
    return out


def uniform_targets(model: nn.Module, scheme: str = "block", block=(4, 1),
                    sparsity: float = 0.8, skip_first: bool = True,
                    skip_last: bool = True) -> dict:
    """One scheme for every conv / linear, as layer -> mapping.Candidate. Depthwise convs are
    excluded, and by default the first layer (few weights, the input's only path) and the last
    one (the classifier: a block of output rows there is a block of classes, and a class whose
    rows are all pruned can never be predicted)."""
    from mapping import Candidate
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
             and not (isinstance(m, nn.Conv2d) and m.groups > 1)]
    if skip_first and names:
        names = names[1:]
    if skip_last and names:
        names = names[:-1]
    if scheme == "filter":
        return {n: Target("filter", None, sparsity) for n in names}
    return {n: Candidate(scheme, tuple(block) if scheme == "block" else None, sparsity)
            for n in names}


class PruneTrainer:
    """Gradual structured pruning + masked fine-tuning of (a copy of) `model`."""

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
            try:
                mod = get_module(self.model, name)
            except AttributeError:
                raise ConfigError(f"train target {name!r} is not a module of the model") from None
            if not isinstance(mod, (nn.Conv2d, nn.Linear)):
                raise ConfigError(f"train target {name!r} is a {type(mod).__name__}, not a "
                                  f"conv / linear")
        self.masks: dict = {}
        self.epoch = 0
        self.batch = 0          # batches seen over the whole run
        self.prune_step = 0
        self.history: list = []
        self.hard = False       # admm / lasso: the masks are fixed (retraining phase)
        self.admm: dict = {}    # admm: {"Z": {name: tensor}, "U": {...}, "rho": float}
        self.alpha: dict = {}   # lasso: name -> per-group weights
        self._norm_links: dict = {}   # filter target -> [(norm module, producer row -> index)]
        self.notes: list = []

    # -- masks ---------------------------------------------------------------------------------
    def _mask_for(self, name: str, sparsity: float,
                  weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        cand = self.targets[name]
        w = get_module(self.model, name).weight.detach() if weight is None else weight
        if sparsity <= 0.0:
            return torch.ones_like(w, dtype=torch.bool)
        if cand.scheme == "filter":
            return _filter_mask(w, sparsity, self.config.importance)
        kw = dict(cand.options)
        if cand.scheme == "block":
            kw["block"] = cand.block
        sch = get_scheme(cand.scheme, **kw)
        if cand.scheme == "pattern":
            sparsity = max(sparsity, getattr(sch, "min_sparsity", 0.0))
        return sch.mask(w, None if cand.scheme == "nm" else sparsity, self.config.importance)

    def _prune_to(self, fraction_of_final: Callable[[float], float],
                  norms: bool = True) -> None:
        for name, cand in self.targets.items():
            s = fraction_of_final(cand.sparsity)
            # a pruned weight stays pruned: a mask only ever loses entries
            m = self._mask_for(name, s)
            if name in self.masks:
                m = m & self.masks[name]
            self.masks[name] = m
        self.apply_masks(norms)

    def apply_masks(self, norms: bool = True) -> None:
        """Zero the pruned weights; for filter targets also the pruned filters' biases and,
        with `norms`, the scale and shift of the norm layers that carry their channels (so a
        pruned filter's channel is exactly zero and removing it changes nothing)."""
        with torch.no_grad():
            for name, m in self.masks.items():
                mod = get_module(self.model, name)
                mod.weight.copy_(apply_mask(mod.weight, m))
                for p in self._filter_params(name, norms):
                    p.mul_(self._row_keep(name, p))

    def _mask_grads(self) -> None:
        for name, m in self.masks.items():
            g = get_module(self.model, name).weight.grad
            if g is not None:
                g.mul_(m.to(g.dtype))
            for p in self._filter_params(name, True):
                if p.grad is not None:
                    p.grad.mul_(self._row_keep(name, p))

    # -- filters (SFP): whole output channels, and what carries them ---------------------------
    def _filter_params(self, name: str, norms: bool) -> list:
        if name not in self.targets or self.targets[name].scheme != "filter":
            return []
        mod = get_module(self.model, name)
        out = [mod.bias] if getattr(mod, "bias", None) is not None else []
        if norms:
            for nname, _ in self._norm_links.get(name, ()):
                nm = get_module(self.model, nname)
                out += [p for p in (nm.weight, nm.bias) if p is not None]
        return out

    def _row_keep(self, name: str, p: torch.Tensor) -> torch.Tensor:
        """Per-channel keep flags (as p's dtype) of filter target `name`, indexed like `p`."""
        rows = self.masks[name].reshape(self.masks[name].shape[0], -1).any(dim=1)
        for nname, index in self._norm_links.get(name, ()):
            nm = get_module(self.model, nname)
            if p is nm.weight or p is nm.bias:
                keep = torch.ones(p.shape[0], dtype=p.dtype)
                hit = index >= 0
                keep[index[hit]] = rows[hit].to(p.dtype)
                return keep
        return rows.to(p.dtype)          # the layer's own bias

    def _link_norms(self, x) -> None:
        """For each filter target, the norm layers (BatchNorm) that normalise its output
        channels, found on the traced graph (engine.graph.dependency)."""
        self._norm_links = {}
        names = [n for n, c in self.targets.items() if c.scheme == "filter"]
        if not names:
            return
        from ..graph.dependency import build_groups
        try:
            groups = build_groups(self.model, (x[:1],))
        except Exception as e:       # not traceable: filters are zeroed, norms left alone
            self.notes.append(f"filter targets: norm layers not linked ({e})")
            return
        for g in groups:
            producers = [m for m in g.members if m.role == "producer" and m.dim == 0]
            for prod in producers:
                if prod.module not in names:
                    continue
                if len(producers) > 1:
                    # coupled with other producers (e.g. a residual add): the norms of the
                    # group normalise channels other filters feed too; leave them alone
                    self.notes.append(f"{prod.module}: output channels coupled with "
                                      f"{len(producers) - 1} other layer(s); norm layers "
                                      f"not zeroed with its filters")
                    continue
                for m in g.members:
                    if m.role != "norm":
                        continue
                    where = {c: k for k, c in enumerate(m.index) if c >= 0}
                    index = torch.tensor([where.get(c, -1) if c >= 0 else -1
                                          for c in prod.index], dtype=torch.int64)
                    self._norm_links.setdefault(prod.module, []).append((m.module, index))

    def _weight(self, name: str) -> torch.Tensor:
        return get_module(self.model, name).weight

    # -- ADMM ----------------------------------------------------------------------------------
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

    # -- reweighted group lasso ----------------------------------------------------------------
    def _group_shape(self, name: str) -> tuple:
        c = self.targets[name]
        return tuple(c.block) if c.scheme == "block" and c.block else (1, 1)

    def _group_norms(self, name: str, w: torch.Tensor) -> torch.Tensor:
        if self.targets[name].scheme == "filter":          # a group is a whole filter
            return torch.sqrt(w.reshape(w.shape[0], -1).pow(2).sum(dim=1) + 1e-12)
        rows, cols = self._group_shape(name)
        units, _ = _to_units(as_oik(w), rows, cols)
        return torch.sqrt(units.pow(2).sum(dim=1) + 1e-12)

    def _reweight(self) -> None:
        eps = self.config.lasso_eps
        with torch.no_grad():
            self.alpha = {n: 1.0 / (self._group_norms(n, self._weight(n).detach()) + eps)
                          for n in self.targets}

    def _lasso_penalty(self):
        return self.config.lasso * sum((self.alpha[n] * self._group_norms(n, self._weight(n)))
                                       .sum() for n in self.targets)

    def structure_gap(self) -> float:
        """Fraction of the targets' weight energy outside the structured mask each layer would
        get now at its final sparsity (0: the weights already have the structure)."""
        out = tot = 0.0
        with torch.no_grad():
            for n, c in self.targets.items():
                w = self._weight(n).detach()
                m = self._mask_for(n, c.sparsity, w)
                out += float(w[~m].pow(2).sum())
                tot += float(w.pow(2).sum())
        return out / tot if tot > 0 else 0.0

    def _harden(self) -> None:
        """End of the ADMM / lasso phase: prune hard to the final structure, masks fixed."""
        self.masks = {}
        self._prune_to(lambda final: final)
        self.hard = True
        self.admm, self.alpha = {}, {}

    def sparsity(self) -> dict:
        """layer -> fraction of its weights that are zero now."""
        return {n: float((get_module(self.model, n).weight == 0).float().mean())
                for n in self.targets}

    # -- training ------------------------------------------------------------------------------
    def _optimizer(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.config.lr, momentum=0.9,
                                   weight_decay=self.config.weight_decay)
        return torch.optim.Adam(params, lr=self.config.lr,
                                weight_decay=self.config.weight_decay)

    def fit(self, batches: Iterable, loss_fn: Callable, val: Optional[Callable] = None,
            max_epochs: Optional[int] = None):
        """Train for config.epochs over `batches` (a re-iterable of (x, y); shuffle inside it
        if you want). val: optional callable model -> float logged per epoch. Resumes from
        config.checkpoint when it exists. max_epochs: stop after this many epochs in this call
        (the schedule is still config.epochs'; a later fit() resumes). Returns self.model."""
        cfg = self.config
        kind = cfg.kind
        batches = list(batches) if not hasattr(batches, "__len__") else batches
        per_epoch = len(batches)
        if per_epoch == 0:
            raise ConfigError("no training batches")
        prune_epochs = cfg.prune_epochs if cfg.prune_epochs is not None else \
            max(1, (2 * cfg.epochs) // 3)
        steps = max(1, prune_epochs * per_epoch // cfg.prune_every)
        admm_every = cfg.admm_every or max(1, per_epoch // 4)
        growth = cfg.rho_growth or (cfg.rho_max / cfg.rho) ** (
            1.0 / max(1, prune_epochs * per_epoch // admm_every - 1))
        regularised = kind in ("admm", "lasso")
        if any(c.scheme == "filter" for c in self.targets.values()):
            first = next(iter(batches))
            self._link_norms(first[0] if isinstance(first, (tuple, list)) else first)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        opt = self._optimizer()
        if cfg.checkpoint and Path(cfg.checkpoint).exists():
            self._load(cfg.checkpoint, opt)
        elif not self.masks:
            self._prune_to(lambda final: 0.0)        # all-ones masks: nothing pruned yet
        if regularised and not self.hard and self.epoch >= prune_epochs:
            self._harden()                            # prune_epochs=0: one-shot + retraining
        self.model.train()
        stop = cfg.epochs if max_epochs is None else min(cfg.epochs, self.epoch + max_epochs)
        while self.epoch < stop:
            total = 0.0
            bar = _Progress(f"[train {kind}] epoch {self.epoch + 1}/{cfg.epochs}", per_epoch,
                            cfg.progress)
            if kind == "lasso" and not self.hard:
                self._reweight()
            if kind == "admm" and not self.hard and not self.admm:
                self._admm_init()
            for x, y in batches:
                if kind == "gradual" and self.prune_step < steps and \
                        self.batch % cfg.prune_every == 0:
                    self.prune_step += 1
                    k = self.prune_step
                    self._prune_to(lambda final: cubic_sparsity(final, k, steps))
                    # Adam's moments of weights just pruned would push them back: the masks
                    # are re-applied after every step, so they cannot revive
                if kind == "admm" and not self.hard and self.batch > 0 and \
                        self.batch % admm_every == 0:
                    self._admm_update(growth)
                masked = kind == "gradual" or self.hard
                if cfg.lr_schedule == "cosine":      # a function of the batch count: resumable
                    lr = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * self.batch /
                                                        (cfg.epochs * per_epoch)))
                    for group in opt.param_groups:
                        group["lr"] = lr
                opt.zero_grad(set_to_none=True)
                out = self.model(x)
                loss = loss_fn(out, y)
                if self.teacher is not None and cfg.distill_alpha > 0:
                    loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * \
                        _distill(out, self.teacher, x, cfg.distill_temperature)
                task_loss = float(loss.detach())
                if kind == "admm" and not self.hard:
                    loss = loss + self._admm_penalty()
                elif kind == "lasso" and not self.hard:
                    loss = loss + self._lasso_penalty()
                loss.backward()
                if masked:
                    self._mask_grads()
                opt.step()
                if masked:
                    self.apply_masks()
                total += task_loss
                self.batch += 1
                bar.step(f"loss {total / (bar.done + 1):.4f}")
            gap = self.structure_gap() if regularised and not self.hard else None
            if kind == "soft":
                # SFP (He et al. 2018): at the end of every epoch zero the currently least
                # important units but let them learn again during the next one; masks are
                # recomputed from the weights each time (no "once pruned, always pruned") and
                # ramp up with the schedule over the pruning epochs; after the last epoch the
                # model is pruned to the final masks for good
                e = self.epoch + 1
                self.masks = {}
                # (norm layers of pruned filters are zeroed only at the very end: a zero
                # scale would stop the filter's gradient, and SFP lets filters come back)
                self._prune_to(lambda final: cubic_sparsity(final, e, prune_epochs),
                               norms=e >= cfg.epochs)
                if e >= cfg.epochs:
                    # the last prune is not followed by training: re-estimate the BatchNorm
                    # statistics it shifted (one pass over the training inputs, no gradients)
                    from ..accuracy import recalibrate_bn
                    recalibrate_bn(self.model, (b[0] if isinstance(b, (tuple, list)) else b
                                                for b in batches))
                    self.model.train()
            elif kind == "gradual" and self.prune_step >= steps:
                self._prune_to(lambda final: final)   # exactly the final sparsity
            elif regularised and not self.hard and self.epoch + 1 >= prune_epochs:
                self._harden()
            self.epoch += 1
            rec = {"epoch": self.epoch, "loss": total / per_epoch,
                   "sparsity": _mean(self.sparsity())}
            if gap is not None:
                rec["structure_gap"] = gap
            if kind == "admm" and self.admm:
                rec["rho"] = self.admm["rho"]
            if val is not None:
                self.model.eval()
                rec["val"] = float(val(self.model))
                self.model.train()
            self.history.append(rec)
            bar.close(f"loss {rec['loss']:.4f} sparsity {rec['sparsity']:.3f}"
                      + (f" gap {gap:.4f}" if gap is not None else "")
                      + (f" val {rec['val']:.4f}" if "val" in rec else ""))
            if cfg.checkpoint:
                self._save(cfg.checkpoint, opt)
        self.model.eval()
        return self.model

    # -- checkpoints ---------------------------------------------------------------------------
    def _state(self, opt) -> dict:
        return {"model": self.model.state_dict(), "optimizer": opt.state_dict(),
                "masks": self.masks, "epoch": self.epoch, "batch": self.batch,
                "prune_step": self.prune_step, "history": self.history,
                "hard": self.hard, "admm": self.admm, "alpha": self.alpha,
                "config": asdict(self.config),
                "targets": {n: c.key for n, c in self.targets.items()},
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate()}}

    def _save(self, path, opt) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            torch.save(self._state(opt), tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self, path, opt) -> None:
        st = torch.load(path, weights_only=False)
        want = {n: c.key for n, c in self.targets.items()}
        if st["targets"] != want:
            raise ConfigError(f"checkpoint {path} was made for other targets; delete it or "
                              f"pass the same plan")
        self.model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        self.masks = st["masks"]
        self.epoch, self.batch, self.prune_step = st["epoch"], st["batch"], st["prune_step"]
        self.history = st["history"]
        self.hard, self.admm, self.alpha = st["hard"], st["admm"], st["alpha"]
        torch.set_rng_state(st["rng"]["torch"])
        random.setstate(st["rng"]["python"])


def _filter_mask(w: torch.Tensor, sparsity: float, importance) -> torch.Tensor:
    """Whole output filters (rows) of `w`: the round(sparsity * rows) lowest-scoring ones are
    pruned (at least one row kept)."""
    from ..schemes.importance import score_units
    rows = w.shape[0]
    scores = score_units(w.reshape(rows, -1), importance)
    n_prune = min(rows - 1, int(round(sparsity * rows)))
    keep = torch.ones(rows, dtype=torch.bool)
    keep[torch.sort(scores, stable=True).indices[:n_prune]] = False
    return keep.reshape(-1, *([1] * (w.dim() - 1))).expand_as(w).clone()


def _distill(student_logits, teacher: nn.Module, x, temperature: float):
    """Hinton et al.'s distillation term: T^2 KL(softmax(teacher / T) || softmax(student / T))."""
    with torch.no_grad():
        t = teacher(x)
    log_p = torch.log_softmax(student_logits / temperature, dim=-1)
    q = torch.softmax(t / temperature, dim=-1)
    return torch.nn.functional.kl_div(log_p, q, reduction="batchmean") * temperature ** 2


def train_from_scratch(model: nn.Module, masks: dict, batches, loss_fn: Callable,
                       config: Optional[TrainConfig] = None, init_seed: int = 0) -> nn.Module:
    """The "Rethinking the Value of Network Pruning" baseline: the pruned architecture (the
    same masks) trained from a fresh random initialisation, masks enforced throughout."""
    fresh = copy.deepcopy(model)
    torch.manual_seed(init_seed)
    for m in fresh.modules():
        if m is not fresh and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    from mapping import Candidate
    targets = {n: Candidate("block", (1, 1), max(1e-6, min(0.999, float((~mk).float().mean()))))
               for n, mk in masks.items()}
    cfg = copy.deepcopy(config or TrainConfig())
    cfg.soft, cfg.method, cfg.checkpoint, cfg.prune_epochs = False, "gradual", None, 0
    t = PruneTrainer(fresh, targets, cfg)
    t.masks = {n: mk.clone() for n, mk in masks.items()}
    t.prune_step = 10 ** 9          # no pruning steps: the masks are given
    t.apply_masks()
    t.fit(batches, loss_fn)
    return t.model


class _Progress:
    """A one-line progress bar on stderr: redrawn in place on a terminal (at most 10 times a
    second), a single line per epoch otherwise (logs stay readable)."""

    def __init__(self, prefix: str, total: int, enabled: bool):
        self.prefix, self.total, self.enabled = prefix, total, enabled
        self.done = 0
        self.tty = enabled and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.t0 = self.last = time.perf_counter()

    def step(self, info: str = "") -> None:
        self.done += 1
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and self.done < self.total:
            return
        self.last = now
        width = 24
        fill = int(width * self.done / max(1, self.total))
        sys.stderr.write(f"\r{self.prefix} [{'#' * fill}{'.' * (width - fill)}] "
                         f"{self.done}/{self.total} {info}\033[K")
        sys.stderr.flush()

    def close(self, summary: str) -> None:
        if not self.enabled:
            return
        took = time.perf_counter() - self.t0
        sys.stderr.write(("\r" if self.tty else "") +
                         f"{self.prefix} {summary} ({took:.1f} s)" +
                         ("\033[K" if self.tty else "") + "\n")
        sys.stderr.flush()


def _mean(d: dict) -> float:
    return sum(d.values()) / max(1, len(d))
