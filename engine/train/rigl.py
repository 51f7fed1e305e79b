"""Dynamic sparse training: the masks move during training, their sparsity never does (methods
"rigl" and "set"; issue P10, the "sparse training of GNN weight layers" setting of CGP, Liu et
al., "Comprehensive Graph Gradual Pruning for Sparse Training in Graph Neural Networks", 2023).

RigL (Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML 2020): every layer is
at its target sparsity from the first batch (magnitude masks of the starting weights, each layer's
own block structure). Every dT batches (config.regrow_every; None: dT = the regrowth phase's
batches // 20, about 19 updates strictly inside the phase: config.prune_epochs, default 2/3 of
the run) a fraction f_t of each layer's kept units is
dropped, the smallest by magnitude (config.importance over the unit), and as many units are
regrown where the dense gradient of the loss is largest (l2 norm over the unit); regrown weights
start at zero (their optimizer state too, and the update batch does not move them; they train
from the next batch on).
f_t = alpha / 2 * (1 + cos(pi * t / T_end)), alpha = config.regrow_fraction (0.3), T_end = the
end of the phase; after it the masks are fixed. SET (Mocanu et al., "Scalable training of
artificial neural networks with adaptive sparse connectivity inspired by network science",
Nature Communications 2018) regrows at random instead (seeded by config.seed and the update).

Units are the scheme's: block rows x cols at each kernel position (unstructured: single
weights), so the masks are always the engine's block shapes; drop and regrow are counted per
unit size (edge blocks swap with edge blocks), so a layer keeps exactly the weight count its
first mask had. Targets of other schemes (pattern, nm, filter) are refused.

    t = PruneTrainer(model, uniform_targets(model, block=(4, 1), sparsity=0.8),
                     TrainConfig(method="rigl", epochs=200, lr=1e-2))
    python -m engine bench gcn          # GCN on the digits kNN graph: dense vs RigL at 80%
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..errors import ConfigError
from ..graph.layers import gemm_view, get_module
from ..schemes.block import as_oik, block_units
from ..schemes.importance import score_units
from ..schemes.selection import prune_lowest
from .trainer import PruneTrainer

UPDATES = 20          # mask updates over the regrowth phase when regrow_every is None


def unit_shape(target) -> tuple:
    """(rows, cols) of a target's unit; ConfigError for a scheme without block units."""
    if target.scheme == "block":
        return tuple(target.block or (1, 1))
    if target.scheme == "unstructured":
        return (1, 1)
    raise ConfigError(f"methods rigl / set regrow block units: a target must be scheme 'block' "
                      f"or 'unstructured', got {target.scheme!r}")


