"""Block-punched pruning: the general fine-grained structured scheme (BSR for 1x1 conv / linear).

A weight is seen as (O, I, K): O output channels, I input channels, K = kh*kw kernel positions
(linear and 1x1 conv have K = 1). With `block=(rows, cols)` a prunable unit is `rows` consecutive
output channels x `cols` consecutive input channels at ONE kernel position k: its rows*cols
weights are kept or pruned together, and each kernel position of a k x k conv is punched
independently. So block (1, 1) is unstructured pruning and rows = O prunes whole GEMM columns.

Units are numbered (row block, column block, k), row-major; with block (1, 1) that is the weight's
own flat order, which is what ties are broken by (lower index pruned first).

Scores: the importance of each unit's rows*cols weights (L2 norm by default). One threshold per
layer: the lowest-scoring units are pruned until the number of pruned WEIGHTS is nearest
round(sparsity * numel).

Edge blocks: when rows does not divide O (or cols does not divide I) the last row (column) block
is shorter. Edge units are scored on their real weights only (as if the layer were zero-padded to
whole blocks, which is how a padded packing would see them; a smaller unit therefore tends to
score lower under a norm), and they count with their real size, so the realised sparsity stays
within half of one unit of the target. `check()` refuses layers the block cannot structure at all
(a block larger than the layer, grouped / depthwise convs): the engine keeps those dense. With
`quads=True` (an int8 block: its columns are column quads, 4 input channels at one tap) a block
as wide as the input channels' next multiple of 4 fits too, one unit across them (a 4-column
block on an RGB stem: the int8 kernels hold its 3 channels in one quad).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError, SchemeError
from ..graph.layers import LayerInfo
from .base import Importance, MaskScheme, check_sparsity, register_scheme
from .importance import magnitude_scores, score_units
from .options import positive_int, reject_unknown
from .selection import nearest_unit_count, prune_lowest, prune_to_weight_count, target_count


def parse_block(block: Sequence[int], scheme: str = "block") -> tuple[int, int]:
    """(rows, cols) from a 2-sequence of positive ints, else ConfigError naming `block`."""
    if isinstance(block, (str, bytes)) or not isinstance(block, Sequence) or len(block) != 2:
        raise ConfigError(f"scheme {scheme!r}: option 'block' must be (rows, cols), got {block!r}")
    return (positive_int(block[0], "block", scheme), positive_int(block[1], "block", scheme))


def as_oik(weight: torch.Tensor) -> torch.Tensor:
    """A conv (O, I, kh, kw) or linear (O, I) weight viewed as (O, I, K)."""
    if weight.dim() not in (2, 4):
        raise SchemeError(f"block scheme needs a conv (O, I, kh, kw) or linear (O, I) weight, "
                          f"got shape {tuple(weight.shape)}")
    return weight.reshape(weight.shape[0], weight.shape[1], -1)


def _edge_sizes(n: int, step: int) -> torch.Tensor:
    """Length of each of the ceil(n / step) consecutive chunks of `step` covering n."""
    starts = torch.arange(0, n, step)
    return torch.clamp(n - starts, max=step)


def block_units(w: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Units [R*C*K, rows*cols] (zero-padded edges) and their real sizes [R*C*K]."""
    o, i, k = w.shape
    r, c = -(-o // rows), -(-i // cols)
    padded = F.pad(w, (0, 0, 0, c * cols - i, 0, r * rows - o))
    units = padded.reshape(r, rows, c, cols, k).permute(0, 2, 4, 1, 3).reshape(r * c * k, -1)
    sizes = _edge_sizes(o, rows)[:, None, None] * _edge_sizes(i, cols)[None, :, None]
    return units, sizes.expand(r, c, k).reshape(-1)


def _from_units(keep_units: torch.Tensor, shape: tuple, rows: int, cols: int) -> torch.Tensor:
    """Expand a per-unit keep flag [R*C*K] back to a per-weight mask of `shape`."""
    o, i = shape[0], shape[1]
    r, c = -(-o // rows), -(-i // cols)
    k = keep_units.numel() // (r * c)
    u = keep_units.reshape(r, 1, c, 1, k).expand(r, rows, c, cols, k)
    return u.reshape(r * rows, c * cols, -1)[:o, :i].reshape(shape)


def block_structure_holds(mask: torch.Tensor, block: Sequence[int]) -> bool:
    """True iff every unit of `block` in `mask` (conv or linear shaped) is all kept or all pruned."""
    rows, cols = parse_block(block)
    units, sizes = block_units(as_oik(mask).to(torch.int32), rows, cols)
    kept = units.sum(dim=1)
    return bool(((kept == 0) | (kept == sizes)).all())


@register_scheme
class BlockScheme(MaskScheme):
    """Block-punched pruning with `block=(rows, cols)` units at each kernel position."""

    name = "block"
    quads = False   # int8 column quads (see the module doc); subclasses keep the default

    def __init__(self, block: Sequence[int] = (1, 1), quads: bool = False, **unknown) -> None:
        reject_unknown(self.name, unknown, ("block", "quads"))
        self.rows, self.cols = parse_block(block, self.name)
        if not isinstance(quads, bool):
            raise ConfigError(f"scheme {self.name!r}: option 'quads' must be a bool, got {quads!r}")
        self.quads = quads

    @property
    def block(self) -> tuple:
        return (self.rows, self.cols)

    def check(self, layer: LayerInfo) -> Optional[str]:
        o, i = layer.weight_shape[0], layer.weight_shape[1]
        tag = f"{self.name} ({self.rows},{self.cols})"
        if layer.kind == "conv" and layer.groups > 1:
            kind = "depthwise" if layer.is_depthwise else "grouped"
            return f"{tag} does not apply to {kind} conv {layer.name} (groups={layer.groups})"
        if self.rows > o:
            return f"{tag} does not fit layer {layer.name} with {o} output channels"
        if self.cols > (4 * -(-i // 4) if self.quads else i):
            return f"{tag} does not fit layer {layer.name} with {i} input channels"
        return None

    def mask(self, weight: torch.Tensor, sparsity: float,
             importance: Optional[Importance] = None) -> torch.Tensor:
        s = check_sparsity(sparsity, f" for weight of shape {tuple(weight.shape)}")
        w = as_oik(weight.detach())
        target = target_count(s, weight.numel())
        if self.rows == 1 and self.cols == 1:  # units are single weights in flat order
            return (~prune_lowest(magnitude_scores(w, importance), target)).reshape(weight.shape)
        units, sizes = block_units(w, self.rows, self.cols)
        scores = score_units(units, importance)
        full = self.rows * self.cols
        if bool((sizes == full).all()):
            pruned = prune_lowest(scores, nearest_unit_count(target, full, scores.numel()))
        else:
            pruned = prune_to_weight_count(scores, sizes, target)
        return _from_units(~pruned, tuple(weight.shape), self.rows, self.cols)

    def describe(self) -> dict:
        return {"scheme": self.name, "block": [self.rows, self.cols]}


__all__ = ["BlockScheme", "block_structure_holds", "parse_block", "as_oik"]
