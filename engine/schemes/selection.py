"""Selecting what to prune from unit scores, with exact counts and deterministic ties.

Every mask scheme ends in the same step: given one score per unit, prune the lowest-scoring units
(one threshold per layer) so that the number of pruned weights is as close as possible to the
target. Ties between equal scores are always broken the same way: the unit with the lower index
(in the scheme's documented unit order) is pruned first, so masks are reproducible.
"""
from __future__ import annotations

import torch


def target_count(sparsity: float, numel: int) -> int:
    """Number of weights to prune: round(sparsity * numel)."""
    return int(round(sparsity * numel))


def nearest_unit_count(target: int, unit_size: int, n_units: int) -> int:
    """How many equal-size units to prune so the pruned weights are nearest `target`
    (halfway -> fewer units), clamped to [0, n_units]."""
    if target <= 0:
        return 0
    lo, rem = divmod(target, unit_size)
    return min(n_units, lo + (1 if 2 * rem > unit_size else 0))


def prune_lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (True = pruned) of the `k` lowest scores of 1-D `scores`; ties -> lower index.

    O(n): kthvalue finds the threshold, then the first entries equal to it fill the count, so a
    4M-weight layer needs no full sort.
    """
    n = scores.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    t = torch.kthvalue(scores, k).values
    below = scores < t
    at = scores == t
    need = k - int(below.sum())
    return below | (at & (torch.cumsum(at, 0) <= need))


def prune_to_weight_count(scores: torch.Tensor, sizes: torch.Tensor, target: int) -> torch.Tensor:
    """Bool mask (True = pruned) of the lowest-scoring units whose sizes sum nearest `target`.

    Units may differ in size (edge blocks). Units are taken lowest score first (ties -> lower
    index) and the prefix whose total size is nearest the target wins (halfway -> the shorter
    prefix), so the result is within half of one unit of the target.
    """
    n = scores.numel()
    pruned = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if target <= 0 or n == 0:
        return pruned
    order = torch.sort(scores, stable=True).indices
    cum = torch.cumsum(sizes[order].to(torch.int64), 0)
    # p units pruned -> cum[p-1] weights; the first prefix reaching the target or the one before.
    p = int(torch.searchsorted(cum, torch.tensor([target], dtype=torch.int64)).item()) + 1
    if p > n:
        p = n
    elif p > 1 and 2 * target - int(cum[p - 2]) <= int(cum[p - 1]):
        p -= 1  # cum[p-2] is at least as close as cum[p-1]
    elif p == 1 and 2 * target <= int(cum[0]):
        p = 0
    pruned[order[:p]] = True
    return pruned


__all__ = ["target_count", "nearest_unit_count", "prune_lowest", "prune_to_weight_count"]