def unit_ids(shape: tuple, rows: int, cols: int) -> torch.Tensor:
    """For a weight of `shape` (conv or linear), each weight's unit in block_units' order
    (row block, column block, kernel position)."""
    o, i, k = as_oik(torch.empty(shape, device="meta")).shape
    c = -(-i // cols)
    r_of = torch.arange(o) // rows
    c_of = torch.arange(i) // cols
    ids = (r_of[:, None, None] * c + c_of[None, :, None]) * k + torch.arange(k)[None, None, :]
    return ids.reshape(shape)


def drop_and_grow(keep: torch.Tensor, drop_score: torch.Tensor, grow_score: torch.Tensor,
                  sizes: torch.Tensor, fraction: float) -> torch.Tensor:
    """New unit keep flags: per unit size, round(fraction * kept) kept units with the lowest
    drop_score dropped, as many units not kept after the drop with the highest grow_score
    regrown (ties: the lower index first). Each size keeps its count."""
    new = keep.clone()
    for size in torch.unique(sizes):
        of = (sizes == size).nonzero().flatten()
        kept = of[keep[of]]
        k = round(fraction * kept.numel())
        if k == 0 or kept.numel() == of.numel():
            continue
        dropped = kept[prune_lowest(drop_score[kept], k)]
        new[dropped] = False
        free = of[~new[of]]
        grown = free[prune_lowest(-grow_score[free], k)]
        new[grown] = True
    return new


class RigLTrainer(PruneTrainer, method="rigl"):
    """Sparse from the start; drop by magnitude, regrow by gradient every dT batches."""

    checkpointed = ("updates",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._units = {n: unit_shape(c) for n, c in self.targets.items()}
        self.updates = 0
        self.grown: dict = {}      # layer -> weights regrown by the last update (bool)
        self._opt = None

    def _schedule(self, per_epoch: int) -> None:
        super()._schedule(per_epoch)
        self._end = self._prune_epochs * per_epoch
        self._every = self.config.regrow_every or max(1, self._end // UPDATES)

    def _start(self, batches):
        self._opt = super()._start(batches)
        return self._opt

    def _resumed(self) -> None:
        if self.batch == 0:      # a fresh run: at the target sparsity before the first batch
            self.masks = {}
            self._prune_to(lambda final: final)

    def fraction(self, batch: Optional[int] = None) -> float:
        """f_t: the share of kept units an update at `batch` drops and regrows."""
        b = self.batch if batch is None else batch
        if self._end <= 0 or b >= self._end:
            return 0.0
        return self.config.regrow_fraction / 2 * (1 + math.cos(math.pi * b / self._end))

    def _mask_grads(self) -> None:
        b = self.batch
        update = 0 < b < self._end and b % self._every == 0
        if update:
            grads = {}
            for n in self.targets:
                mod = get_module(self.model, n)
                if mod.weight.grad is not None:
                    grads[n] = gemm_view(mod, mod.weight.grad).detach().clone()
            self.update_masks(grads, self.fraction())
        super()._mask_grads()
        if not update:
            return
        # regrown weights start at zero: this batch's step leaves them there (the gradient that
        # chose them is not applied); from the next batch on they train like every kept weight
        for n, g in self.grown.items():
            grad = get_module(self.model, n).weight.grad
            if grad is not None:
                gemm_view(get_module(self.model, n), grad)[g] = 0.0

    def update_masks(self, grads: dict, fraction: float) -> dict:
        """One drop-and-regrow step of every target with a gradient in `grads` (layer -> dense
        gradient, the GEMM orientation); returns self.grown (layer -> bool, the weights that
        were pruned and are now kept: set to zero, their optimizer state cleared)."""
        self.grown = {}
        for n, g in grads.items():
            old = self.masks[n]
            new = self._new_mask(n, g, fraction)
            self.grown[n] = new & ~old
            self.masks[n] = new
        self.updates += 1
        self.apply_masks()
        self._clear_state()
        return self.grown

    def _new_mask(self, name: str, grad: torch.Tensor, fraction: float) -> torch.Tensor:
        rows, cols = self._units[name]
        w = self._weight(name).detach()
        ids = unit_ids(tuple(w.shape), rows, cols)
        units, sizes = block_units(as_oik(w), rows, cols)
        keep = torch.zeros(units.shape[0], dtype=torch.bool)
        keep[ids[self.masks[name]]] = True
        drop = score_units(units, self.config.importance)
        grow = self._grow_scores(grad, rows, cols, units.shape[0])
        return drop_and_grow(keep, drop, grow, sizes, fraction)[ids]

    def _grow_scores(self, grad: torch.Tensor, rows: int, cols: int, n: int) -> torch.Tensor:
        """RigL: the l2 norm of the dense gradient over each unit."""
        return block_units(as_oik(grad), rows, cols)[0].norm(dim=1)

    def _clear_state(self) -> None:
        """Zero the optimizer's moments (Adam) / momentum (SGD) of the regrown weights."""
        if self._opt is None:
            return
        for n, g in self.grown.items():
            mod = get_module(self.model, n)
            for v in self._opt.state.get(mod.weight, {}).values():
                if isinstance(v, torch.Tensor) and v.shape == mod.weight.shape:
                    gemm_view(mod, v)[g] = 0.0

    def _epoch_stats(self) -> dict:
        return {"mask_updates": self.updates}


class SetTrainer(RigLTrainer, method="set"):
    """RigL's schedule with SET's random regrowth."""

    def _grow_scores(self, grad: torch.Tensor, rows: int, cols: int, n: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.updates)
        return torch.rand(n, generator=gen)
