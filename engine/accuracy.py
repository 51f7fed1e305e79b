"""Data-driven accuracy proxy for the mappers: held-out accuracy after BN recalibration.

    proxy = DataProxy(model, data=(x, y))          # or data=(calib_batches, val_batches)
    proxy.score({"layer1.0.conv1": Candidate("block", (4, 1), 0.8), ...})   # top-1 in [0, 1]

What it measures (no fine-tuning; the standard one-shot pruning proxy of AMC / MetaPruning /
"EagleEye"): a copy of the model with every assignment's masks applied, its BatchNorm running
statistics re-estimated on calibration batches (pruning shifts every activation distribution;
stale statistics would dominate the error and rank candidates by their BN damage instead of
their information loss), then top-1 accuracy on held-out batches. Masks come from the engine's
schemes with the same importance optimize() uses, built once per (layer, candidate) and cached.

int8 candidates (bits=8): after the BN recalibration, the copy is calibrated on the same
calibration batches (engine.quant.calibrate, the default observer) and its int8 layers run
under fake quantization as the int8 kernels compute them (engine.quant.simulate): input and
output on their uint8 grids, the BN-folded weight int8 per output channel.

`data` forms:
- (x, y) tensors: the first half of the samples calibrates BN, the second half is scored;
- (calib, val): two iterables of (x, y) batches (x alone is fine for calib);
- a callable model -> float: the user's own metric (higher is better) on the pruned copy; with
  no calibration batches, BN statistics are left as they are.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable, Optional, Union

import torch
from torch import nn

from .errors import ConfigError
from .graph.layers import gemm_weight, get_module
from .schemes import apply_mask, get_scheme
from .schemes.options import candidate_options

Data = Union[tuple, Callable]


def _split(data) -> tuple:
    """(calibration batches, validation batches or None, metric callable or None)."""
    if callable(data) and not isinstance(data, (tuple, list)):
        return [], None, data
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ConfigError("data must be (x, y) tensors, (calib_batches, val_batches) or a "
                          f"callable model -> float; got {type(data).__name__}")
    a, b = data
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape[0] != b.shape[0] or a.shape[0] < 2:
            raise ConfigError(f"data (x, y): need the same number (>= 2) of samples, got "
                              f"x {tuple(a.shape)} and y {tuple(b.shape)}")
        half = a.shape[0] // 2
        return [(a[:half], b[:half])], [(a[half:], b[half:])], None
    return list(a), list(b), None


class DataProxy:
    """score(assignment) = held-out top-1 of the masked model after BN recalibration."""

    def __init__(self, model: nn.Module, data: Data, importance="l2",
                 batch_limit: Optional[int] = None):
        self.model = copy.deepcopy(model).eval()
        self.calib, self.val, self.metric = _split(data)
        if batch_limit is not None:
            self.calib = self.calib[:batch_limit]
            self.val = None if self.val is None else self.val[:batch_limit]
        self.importance = importance
        self._masks: dict = {}
        self._scores: dict = {}
        self.evaluations = 0

    # -- masks ---------------------------------------------------------------------------------
    def mask(self, layer: str, cand) -> Optional[torch.Tensor]:
        """The keep-mask of `cand` (a mapping.Candidate) on `layer`, or None for dense."""
        if not cand.pruned:
            return None
        key = (layer, cand.scheme, cand.block, round(cand.sparsity, 6), cand.options,
               getattr(cand, "bits", 32))
        m = self._masks.get(key)
        if m is None:
            w = gemm_weight(get_module(self.model, layer)).detach()
            sch = get_scheme(cand.scheme, **candidate_options(cand))
            m = self._masks[key] = sch.mask(w, None if cand.scheme == "nm" else cand.sparsity,
                                            self.importance)
        return m

    # -- scoring -------------------------------------------------------------------------------
    def pruned_copy(self, assignment: dict) -> nn.Module:
        net = copy.deepcopy(self.model)
        with torch.no_grad():
            for layer, cand in assignment.items():
                m = self.mask(layer, cand)
                if m is not None:
                    w = gemm_weight(get_module(net, layer))
                    w.copy_(apply_mask(w, m))
        if self.calib:
            recalibrate_bn(net, self._inputs())
        int8 = sorted(layer for layer, cand in assignment.items() if cand.is_int8)
        if int8:
            net = self._simulated(net, int8)
        return net.eval()

    def _inputs(self):
        return (b[0] if isinstance(b, (tuple, list)) else b for b in self.calib)

    def _simulated(self, net: nn.Module, layers: list) -> nn.Module:
        """net with `layers` under int8 fake quantization, calibrated on the calib batches."""
        from dataclasses import replace
        from .quant import calibrate, simulate
        if not self.calib:
            raise ConfigError("the accuracy proxy of int8 candidates needs calibration batches "
                              "(data=(x, y) or (calib_batches, val_batches))")
        cal = calibrate(net, list(self._inputs()))
        missing = [n for n in layers if n not in cal.layers]
        if missing:
            raise ConfigError(f"int8 candidates on layers the calibration does not cover: "
                              f"{missing[:5]}")
        return simulate(net, replace(cal, layers={n: cal.layers[n] for n in layers}))

    def score(self, assignment: dict) -> float:
        key = tuple(sorted((l, c.key) for l, c in assignment.items() if not c.is_dense))
        if key not in self._scores:
            net = self.pruned_copy(assignment)
            self.evaluations += 1
            self._scores[key] = (float(self.metric(net)) if self.metric is not None
                                 else accuracy(net, self.val))
        return self._scores[key]

    __call__ = score


def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BatchNorm's running mean/var from `batches` (cumulative average, no
    other state changes); returns the number of batches used."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = {m: m.momentum for m in bns}
    for m in bns:
        m.reset_running_stats()
        m.momentum = None            # cumulative moving average over the calibration batches
    model.train()
    n = 0
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
                n += 1
    finally:
        for m, mom in saved.items():
            m.momentum = mom
        model.eval()
    if n == 0:
        raise ConfigError("BN recalibration got no batches")
    return n


def accuracy(model: nn.Module, batches) -> float:
    """Top-1 accuracy of `model` over (x, y) batches."""
    if not batches:
        raise ConfigError("no validation batches to score accuracy on")
    correct = total = 0
    with torch.no_grad():
        for x, y in batches:
            pred = model(x).argmax(dim=-1)
            correct += int((pred == y).sum())
            total += int(y.numel())
    return correct / max(1, total)
