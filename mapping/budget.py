"""Budget: the global constraints a mapping must meet (sparsity, latency, FLOPs, accuracy proxy).

    Budget(sparsity=0.8)                    # prune >= 80% of all the problem's weights
    Budget(latency_us=9000)                 # sum of per-layer measured latencies <= 9 ms
    Budget(latency_us=9000, min_proxy=0.9)  # ... and the accuracy proxy stays >= 0.9

Every bound is optional; `None` means "not constrained". The totals are defined over all layers
of a Problem (see problem.py):
    sparsity   = pruned weights / weights of every layer (dense layers count with 0 pruned)
    latency_us = sum of the chosen candidates' measured latencies (the dense latency for DENSE)
    flops      = remaining effective FLOPs, sum of dense FLOPs x (1 - sparsity)
    proxy      = the accuracy proxy's score of the whole assignment (higher is better)

Which of them the search optimises is decided by the Problem (latency budget set: maximise the
proxy; otherwise minimise latency); the Budget only says what is allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

# Totals are sums of floats; a plan that meets a bound up to rounding meets it.
REL_TOL = 1e-9


def _pos(x):
    """max(x, 0) for a float or elementwise for an array, without importing numpy here."""
    return (x + abs(x)) * 0.5


def _number(name: str, value) -> Optional[float]:
    """`value` as a finite float (None stays None); a clear error otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Budget.{name} must be a number or None, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Budget.{name} must be finite, got {value}")
    return value


@dataclass(frozen=True)
class Totals:
    """What one complete assignment adds up to (proxy None = not evaluated)."""

    latency_us: float
    sparsity: float
    flops: float
    proxy: Optional[float] = None

    def to_dict(self) -> dict:
        return {"latency_us": self.latency_us, "sparsity": self.sparsity,
                "flops": self.flops, "proxy": self.proxy}


@dataclass(frozen=True)
class Budget:
    """Global bounds; `None` = unconstrained."""

    sparsity: Optional[float] = None     # global pruned fraction, >=
    latency_us: Optional[float] = None   # total measured latency, <=
    flops: Optional[float] = None        # remaining effective FLOPs, <=
    min_proxy: Optional[float] = None    # accuracy proxy score, >=

    def __post_init__(self):
        for name in ("sparsity", "latency_us", "flops", "min_proxy"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"Budget.sparsity must be in [0, 1), got {self.sparsity}")
        if self.latency_us is not None and self.latency_us <= 0:
            raise ValueError(f"Budget.latency_us must be > 0, got {self.latency_us}")
        if self.flops is not None and self.flops <= 0:
            raise ValueError(f"Budget.flops must be > 0, got {self.flops}")

    # -- checks --------------------------------------------------------------------------------
    def violations(self, totals: Totals) -> list:
        """One sentence per bound `totals` breaks ([] = within budget). The proxy bound is only
        checked when totals.proxy was evaluated."""
        out = []
        if self.sparsity is not None and totals.sparsity < self.sparsity - REL_TOL:
            out.append(f"sparsity {totals.sparsity:.4f} < budget {self.sparsity:.4f}")
        if self.latency_us is not None and \
                totals.latency_us > self.latency_us * (1 + REL_TOL):
            out.append(f"latency {totals.latency_us:.1f} us > budget {self.latency_us:.1f} us")
        if self.flops is not None and totals.flops > self.flops * (1 + REL_TOL):
            out.append(f"flops {totals.flops:.4g} > budget {self.flops:.4g}")
        if self.min_proxy is not None and totals.proxy is not None and \
                totals.proxy < self.min_proxy - REL_TOL * max(1.0, abs(self.min_proxy)):
            out.append(f"proxy {totals.proxy:.4f} < budget {self.min_proxy:.4f}")
        return out

    def excess(self, totals: Totals) -> float:
        """How far outside the budget, summed over bounds as relative amounts (0 = within,
        exactly when `violations` is empty). Lets the search rank two infeasible assignments:
        the one closer to the budget wins."""
        return float(self.excess_of(totals.latency_us, totals.sparsity, totals.flops,
                                    totals.proxy))

    def excess_of(self, latency_us, sparsity, flops, proxy=None):
        """`excess` on plain numbers or on numpy arrays of them (the search scores a whole
        layer's options at once); same tolerances as `violations`."""
        e = 0.0
        if self.sparsity is not None:
            e = e + _pos(self.sparsity - REL_TOL - sparsity)
        if self.latency_us is not None:
            e = e + _pos(latency_us / self.latency_us - 1.0 - REL_TOL)
        if self.flops is not None:
            e = e + _pos(flops / self.flops - 1.0 - REL_TOL)
        if self.min_proxy is not None and proxy is not None:
            scale = max(1.0, abs(self.min_proxy))
            e = e + _pos(self.min_proxy - REL_TOL * scale - proxy) / scale
        return e

    @property
    def is_empty(self) -> bool:
        return all(v is None for v in (self.sparsity, self.latency_us, self.flops,
                                       self.min_proxy))

    # -- data ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"sparsity": self.sparsity, "latency_us": self.latency_us, "flops": self.flops,
                "min_proxy": self.min_proxy}

    @classmethod
    def from_dict(cls, d: dict) -> "Budget":
        unknown = set(d) - {"sparsity", "latency_us", "flops", "min_proxy"}
        if unknown:
            raise ValueError(f"unknown budget field(s) {sorted(unknown)}")
        return cls(**d)

    def __str__(self) -> str:
        parts = []
        if self.sparsity is not None:
            parts.append(f"sparsity >= {self.sparsity:.3f}")
        if self.latency_us is not None:
            parts.append(f"latency <= {self.latency_us:.1f} us")
        if self.flops is not None:
            parts.append(f"flops <= {self.flops:.4g}")
        if self.min_proxy is not None:
            parts.append(f"proxy >= {self.min_proxy:.4f}")
        return ", ".join(parts) or "no budget"
