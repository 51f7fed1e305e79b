"""Candidate masks: what a mapping.Candidate means as a keep-mask, built with engine.schemes.

One cache serves the profilers and retained_energy: a mask depends on the layer's weight and on
(scheme, block, sparsity, options), never on the backend, so "block4x1@0.80/native" and
"block4x1@0.80/tir" share one mask, and the energy of a candidate is that of the mask that was
timed.

`mask_problem` says why the engine cannot build a candidate for a layer (None if it can):
mapping's applicability rules plus the engine's own (the scheme's `check`, pattern pruning's
5/9 floor, N:M's fixed sparsity). Candidates filtered with it are the ones worth measuring.
"""
from __future__ import annotations

import zlib
from typing import Optional

import torch

from mapping import Candidate, LayerSpec, why_not

from ..errors import ConfigError
from ..runtime.packing import group_rows_for
from ..schemes import get_scheme
from ..schemes.options import candidate_options
from .specs import spec_layer_info, weight_shape


def group_rows(cand: Candidate) -> int:
    """Kernel group height the lowering gives a candidate's layer (engine.api: the block's rows,
    at most 8 and dividing them; one row for the unblocked schemes)."""
    return group_rows_for(int(cand.block[0])) if cand.block else 1


def mask_problem(spec: LayerSpec, cand: Candidate) -> Optional[str]:
    """Why the engine cannot build `cand`'s mask for `spec`, or None."""
    if not cand.pruned:
        return why_not(spec, cand)
    why = why_not(spec, cand)
    if why is not None:
        return why
    try:
        scheme = get_scheme(cand.scheme, **candidate_options(cand))
    except ConfigError as e:
        return str(e)
    why = scheme.check(spec_layer_info(spec))
    if why is not None:
        return why
    floor = getattr(scheme, "min_sparsity", 0.0)
    if cand.sparsity < floor - 1e-9:
        return f"{cand.scheme} prunes at least {floor:.3f} of a layer; {cand.key} asks less"
    fixed = getattr(scheme, "sparsity", None)
    if cand.scheme == "nm" and abs(fixed - cand.sparsity) > 0.005:
        return f"{cand.key}: N:M {scheme.n}:{scheme.m} has sparsity {fixed:.3f}"
    return None


class MaskCache:
    """Keep-masks per (layer, scheme, block, sparsity, options), built once.

    The cache trusts a layer name to stand for one weight for the cache's lifetime."""

    def __init__(self, importance="l2"):
        self.importance = importance
        self._masks: dict = {}

    @staticmethod
    def key(layer: str, cand: Candidate) -> tuple:
        return (layer, cand.scheme, cand.block, round(cand.sparsity, 6), cand.options)

    def put(self, layer: str, cand: Candidate, mask: torch.Tensor) -> None:
        """Use `mask` for (layer, cand) (a mask made elsewhere, e.g. the pipeline's own)."""
        self._masks[self.key(layer, cand)] = mask.to(torch.bool)

    def mask(self, layer: str, weight: torch.Tensor, cand: Candidate) -> torch.Tensor:
        """Bool keep-mask shaped like `weight` (all True for DENSE and dense+int8)."""
        if not cand.pruned:
            return torch.ones_like(weight, dtype=torch.bool)
        k = self.key(layer, cand)
        m = self._masks.get(k)
        if m is None:
            scheme = get_scheme(cand.scheme, **candidate_options(cand))
            # N:M fixes its own sparsity; the candidate's is its 2-digit rounding
            sparsity = None if cand.scheme == "nm" else cand.sparsity
            try:
                m = scheme.mask(weight.detach().float(), sparsity, self.importance)
            except ConfigError as e:
                raise ConfigError(f"layer {layer!r}, candidate {cand.key}: {e}") from None
            self._masks[k] = m
        return m

    def __len__(self) -> int:
        return len(self._masks)


def measurable(profiler, spec: LayerSpec, wanted: dict):
    """(key, candidate) of the sparse candidates in `wanted` the profiler can run; the others
    go to profiler.notes with the reason."""
    for key, cand in wanted.items():
        if cand.is_dense:
            continue
        why = profiler.why_not(spec, cand)
        if why is not None:
            profiler.notes.append(f"{spec.name} ({spec.shape_key}) {key}: left out: {why}")
            continue
        yield key, cand


def weight_for(spec: LayerSpec, weights: dict, seed: int = 0) -> tuple:
    """(mask-cache layer id, float32 weight) for a spec: its real weight when `weights` has
    one, else a random one seeded by the spec's shape (so stand-in timings are reproducible;
    the id then names the shape, not the layer)."""
    w = weights.get(spec.name)
    if w is not None:
        return spec.name, check_weight(spec, w)
    g = torch.Generator().manual_seed(zlib.crc32(spec.shape_key.encode()) + seed)
    shape = weight_shape(spec)
    fan_in = max(1, shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1))
    return f"random:{spec.shape_key}", torch.randn(shape, generator=g) / fan_in ** 0.5


def check_weight(spec: LayerSpec, weight: torch.Tensor) -> torch.Tensor:
    """`weight` as float32, or ConfigError naming the layer when its shape is not the spec's."""
    want = weight_shape(spec)
    if tuple(weight.shape) != want:
        raise ConfigError(f"layer {spec.name!r}: weight has shape {tuple(weight.shape)}, its "
                          f"spec needs {want}")
    return weight.detach().float().cpu()
