"""Structure-LTH's regroup and refill (Chen et al., "Coarsening the Granularity: Towards
Structurally Sparse Lottery Tickets", ICML 2022): an unstructured mask, typically the one
iterative magnitude pruning (IMP) found, turned into a mask the block kernels run.

    python -m engine bench recovery --data mnist5k --methods gradual,lth --sparsities 0.8

`regroup(weight, keep, sparsity)` takes the layer's weight and its unstructured keep-mask (the
IMP mask) and, with `block=(rows, cols)`, scores every block-scheme unit (rows output channels x
cols input channels at one kernel position, block.py) by the importance of the IMP-KEPT weights
inside it: the sum of their |w| by default (L1; the paper's "dense blocks holding the most of
the ticket"), pruned weights counting zero. The highest-scoring units are kept to `sparsity`
with the block scheme's own selection (one threshold per layer, exact counts, ties -> lower
unit index pruned first, edge units at their real size), so the result is a block mask of
`block`: same units, same packing and the same kernels (and speed) as scheme "block".

granularity="channel" is the paper's refill: units are whole row blocks (rows consecutive output
channels x every input channel and kernel position), scored by the same kept-weight importance;
the kept ones are refilled (dense rows), the rest dropped. Whole rows are all kept or all pruned
in every (rows, cols) unit, so this too is a block mask of `block`.

`mask(weight, sparsity)` (the MaskScheme API, no IMP mask at hand) regroups the one-shot
magnitude mask at the same sparsity. The trainer that holds a real IMP mask is engine/train/
lth.py (method "lth").

Out of scope: the paper's IMP-Regroup also permutes output channels (hypergraph partitioning)
so that kept weights gather into dense groups before blocking; the engine's kernels need blocks
of CONSECUTIVE channels, and a permutation would have to be undone between layers, so here the
block grid is fixed and only which blocks to keep is chosen.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..errors import ConfigError, SchemeError
from .base import Importance, check_sparsity, register_scheme
from .block import BlockScheme, as_oik, parse_block
from .importance import l1, score_units
from .options import reject_unknown
from .selection import nearest_unit_count, prune_lowest, prune_to_weight_count, target_count
from .unstructured import UnstructuredScheme

GRANULARITIES = ("block", "channel")


@register_scheme
class RegroupScheme(BlockScheme):
    """Blocks (or refilled row blocks) holding the most of an unstructured mask's kept weight."""

    name = "regroup"

    def __init__(self, block: Sequence[int] = (4, 1), granularity: str = "block",
                 **unknown) -> None:
        reject_unknown(self.name, unknown, ("block", "granularity"))
        self.rows, self.cols = parse_block(block, self.name)
        if granularity not in GRANULARITIES:
            raise ConfigError(f"scheme 'regroup': option 'granularity' must be one of "
                              f"{GRANULARITIES}, got {granularity!r}")
        self.granularity = granularity

    def mask(self, weight: torch.Tensor, sparsity: float,
             importance: Optional[Importance] = None) -> torch.Tensor:
        """Regroup of the one-shot unstructured magnitude mask at `sparsity`."""
        keep = UnstructuredScheme().mask(weight, sparsity)
        return self.regroup(weight, keep, sparsity, importance)

    def regroup(self, weight: torch.Tensor, keep: torch.Tensor, sparsity: float,
                importance: Optional[Importance] = None) -> torch.Tensor:
        """Block keep-mask (bool, weight's shape) at `sparsity` from the unstructured keep-mask
        `keep`: the units whose kept weights score highest (importance: L1 by default; through
        optimize(), its `importance` option, L2 unless given)."""
        s = check_sparsity(sparsity, f" for weight of shape {tuple(weight.shape)}")
        w = as_oik(weight.detach())
        if not isinstance(keep, torch.Tensor) or keep.shape != weight.shape:
            got = tuple(keep.shape) if isinstance(keep, torch.Tensor) else type(keep).__name__
            raise SchemeError(f"regroup: the unstructured mask has shape {got}, the weight "
                              f"{tuple(weight.shape)}")
        o, i, _ = w.shape
        if self.rows > o or self.cols > i:
            raise SchemeError(f"regroup: block ({self.rows},{self.cols}) does not fit a weight "
                              f"of shape {tuple(weight.shape)} ({o} outputs, {i} inputs)")
        kept = weight.detach() * keep.to(torch.bool).to(weight.dtype)
        if self.granularity == "block":
            return super().mask(kept, s, importance or l1)
        return self._refill(kept, s, importance or l1)

    def _refill(self, kept: torch.Tensor, sparsity: float, importance) -> torch.Tensor:
        """Whole row blocks of `rows` output channels, the highest-scoring ones kept."""
        o = kept.shape[0]
        flat = kept.reshape(o, -1)
        n = -(-o // self.rows)
        padded = torch.zeros(n * self.rows, flat.shape[1], dtype=flat.dtype)
        padded[:o] = flat
        scores = score_units(padded.reshape(n, -1), importance)
        sizes = torch.clamp(o - torch.arange(0, o, self.rows), max=self.rows) * flat.shape[1]
        target = target_count(sparsity, kept.numel())
        if o % self.rows == 0:
            pruned = prune_lowest(scores, nearest_unit_count(target, int(sizes[0]), n))
        else:
            pruned = prune_to_weight_count(scores, sizes, target)
        if bool(pruned.all()):        # a layer keeps at least its best row block (as filter)
            pruned[int(torch.argmax(torch.nan_to_num(scores, nan=-float("inf"))))] = False
        rows = (~pruned).repeat_interleave(self.rows)[:o]
        return rows[:, None].expand(o, flat.shape[1]).reshape(kept.shape).clone()

    def describe(self) -> dict:
        return {"scheme": self.name, "block": [self.rows, self.cols],
                "granularity": self.granularity}


__all__ = ["GRANULARITIES", "RegroupScheme"]
