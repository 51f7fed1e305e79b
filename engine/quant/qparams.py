"""Quantization parameters: a range [lo, hi] of real values -> scale and zero point."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class QRange:
    """An integer type's range and whether its zero point is pinned at 0 (symmetric)."""

    qmin: int
    qmax: int
    symmetric: bool
    name: str


ACT_U8 = QRange(0, 255, False, "uint8")
WEIGHT_S8 = QRange(-127, 127, True, "int8")


@dataclass(frozen=True)
class QParams:
    """real = scale * (q - zero_point), q in [qrange.qmin, qrange.qmax]. Per tensor (scale and
    zero_point 0-d) or per channel along `axis` (1-d, one per channel)."""

    scale: torch.Tensor
    zero_point: torch.Tensor
    qrange: QRange
    axis: Optional[int] = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None


def choose_qparams(lo: torch.Tensor, hi: torch.Tensor, qrange: QRange,
                   axis: Optional[int] = None) -> QParams:
    """Scale and zero point for real ranges [lo, hi] (tensors of one shape: 0-d per tensor,
    1-d per channel). The range is widened to hold 0 (zero stays exact); symmetric types take
    max(|lo|, |hi|) on both sides. An empty range (lo == hi == 0) gets scale 1, so that
    quantizing a constant-zero tensor stays zero instead of dividing by zero."""
    lo = torch.as_tensor(lo, dtype=torch.float64)
    hi = torch.as_tensor(hi, dtype=torch.float64)
    if lo.shape != hi.shape or lo.dim() > 1:
        raise ConfigError(f"choose_qparams: lo {tuple(lo.shape)} and hi {tuple(hi.shape)} must "
                          f"be one shape, 0-d or 1-d")
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ConfigError("choose_qparams: the observed range is not finite (inf or nan in the "
                          "calibration data?)")
    if (lo > hi).any():
        raise ConfigError("choose_qparams: lo > hi (no data observed?)")
    if (axis is None) != (lo.dim() == 0):
        raise ConfigError("choose_qparams: 1-d ranges need an axis, 0-d ones none")
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    qmin, qmax = qrange.qmin, qrange.qmax
    if qrange.symmetric:
        amax = torch.maximum(-lo, hi)
        scale = amax / ((qmax - qmin) / 2)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zp = torch.zeros_like(scale, dtype=torch.int64)
    else:
        scale = (hi - lo) / (qmax - qmin)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zp = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax).to(torch.int64)
    return QParams(scale.to(torch.float32), zp, qrange, axis)
