"""N:M semi-structured pruning: at most n kept weights in every group of m (e.g. 2:4).

Groups run over m consecutive INPUT CHANNELS at a fixed output channel o and kernel position k,
i.e. along the reduction dimension in the channels-last order (o, k, c) that N:M hardware and
libraries use for convs (NVIDIA ASP / cuSPARSELt permute conv weights to (O, kh, kw, C) and
prune along C). For linear (K = 1) that is simply m consecutive columns. In each group the n
weights with the highest score (|w| by default) are kept; ties -> lower channel index.

Sparsity is fixed by the scheme at 1 - n/m: `mask()` accepts `sparsity=None` or a value within
1e-6 of that, and raises ConfigError otherwise. When m does not divide the input channels, the
last group of r < m channels is treated as zero-padded to m: it keeps min(n, r) weights, which
still satisfies the n-in-m constraint, so that layer's sparsity is slightly below 1 - n/m.
`check()` refuses layers with fewer than m input channels and grouped / depthwise convs.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..graph.layers import LayerInfo
from .base import Importance, MaskScheme, register_scheme
from .block import as_oik
from .importance import magnitude_scores
from .options import positive_int, reject_unknown


@register_scheme
class NMScheme(MaskScheme):
    """Keep the n largest of every m consecutive input channels (per output channel and k)."""

    name = "nm"

    def __init__(self, n: int = 2, m: int = 4, **unknown) -> None:
        reject_unknown(self.name, unknown, ("n", "m"))
        self.n = positive_int(n, "n", self.name)
        self.m = positive_int(m, "m", self.name)
        if self.n >= self.m:
            raise ConfigError(f"scheme 'nm': option 'n' must be smaller than 'm', got {n}:{m}")

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def check(self, layer: LayerInfo) -> Optional[str]:
        tag = f"N:M {self.n}:{self.m}"
        if layer.kind == "conv" and layer.groups > 1:
            kind = "depthwise" if layer.is_depthwise else "grouped"
            return f"{tag} does not apply to {kind} conv {layer.name} (groups={layer.groups})"
        if layer.weight_shape[1] < self.m:
            return (f"{tag} does not fit layer {layer.name} with {layer.weight_shape[1]} "
                    f"input channels")
        return None

    def mask(self, weight: torch.Tensor, sparsity: Optional[float] = None,
             importance: Optional[Importance] = None) -> torch.Tensor:
        if sparsity is not None and abs(float(sparsity) - self.sparsity) > 1e-6:
            raise ConfigError(f"N:M {self.n}:{self.m} has fixed sparsity {self.sparsity:.6g}; "
                              f"sparsity {sparsity!r} requested for weight of shape "
                              f"{tuple(weight.shape)} (pass None or {self.sparsity:.6g})")
        w = as_oik(weight.detach())
        o, i, k = w.shape
        g = -(-i // self.m)
        scores = magnitude_scores(w, importance).reshape(o, i, k)
        # Pad channels with -inf so padding is never kept over a real weight.
        scores = F.pad(scores, (0, 0, 0, g * self.m - i), value=float("-inf"))
        groups = scores.reshape(o, g, self.m, k)
        top = torch.sort(groups, dim=2, descending=True, stable=True).indices[:, :, : self.n]
        keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, top, True)
        return keep.reshape(o, g * self.m, k)[:, :i].reshape(weight.shape)

    def describe(self) -> dict:
        return {"scheme": self.name, "block": [1, 1], "n": self.n, "m": self.m}


__all__ = ["NMScheme"]
