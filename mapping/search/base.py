"""SearchMapper: what the evolutionary and the RL mapper share around their search loops.

A config dataclass with keyword overrides (`EvolutionMapper(generations=50, seed=1)`), BLAS
kept single-threaded while a search runs (threads.py), the start of a run (clock, seeded
generator, genome space, evaluator), one progress line per generation / batch of episodes, and
the Plan of the best genome with a reason per layer.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional

import numpy as np

from ..plan import Plan
from ..problem import Problem
from .genome import Evaluation, Evaluator, GenomeSpace
from .progress import Clock, Progress
from .threads import blas_single_thread


class SearchMapper:
    """Base of EvolutionMapper and RLMapper; subclasses set `name`, `config_type`, `steps`
    (the config field capping the work) and implement `_map`."""

    name = ""
    config_type: type = type(None)
    steps = ""

    def __init__(self, config=None, progress: Optional[Callable[[Progress], None]] = None,
                 **overrides):
        self.config = replace(config or self.config_type(), **overrides)
        self.progress = progress

    def map(self, problem: Problem) -> Plan:
        with blas_single_thread():
            return self._map(problem)

    def _map(self, problem: Problem) -> Plan:
        raise NotImplementedError

    def _start(self, problem: Problem, always_proxy: bool = False) -> tuple:
        """(clock, rng, genome space, evaluator) of a new run."""
        clock = Clock(self.config.time_budget)
        rng = np.random.default_rng(self.config.seed)
        space = GenomeSpace(problem)
        return clock, rng, space, Evaluator(space, always_proxy=always_proxy)

    def _report(self, step: int, best: Evaluation, clock: Clock, evaluate: Evaluator) -> None:
        if self.progress is None:
            return
        t = best.totals
        proxy = f", proxy {t.proxy:.4f}" if t.proxy is not None else ""
        self.progress(Progress(self.name, step, getattr(self.config, self.steps),
                               clock.elapsed(), evaluate.evaluations, best.feasible,
                               f"latency {t.latency_us:.1f} us, sparsity {t.sparsity:.3f}"
                               f"{proxy}"))

    def _to_plan(self, problem: Problem, space: GenomeSpace, best: Evaluation, head: str,
                 search: dict) -> Plan:
        """The best genome's Plan: every reason starts with `head`; meta["search"] = search."""
        assignment = space.decode(best.genome)
        reasons = {n: f"{head}, {problem.describe(n, c)}" for n, c in assignment.items()}
        return problem.to_plan(assignment, self.name, reasons, seed=self.config.seed,
                               meta={"search": search})
