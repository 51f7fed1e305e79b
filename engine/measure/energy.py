"""Retained weight energy: the accuracy proxy the mappers weigh against measured latency.

    energy = retained_energy(model_weights(model, specs), specs, default_space())
    energy["layer1.0.conv1"]["block4x1@0.80/native"]    # 0.63: the mask keeps 63% of sum w^2

For each layer and candidate: the fraction of the layer's squared-weight energy (sum of w^2)
that the candidate's keep-mask keeps; DENSE is 1.0. An int8 candidate keeps the masked
weight's energy minus that of its int8 rounding error (per output channel, symmetric): the
data-free proxy sees the weights' quantization only; activations' needs data (DataProxy). The masks are the ones the profilers time
(engine.measure.masks.MaskCache, one per (layer, scheme, block, sparsity): backends share
them), so pass the profiler's `masks` to build each mask once for both.
"""
from __future__ import annotations

from typing import Optional, Union

from mapping import CandidateSpace, LayerSpec
from mapping.space import DENSE_KEY

from ..errors import ConfigError
from .masks import MaskCache, check_weight, mask_problem


def _candidates_for(spec: LayerSpec, candidates) -> list:
    if isinstance(candidates, dict):
        return list(candidates.get(spec.name, []))
    if isinstance(candidates, CandidateSpace):
        listed = candidates.for_layer(spec)
    else:
        listed = list(candidates)
    return [c for c in listed if mask_problem(spec, c) is None]


def retained_energy(weights: dict, specs: list,
                    candidates: Union[dict, CandidateSpace, list],
                    masks: Optional[MaskCache] = None, importance="l2") -> dict:
    """{layer: {candidate key: kept fraction of sum(w^2)}}, DENSE always 1.0.

    weights: layer name -> torch weight (every spec needs one: energy is about real weights).
    candidates: layer name -> [Candidate] (as given to ensure_costs: used as is), or a
    CandidateSpace / list of Candidates (filtered per layer by the applicability rules)."""
    masks = masks if masks is not None else MaskCache(importance)
    out: dict = {}
    for spec in specs:
        if spec.name not in weights:
            raise ConfigError(f"retained_energy: no weight for layer {spec.name!r} (pass every "
                              f"spec's weight; engine.measure.model_weights builds the dict)")
        w = check_weight(spec, weights[spec.name]).double()
        sq = w * w
        total = float(sq.sum())
        per = {DENSE_KEY: 1.0}
        for cand in _candidates_for(spec, candidates):
            if cand.is_dense or cand.key in per:
                continue
            m = masks.mask(spec.name, weights[spec.name], cand)
            kept = float(sq[m].sum())
            if cand.is_int8:
                kept -= _rounding_energy(w * m)
            per[cand.key] = kept / total if total > 0 else 1.0
        out[spec.name] = per
    return out


def _rounding_energy(w) -> float:
    """sum((w - q(w))^2) of w quantized to int8 per output channel (symmetric, 127 levels)."""
    flat = w.reshape(w.shape[0], -1)
    scale = (flat.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-30)
    q = (flat / scale).round().clamp(-127, 127) * scale
    return float(((flat - q) ** 2).sum())


__all__ = ["retained_energy"]
