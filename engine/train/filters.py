"""Filter targets (whole output filters, the SFP unit): their masks, and the norm layers that
carry their channels (zeroed with them so that engine's filter scheme can remove them exactly).
"""
from __future__ import annotations

import torch

from ..graph.dependency import build_groups
from ..schemes.importance import score_units


def filter_mask(w: torch.Tensor, sparsity: float, importance) -> torch.Tensor:
    """Whole output filters (rows) of `w`: the round(sparsity * rows) lowest-scoring ones are
    pruned (at least one row kept)."""
    rows = w.shape[0]
    scores = score_units(w.reshape(rows, -1), importance)
    n_prune = min(rows - 1, int(round(sparsity * rows)))
    keep = torch.ones(rows, dtype=torch.bool)
    keep[torch.sort(scores, stable=True).indices[:n_prune]] = False
    return keep.reshape(-1, *([1] * (w.dim() - 1))).expand_as(w).clone()


def link_norms(model, targets: dict, x, notes: list) -> dict:
    """filter target -> [(norm module name, producer row -> norm channel index)]: the norm
    layers (BatchNorm) that normalise each filter target's output channels, found on the traced
    graph (engine.graph.dependency). What could not be linked is said in `notes`."""
    links: dict = {}
    names = [n for n, c in targets.items() if c.scheme == "filter"]
    if not names:
        return links
    try:
        groups = build_groups(model, (x[:1],))
    except Exception as e:       # not traceable: filters are zeroed, norms left alone
        notes.append(f"filter targets: norm layers not linked ({e})")
        return links
    for g in groups:
        producers = [m for m in g.members if m.role == "producer" and m.dim == 0]
        for prod in producers:
            if prod.module not in names:
                continue
            if len(producers) > 1:
                # coupled with other producers (e.g. a residual add): the norms of the
                # group normalise channels other filters feed too; leave them alone
                notes.append(f"{prod.module}: output channels coupled with "
                             f"{len(producers) - 1} other layer(s); norm layers "
                             f"not zeroed with its filters")
                continue
            for m in g.members:
                if m.role != "norm":
                    continue
                where = {c: k for k, c in enumerate(m.index) if c >= 0}
                index = torch.tensor([where.get(c, -1) if c >= 0 else -1
                                      for c in prod.index], dtype=torch.int64)
                links.setdefault(prod.module, []).append((m.module, index))
    return links
