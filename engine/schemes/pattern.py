"""Pattern pruning for 3x3 convs (PatDNN / PCONV style): kernel patterns + connectivity pruning.

Step 1 (pattern): every 3x3 kernel (o, c) keeps the 4 positions of one library pattern, the one
that keeps the most of the kernel's L2 energy (sum of w^2; ties -> the earlier library entry).
That alone prunes 5/9 = 55.6% of the layer.
Step 2 (connectivity): whole kernels with the lowest remaining score (the importance of their 4
kept weights, L2 norm by default; ties -> lower o*I + c) are removed until the pruned count is
nearest round(sparsity * numel) (within half a kernel: each removal prunes 4 more weights).

A sparsity below 5/9 cannot be reached and raises ConfigError (`PatternScheme.min_sparsity`);
sparsity >= 5/9 is met by step 2 (at most every kernel goes).

Library (`library=` option):
- "fixed" (default): `PATTERN_LIBRARY` below, 8 patterns of 4 positions each, all with the centre:
  the 4 "T" shapes (centre + 3 of its 4 edge neighbours) and the 4 2x2 corner squares (centre +
  2 edge neighbours + the corner between them): compact shapes like those in the PatDNN paper.
- "layer": the 8 most frequent "best 4 positions" of this layer's own kernels, where a kernel's
  best set is the centre + its 3 highest-energy other positions (ties -> lower position); sets
  are ranked by frequency (ties -> smaller bitmask), and if fewer than 8 distinct sets occur the
  fixed library fills the rest in its order. See `layer_library`.
Grouped / depthwise convs are refused by `check()` (kept dense): the sparse kernels run groups=1.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError, SchemeError
from ..graph.layers import LayerInfo
from .base import Importance, MaskScheme, check_sparsity, register_scheme
from .importance import score_units
from .options import reject_unknown
from .selection import nearest_unit_count, prune_lowest, target_count

CENTRE = 4  # positions are row-major in the 3x3 kernel: 0 1 2 / 3 4 5 / 6 7 8
KEPT_PER_PATTERN = 4

PATTERN_LIBRARY: tuple[tuple[int, ...], ...] = (
    (1, 3, 4, 5),  # . x . / x x x / . . .   T, up
    (3, 4, 5, 7),  # . . . / x x x / . x .   T, down
    (1, 3, 4, 7),  # . x . / x x . / . x .   T, left
    (1, 4, 5, 7),  # . x . / . x x / . x .   T, right
    (0, 1, 3, 4),  # x x . / x x . / . . .   square, top-left
    (1, 2, 4, 5),  # . x x / . x x / . . .   square, top-right
    (3, 4, 6, 7),  # . . . / x x . / x x .   square, bottom-left
    (4, 5, 7, 8),  # . . . / . x x / . x x   square, bottom-right
)
LIBRARIES = ("fixed", "layer")


def _codes_to_masks(codes: torch.Tensor) -> torch.Tensor:
    """9-bit position bitmasks [P] -> bool masks [P, 9]."""
    return (codes[:, None] >> torch.arange(9)) & 1 == 1


def fixed_library() -> torch.Tensor:
    """`PATTERN_LIBRARY` as bool masks [8, 9]."""
    lib = torch.zeros(len(PATTERN_LIBRARY), 9, dtype=torch.bool)
    for p, positions in enumerate(PATTERN_LIBRARY):
        lib[p, list(positions)] = True
    return lib


def layer_library(weight: torch.Tensor, size: int = len(PATTERN_LIBRARY)) -> torch.Tensor:
    """The `size` most frequent best-4 position sets (with the centre) of a 3x3 conv weight,
    as bool masks [size, 9]; padded from the fixed library if fewer distinct sets occur."""
    energy = _kernels(weight).float().pow(2)
    others = torch.tensor([p for p in range(9) if p != CENTRE])
    top = torch.sort(energy[:, others], dim=1, descending=True, stable=True).indices[:, :3]
    codes = (1 << others[top]).sum(dim=1) + (1 << CENTRE)
    counts = torch.bincount(codes, minlength=512)
    ranked = torch.sort(-counts, stable=True).indices  # most frequent first, ties -> lower code
    chosen = [int(c) for c in ranked[:size] if counts[c] > 0]
    fixed_codes = [sum(1 << p for p in pat) for pat in PATTERN_LIBRARY]
    chosen += [c for c in fixed_codes if c not in chosen][: size - len(chosen)]
    return _codes_to_masks(torch.tensor(chosen))


def _kernels(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 conv weight (O, I, 3, 3) as kernels [O*I, 9]."""
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise SchemeError(f"pattern scheme needs a 3x3 conv weight (O, I, 3, 3), "
                          f"got shape {tuple(weight.shape)}")
    return weight.detach().reshape(-1, 9)


def assign_patterns(kernels: torch.Tensor, library: torch.Tensor) -> torch.Tensor:
    """Index [n] of the library pattern keeping the most L2 energy of each kernel [n, 9]."""
    energy = kernels.float().pow(2) @ library.float().T
    return energy.argmax(dim=1)  # first maximum on ties


@register_scheme
class PatternScheme(MaskScheme):
    """PatDNN-style pattern + connectivity pruning of 3x3 convs."""

    name = "pattern"
    min_sparsity = 1.0 - KEPT_PER_PATTERN / 9.0

    def __init__(self, library: str = "fixed", **unknown) -> None:
        reject_unknown(self.name, unknown, ("library",))
        if library not in LIBRARIES:
            raise ConfigError(f"scheme 'pattern': option 'library' must be one of {LIBRARIES}, "
                              f"got {library!r}")
        self.library = library

    def check(self, layer: LayerInfo) -> Optional[str]:
        if layer.kind != "conv" or tuple(layer.kernel_size) != (3, 3):
            what = "linear" if layer.kind == "linear" else f"{layer.kernel_size} conv"
            return f"pattern scheme needs a 3x3 conv; layer {layer.name} is {what}"
        if layer.groups > 1:
            kind = "depthwise" if layer.is_depthwise else "grouped"
            return (f"pattern scheme does not apply to {kind} conv {layer.name} "
                    f"(groups={layer.groups})")
        return None

    def mask(self, weight: torch.Tensor, sparsity: float,
             importance: Optional[Importance] = None) -> torch.Tensor:
        s = check_sparsity(sparsity, f" for weight of shape {tuple(weight.shape)}")
        kernels = _kernels(weight)
        if s < self.min_sparsity - 1e-9:
            raise ConfigError(f"pattern scheme prunes at least 5/9 = {self.min_sparsity:.4f} of a "
                              f"3x3 conv; sparsity {s} requested for weight of shape "
                              f"{tuple(weight.shape)}")
        library = fixed_library() if self.library == "fixed" else layer_library(weight)
        keep = library[assign_patterns(kernels, library)]            # [n, 9]
        n = kernels.shape[0]
        extra = target_count(s, weight.numel()) - (9 - KEPT_PER_PATTERN) * n
        drop = nearest_unit_count(extra, KEPT_PER_PATTERN, n)
        scores = score_units(kernels * keep, importance)
        keep &= ~prune_lowest(scores, drop)[:, None]
        return keep.reshape(weight.shape)

    def describe(self) -> dict:
        return {"scheme": self.name, "block": [1, 1], "library": self.library}


__all__ = ["PatternScheme", "PATTERN_LIBRARY", "CENTRE", "fixed_library", "layer_library",
           "assign_patterns"]
