"""Progress reports and wall-clock limits shared by the search mappers.

A mapper calls `progress(Progress(...))` after each generation / batch of episodes; Progress
prints as one line, so `progress=print` is a usable callback. `Clock` is the time budget:
searches check it between evaluations, so a run overshoots by at most one evaluation.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Progress:
    """One progress report."""

    mapper: str            # "evolution", "rl"
    step: int              # generations / episodes done
    total: int             # the cap on steps
    elapsed_s: float
    evaluations: int       # distinct assignments evaluated so far
    best_feasible: bool
    best: str              # the best so far, in words

    def __str__(self) -> str:
        flag = "feasible" if self.best_feasible else "INFEASIBLE"
        return (f"[{self.mapper}] {self.step}/{self.total} {self.elapsed_s:6.1f}s "
                f"{self.evaluations} evaluated, best ({flag}): {self.best}")


class Clock:
    """Elapsed time against an optional limit (seconds)."""

    def __init__(self, limit: Optional[float] = None):
        if limit is not None and not limit > 0:
            raise ValueError(f"time_budget must be > 0 seconds, got {limit}")
        self.limit = limit
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def expired(self) -> bool:
        return self.limit is not None and self.elapsed() >= self.limit
