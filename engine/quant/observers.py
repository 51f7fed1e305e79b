"""Observers: calibration data -> a quantization range -> QParams.

    minmax      the data's min and max (running over batches): nothing clips; one outlier
                widens the step for every other value.
    percentile  the `percentile`-th and (100 - percentile)-th percentiles (default 99.99) of
                the values seen, from a histogram over the running range: outliers clip.
    mse         the range, from the histogram, that minimises the mean squared error of
                quantize -> dequantize over the values seen (a grid of candidate clips, both
                ends searched for asymmetric types). The default (DEFAULT): on heavy-tailed
                activations it loses least; on uniform ones it keeps the full range.

Histograms: `bins` equal bins over [min, max] seen so far; when a batch widens the range, the
counts so far are re-binned into the new range (each old bin's count moves to the new bin of
its centre), as torch.ao's HistogramObserver does. Weights are observed whole, per output
channel, by min-max (weight_qparams): symmetric int8, nothing clips.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError
from .qparams import ACT_U8, WEIGHT_S8, QParams, QRange, choose_qparams

DEFAULT = "mse"


class Observer:
    """Per-tensor range of everything `update` saw."""

    def __init__(self, qrange: QRange = ACT_U8):
        self.qrange = qrange
        self.lo: Optional[float] = None
        self.hi: Optional[float] = None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach()
        if x.numel() == 0:
            return
        if not torch.isfinite(x).all():
            raise ConfigError(f"{type(self).__name__}: calibration data has inf or nan "
                              f"(tensor of shape {tuple(x.shape)})")
        lo, hi = float(x.min()), float(x.max())
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    def range(self) -> tuple:
        if self.lo is None:
            raise ConfigError(f"{type(self).__name__}: no data observed (run calibration "
                              f"batches through update() first)")
        return self.lo, self.hi

    def qparams(self) -> QParams:
        lo, hi = self.range()
        return choose_qparams(torch.tensor(lo), torch.tensor(hi), self.qrange)


class MinMaxObserver(Observer):
    """The running min and max."""


class _HistogramObserver(Observer):
    def __init__(self, qrange: QRange = ACT_U8, bins: int = 2048):
        super().__init__(qrange)
        if bins < 16:
            raise ConfigError(f"{type(self).__name__}: bins must be >= 16, got {bins}")
        self.bins = bins
        self.hist = torch.zeros(bins, dtype=torch.float64)

    def update(self, x: torch.Tensor) -> None:
        old = None if self.lo is None else (self.lo, self.hi)
        super().update(x)
        if self.lo is None:
            return
        if old is not None and old != (self.lo, self.hi):  # re-bin the counts into the new range
            centres = old[0] + (torch.arange(self.bins, dtype=torch.float64) + 0.5) * \
                ((old[1] - old[0]) / self.bins)
            moved = torch.zeros_like(self.hist)
            moved.index_add_(0, self._bin(centres), self.hist)
            self.hist = moved
        self.hist += torch.bincount(self._bin(x.detach().reshape(-1).to(torch.float64)),
                                    minlength=self.bins).to(torch.float64)

    def _bin(self, v: torch.Tensor) -> torch.Tensor:
        width = (self.hi - self.lo) / self.bins
        if width <= 0:
            return torch.zeros(v.shape, dtype=torch.int64)
        return torch.clamp(((v - self.lo) / width).to(torch.int64), 0, self.bins - 1)

    def _centres(self) -> torch.Tensor:
        width = (self.hi - self.lo) / self.bins
        return self.lo + (torch.arange(self.bins, dtype=torch.float64) + 0.5) * width


class PercentileObserver(_HistogramObserver):
    """Clips at the `percentile`-th / (100 - percentile)-th percentiles of the values seen."""

    def __init__(self, qrange: QRange = ACT_U8, percentile: float = 99.99, bins: int = 2048):
        super().__init__(qrange, bins)
        if not 50.0 < percentile <= 100.0:
            raise ConfigError(f"PercentileObserver: percentile must be in (50, 100], got "
                              f"{percentile}")
        self.percentile = percentile

    def range(self) -> tuple:
        lo, hi = super().range()
        if hi <= lo:
            return lo, hi
        cdf = torch.cumsum(self.hist, 0) / self.hist.sum()
        q = self.percentile / 100.0
        edges = self.lo + torch.arange(1, self.bins + 1, dtype=torch.float64) * \
            ((self.hi - self.lo) / self.bins)          # upper edge of each bin
        i_hi = int(torch.searchsorted(cdf, torch.tensor(q, dtype=torch.float64)))
        i_lo = int(torch.searchsorted(cdf, torch.tensor(1.0 - q, dtype=torch.float64)))
        new_hi = float(edges[min(i_hi, self.bins - 1)])
        new_lo = float(edges[i_lo]) - (self.hi - self.lo) / self.bins
        return max(lo, new_lo), min(hi, new_hi)


class MSEObserver(_HistogramObserver):
    """The clipping range with the least quantization MSE over the values seen (histogram
    centres weighted by their counts), searched over `steps` fractions of the full range at
    each end."""

    def __init__(self, qrange: QRange = ACT_U8, bins: int = 2048, steps: int = 64):
        super().__init__(qrange, bins)
        self.steps = steps

    def _mse(self, lo: torch.Tensor, hi: torch.Tensor, v: torch.Tensor,
             w: torch.Tensor) -> torch.Tensor:
        """The weighted squared error of each candidate range [lo[i], hi[i]] over the values
        v (counts w), quantized exactly as fake_quant does."""
        qp = choose_qparams(lo, hi, self.qrange, axis=0)
        s = qp.scale.to(torch.float64)[:, None]
        inv = (1.0 / qp.scale).to(torch.float64)[:, None]
        z = qp.zero_point.to(torch.float64)[:, None]
        q = torch.clamp(torch.round(v[None, :] * inv) + z, self.qrange.qmin, self.qrange.qmax)
        return ((q - z) * s - v[None, :]).pow(2).mul(w[None, :]).sum(1)

    def range(self) -> tuple:
        lo, hi = super().range()
        if hi <= lo:
            return lo, hi
        v, w = self._centres(), self.hist
        keep = w > 0
        v, w = v[keep], w[keep]
        fr = torch.linspace(1.0 / self.steps, 1.0, self.steps, dtype=torch.float64)
        # each end shrunk by every fraction (both ends independently for an asymmetric type
        # whose range crosses 0; together otherwise)
        if not self.qrange.symmetric and lo < 0 < hi:
            a, b = torch.meshgrid(fr, fr, indexing="ij")
            cand_lo, cand_hi = lo * b.reshape(-1), hi * a.reshape(-1)
        else:
            cand_lo, cand_hi = lo * fr, hi * fr
        errs = torch.cat([self._mse(cl, ch, v, w) for cl, ch in
                          zip(cand_lo.split(256), cand_hi.split(256))])
        # of the ranges as good as the best, the widest (the data it did not see clips least)
        tied = torch.nonzero(errs <= errs.min() * (1 + 1e-9)).reshape(-1)
        i = int(tied[torch.argmax((cand_hi - cand_lo)[tied])])
        return float(cand_lo[i]), float(cand_hi[i])


_KINDS = {"minmax": MinMaxObserver, "percentile": PercentileObserver, "mse": MSEObserver}


def observer(kind: str = DEFAULT, qrange: QRange = ACT_U8, **options) -> Observer:
    """An activation observer by name: "minmax", "percentile" or "mse" (DEFAULT)."""
    if kind not in _KINDS:
        raise ConfigError(f"unknown observer {kind!r}: one of {sorted(_KINDS)}")
    return _KINDS[kind](qrange, **options)


def weight_qparams(weight: torch.Tensor, qrange: QRange = WEIGHT_S8, axis: int = 0) -> QParams:
    """Per-output-channel (axis) symmetric int8 qparams of a weight, from its min and max."""
    w = weight.detach().to(torch.float64).transpose(0, axis).reshape(weight.shape[axis], -1)
    if w.numel() == 0:
        raise ConfigError(f"weight_qparams: empty weight of shape {tuple(weight.shape)}")
    if not torch.isfinite(w).all():
        raise ConfigError(f"weight_qparams: weight of shape {tuple(weight.shape)} has inf or nan")
    return choose_qparams(w.min(1).values, w.max(1).values, qrange, axis)
