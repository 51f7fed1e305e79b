"""Accuracy proxies: how much of the model's accuracy an assignment is expected to keep.

A proxy is any object with `score(assignment) -> float` (higher is better), where assignment maps
every layer name of a Problem to its Candidate. The mappers never look inside it, so the engine
can inject anything from a per-layer table to a held-out evaluation:

    TableProxy(retained)          # weighted mean of a per-layer, per-candidate score
                                  # (engine: the fraction of weight energy the mask keeps)
    CallableProxy(evaluate)       # any callable, e.g. accuracy after BN recalibration,
                                  # memoised on the assignment so the search never pays twice
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Protocol

from .space import DENSE_KEY


class AccuracyProxy(Protocol):
    """Scores a complete assignment {layer name: Candidate}; higher is better."""

    def score(self, assignment: dict) -> float:
        ...


def assignment_key(assignment: dict) -> tuple:
    """A hashable name for an assignment: (layer, candidate key) pairs in layer order."""
    return tuple(sorted((layer, cand.key) for layer, cand in assignment.items()))


class TableProxy:
    """Weighted mean over layers of a per-layer, per-candidate score.

    retained: layer -> {candidate key -> score}; DENSE scores 1.0 unless listed. weights: layer
    -> weight (None = every layer counts the same; the engine may pass parameter counts). A
    (layer, candidate) the table does not list is an error, not a silent guess: a missing entry
    means the engine did not compute it, and a made-up score would steer the search.
    """

    def __init__(self, retained: dict, weights: Optional[dict] = None):
        self.retained = {layer: dict(scores) for layer, scores in retained.items()}
        if weights is not None:
            bad = {k: w for k, w in weights.items() if not w >= 0}
            if bad:
                raise ValueError(f"TableProxy weights must be >= 0, got {bad}")
            if sum(weights.values()) <= 0:
                raise ValueError("TableProxy weights sum to 0")
        self.weights = dict(weights) if weights is not None else None

    def layer_score(self, layer: str, cand) -> float:
        scores = self.retained.get(layer, {})
        if cand.key in scores:
            return float(scores[cand.key])
        if cand.key == DENSE_KEY:
            return 1.0
        raise KeyError(f"TableProxy has no score for layer {layer!r} candidate {cand.key!r}")

    def weight(self, layer: str) -> float:
        if self.weights is None:
            return 1.0
        if layer not in self.weights:
            raise KeyError(f"TableProxy has no weight for layer {layer!r}")
        return float(self.weights[layer])

    def score(self, assignment: dict) -> float:
        total = wsum = 0.0
        for layer, cand in assignment.items():
            w = self.weight(layer)
            total += w * self.layer_score(layer, cand)
            wsum += w
        if wsum <= 0:
            raise ValueError("TableProxy: the assignment's layers have zero total weight")
        return total / wsum


class CallableProxy:
    """Wraps `fn(assignment) -> float`, memoised on the assignment's candidate keys.

    `calls` counts the evaluations fn actually ran (the expensive ones), `hits` the ones served
    from the cache; the search reports both.
    """

    def __init__(self, fn: Callable[[dict], float], cache: bool = True):
        if not callable(fn):
            raise TypeError(f"CallableProxy needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.cache = cache
        self._memo: dict = {}
        self.calls = 0
        self.hits = 0

    def score(self, assignment: dict) -> float:
        key = assignment_key(assignment) if self.cache else None
        if key is not None and key in self._memo:
            self.hits += 1
            return self._memo[key]
        value = float(self.fn(dict(assignment)))
        self.calls += 1
        if not math.isfinite(value):
            # A NaN would compare false with everything and silently corrupt every ranking.
            raise ValueError(f"accuracy proxy returned {value}")
        if key is not None:
            self._memo[key] = value
        return value
