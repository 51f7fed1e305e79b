"""EvolutionMapper: MetaPruning-style evolutionary search over per-layer candidates.

Genome = one allowed-candidate index per layer (genome.py). The population starts from the
rule plan, the uniform plans and dense (seeds.py), topped up with random genomes; each
generation breeds `population` children by tournament selection, uniform crossover and
per-gene mutation, and keeps the best `population` distinct genomes of parents + children
((mu + lambda) truncation, so the best never gets lost).

Constraint handling: a child outside the cheap bounds (latency, sparsity, FLOPs) is repaired
BEFORE the proxy is evaluated (randomised coordinate descent, genome.py); one that cannot be
repaired is kept as an infeasible member ranked by how far outside the budget it is, and its
proxy is never evaluated. Both are counted in the plan's meta["search"]. Ranking is
Problem.rank: feasible first, then the objective (max proxy under a latency budget, otherwise
min latency).

Reproducibility: everything random comes from one numpy Generator seeded with `seed`; with the
generations cap as the binding limit the same seed gives the same plan. `time_budget` is a
safety net: when it binds, how far the search got depends on the machine.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from ..plan import Plan
from ..problem import Problem
from .base import SearchMapper
from .genome import Evaluation, Evaluator, GenomeSpace
from .seeds import seed_assignments


@dataclass(frozen=True)
class EvolutionConfig:
    population: int = 40
    generations: int = 100
    time_budget: Optional[float] = None   # seconds; None = generations only
    tournament: int = 3
    crossover: float = 0.9                # P(child = uniform crossover of two parents)
    mutation: Optional[float] = None      # per-gene probability; None = 1 / layers
    repair_steps: Optional[int] = None    # None = 4 x layers
    seed: int = 0
    seed_plans: bool = True               # start from rule / uniform / dense plans

    def __post_init__(self):
        if self.population < 2 or self.generations < 0 or self.tournament < 1:
            raise ValueError("EvolutionConfig: population >= 2, generations >= 0 and "
                             "tournament >= 1 are required")
        if not 0.0 <= self.crossover <= 1.0:
            raise ValueError("EvolutionConfig.crossover must be in [0, 1]")
        if self.mutation is not None and not 0.0 < self.mutation <= 1.0:
            raise ValueError("EvolutionConfig.mutation must be in (0, 1]")


@dataclass
class _Stats:
    generations: int = 0
    children: int = 0
    over_budget: int = 0       # children outside the cheap bounds before evaluation
    repaired: int = 0          # ... brought back within them by repair
    unrepaired: int = 0        # ... kept as infeasible members (proxy never evaluated)
    stopped: str = "generations"


class EvolutionMapper(SearchMapper):
    """Evolutionary search (see the module docstring). EvolutionMapper(config, progress,
    **overrides): overrides replace config fields; progress(Progress) after each generation."""

    name = "evolution"
    config_type = EvolutionConfig
    steps = "generations"

    def _map(self, problem: Problem) -> Plan:
        cfg = self.config
        clock, rng, space, evaluate = self._start(problem)
        stats = _Stats()
        pop, seeds = self._initial(space, evaluate, rng)
        for gen in range(1, cfg.generations + 1):
            if clock.expired():
                stats.stopped = "time"
                break
            children = self._breed(pop, gen, space, evaluate, rng, clock, stats)
            pop = self._select(pop + children)
            stats.generations = gen
            self._report(gen, pop[0], clock, evaluate)
            if len(children) < cfg.population:      # the clock cut this generation short
                stats.stopped = "time"
                break
        return self._plan(problem, space, evaluate, pop[0], seeds, stats, clock)

    # -- population ----------------------------------------------------------------------------
    def _initial(self, space: GenomeSpace, evaluate: Evaluator, rng) -> tuple:
        """Seeds (repaired if they miss the cheap bounds), then random repaired genomes."""
        seeds = {}
        members = []
        if self.config.seed_plans:
            for name, assignment in seed_assignments(space.problem):
                g = space.encode(assignment)
                seeds[g.tobytes()] = name
                members.append(evaluate(g))
                if space.cheap_excess(g) > 0:
                    fixed, _ = space.repair(g, rng, self._repair_steps(space))
                    members.append(evaluate(fixed))
        # Bounded: a problem with few distinct genomes may not fill the population.
        for _ in range(4 * self.config.population):
            if len({m.key for m in members}) >= self.config.population:
                break
            g, _ = space.repair(space.random(rng), rng, self._repair_steps(space))
            members.append(evaluate(g))
        return self._select(members), seeds

    def _select(self, members: list) -> list:
        """The best `population` distinct genomes; ties keep the earlier one (deterministic)."""
        seen, out = set(), []
        for m in sorted(members, key=lambda m: m.rank):
            if m.key not in seen:
                seen.add(m.key)
                out.append(m)
        return out[: self.config.population]

    def _breed(self, pop, gen, space, evaluate, rng, clock, stats) -> list:
        children = []
        for _ in range(self.config.population):
            if clock.expired():
                break
            g = self._child(pop, space, rng)
            stats.children += 1
            if space.cheap_excess(g) > 0:
                stats.over_budget += 1
                g, ok = space.repair(g, rng, self._repair_steps(space))
                if ok:
                    stats.repaired += 1
                else:
                    stats.unrepaired += 1
            children.append(evaluate(g, born=gen))
        return children

    def _child(self, pop: list, space: GenomeSpace, rng) -> np.ndarray:
        a = self._tournament(pop, rng)
        if rng.random() < self.config.crossover and len(pop) > 1:
            b = self._tournament(pop, rng)
            take = rng.random(space.n_layers) < 0.5
            child = np.where(take, a.genome, b.genome)
        else:
            child = a.genome.copy()
        return self._mutate(child, space, rng)

    def _tournament(self, pop: list, rng) -> Evaluation:
        # pop is sorted best first, so the winner is the smallest index drawn.
        k = min(self.config.tournament, len(pop))
        return pop[int(rng.choice(len(pop), size=k, replace=False).min())]

    def _mutate(self, g: np.ndarray, space: GenomeSpace, rng) -> np.ndarray:
        if space.movable.size == 0:
            return g
        p = self.config.mutation or 1.0 / space.n_layers
        hit = (rng.random(space.n_layers) < p) & (space.sizes > 1)
        if not hit.any():
            # At least one change, or many children would be clones of their parent.
            hit[int(space.movable[rng.integers(space.movable.size)])] = True
        for i in np.flatnonzero(hit):
            # A different option of the same layer, uniformly.
            j = int(rng.integers(space.sizes[i] - 1))
            g[i] = j + (j >= g[i])
        return g

    def _repair_steps(self, space: GenomeSpace) -> int:
        return self.config.repair_steps or 4 * space.n_layers

    # -- output --------------------------------------------------------------------------------
    def _plan(self, problem, space, evaluate, best, seeds, stats, clock) -> Plan:
        origin = seeds.get(best.key)
        where = f"seed plan '{origin}'" if origin and best.born == 0 else \
            f"gen {best.born} of {stats.generations}"
        head = (f"search: evolution {where} ({evaluate.evaluations} genomes evaluated, "
                f"{stats.over_budget} over budget before evaluation)")
        search = asdict(stats)
        search.update(evaluations=evaluate.evaluations, proxy_evaluations=evaluate.proxy_evals,
                      elapsed_s=clock.elapsed(), best_generation=best.born,
                      best_from_seed=origin if best.born == 0 else None,
                      config=asdict(self.config))
        return self._to_plan(problem, space, best, head, search)
