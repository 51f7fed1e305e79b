"""The masks of a trainer's target layers: computed with each layer's own scheme, enforced on
weights and gradients, and (for filter targets) on the biases and norm layers of pruned filters.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..graph.layers import gemm_view, gemm_weight, get_module
from ..schemes import apply_mask, get_scheme
from ..schemes.options import candidate_options
from .filters import filter_mask


class TargetMasks:
    """Mixin of the trainers: needs self.model, self.targets (layer -> target), self.config
    (its importance), self.masks (layer -> bool mask) and self._norm_links (filters.link_norms).
    """

    def _mask_for(self, name: str, sparsity: float,
                  weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        cand = self.targets[name]
        w = gemm_weight(get_module(self.model, name)).detach() if weight is None else weight
        if sparsity <= 0.0:
            return torch.ones_like(w, dtype=torch.bool)
        if cand.scheme == "filter":
            return filter_mask(w, sparsity, self.config.importance)
        sch = get_scheme(cand.scheme, **candidate_options(cand))
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
                w = gemm_weight(get_module(self.model, name))
                w.copy_(apply_mask(w, m))
                for p in self._filter_params(name, norms):
                    p.mul_(self._row_keep(name, p))

    def _mask_grads(self) -> None:
        for name, m in self.masks.items():
            mod = get_module(self.model, name)
            g = mod.weight.grad
            if g is not None:
                g = gemm_view(mod, g)
                g.mul_(m.to(g.dtype))
            for p in self._filter_params(name, True):
                if p.grad is not None:
                    p.grad.mul_(self._row_keep(name, p))

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

    def _weight(self, name: str) -> torch.Tensor:
        return gemm_weight(get_module(self.model, name))

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

    def sparsity(self) -> dict:
        """layer -> fraction of its weights that are zero now."""
        return {n: float((get_module(self.model, n).weight == 0).float().mean())
                for n in self.targets}
