"""Index encoding of assignments for the search mappers, with vectorised totals and repair.

A genome is one int per layer: the index of the chosen candidate in `problem.allowed(layer)`
(0 = DENSE). Only allowed candidates can be encoded, so the search inherits the "never slower
than dense" guarantee. Latency, pruned weights and remaining FLOPs are kept as (layers x
options) arrays so the cheap budget bounds of a genome cost one fancy-indexed sum, and the
possibly expensive proxy is only evaluated for genomes already within those bounds. With int8
candidates the latency adds the domain changes between layers (mapping.domains), from a
(layers x options) bits table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..budget import Totals
from ..problem import Problem


@dataclass
class Evaluation:
    """A genome with its totals and rank (lower rank is better, see Problem.rank)."""

    genome: np.ndarray
    totals: Totals
    rank: tuple
    excess: float          # 0 = within budget
    born: int = 0          # generation / episode that first produced it

    @property
    def feasible(self) -> bool:
        return self.excess <= 0

    @property
    def key(self) -> bytes:
        return self.genome.tobytes()


class GenomeSpace:
    """The problem's allowed candidates as arrays."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.options = [problem.allowed(n) for n in problem.names]
        self.sizes = np.array([len(o) for o in self.options], dtype=np.int64)
        L, K = len(self.options), int(self.sizes.max())
        # Padding is never indexed (genomes stay below sizes); inf makes a bug loud.
        self.lat = np.full((L, K), np.inf)
        self.pruned = np.zeros((L, K))
        self.flops = np.full((L, K), np.inf)
        self.is8 = np.zeros((L, K), dtype=bool)
        for i, (name, opts) in enumerate(zip(problem.names, self.options)):
            for j, cand in enumerate(opts):
                self.is8[i, j] = cand.is_int8
                self.lat[i, j] = problem.layer_latency(name, cand)
                self.pruned[i, j] = problem.pruned_weights(name, cand)
                self.flops[i, j] = problem.remaining_flops(name, cand)
        self.rows = np.arange(L)
        self.total_params = float(problem.total_params)
        self.movable = np.flatnonzero(self.sizes > 1)
        self.conv = problem.conversions.indexed(problem.names) \
            if len(problem.conversions) and self.is8.any() else None

    @property
    def n_layers(self) -> int:
        return len(self.options)

    # -- encoding ------------------------------------------------------------------------------
    def decode(self, genome) -> dict:
        return {n: self.options[i][int(g)] for i, (n, g) in
                enumerate(zip(self.problem.names, genome))}

    def encode(self, assignment: dict) -> np.ndarray:
        """The genome of an assignment of allowed candidates (ValueError otherwise)."""
        out = np.zeros(self.n_layers, dtype=np.int64)
        for i, (name, opts) in enumerate(zip(self.problem.names, self.options)):
            keys = [c.key for c in opts]
            cand = assignment[name]
            if cand.key not in keys:
                raise ValueError(f"layer {name}: {cand.key} is not allowed")
            out[i] = keys.index(cand.key)
        return out

    def random(self, rng: np.random.Generator) -> np.ndarray:
        return (rng.random(self.n_layers) * self.sizes).astype(np.int64)

    # -- totals --------------------------------------------------------------------------------
    def sums(self, genome) -> tuple:
        """(latency us, pruned weights, remaining flops)."""
        lat = float(self.lat[self.rows, genome].sum())
        if self.conv is not None:
            lat += self.conv.cost(self.is8[self.rows, genome])
        return (lat,
                float(self.pruned[self.rows, genome].sum()),
                float(self.flops[self.rows, genome].sum()))

    def totals(self, genome, proxy: Optional[float] = None) -> Totals:
        lat, pruned, flops = self.sums(genome)
        return Totals(lat, pruned / self.total_params, flops, proxy)

    def cheap_excess(self, genome) -> float:
        """Budget excess over the bounds that need no proxy."""
        return self.problem.budget.excess(self.totals(genome))

    # -- repair --------------------------------------------------------------------------------
    def repair(self, genome, rng: np.random.Generator, max_steps: int) -> tuple:
        """(genome, ok): randomised coordinate descent on the cheap excess. Each step picks a
        random layer and moves it to a random option that lowers the excess (random rather
        than greedy so repaired genomes do not all collapse onto the most-pruned corner)."""
        g = np.array(genome, dtype=np.int64)
        lat, pruned, flops = self.sums(g)
        budget = self.problem.budget
        exc = float(budget.excess_of(lat, pruned / self.total_params, flops))
        if self.movable.size == 0:
            return g, exc <= 0
        for _ in range(max_steps):
            if exc <= 0:
                break
            i = int(self.movable[rng.integers(self.movable.size)])
            k, cur = int(self.sizes[i]), int(g[i])
            nl = lat - self.lat[i, cur] + self.lat[i, :k]
            npr = pruned - self.pruned[i, cur] + self.pruned[i, :k]
            nf = flops - self.flops[i, cur] + self.flops[i, :k]
            ne = budget.excess_of(nl, npr / self.total_params, nf) + np.zeros(k)
            better = np.flatnonzero(ne < exc - 1e-15)
            if better.size == 0:
                continue
            j = int(better[rng.integers(better.size)])
            g[i] = j
            lat, pruned, flops, exc = float(nl[j]), float(npr[j]), float(nf[j]), float(ne[j])
        return g, exc <= 0


class Evaluator:
    """Memoised genome -> Evaluation. The proxy runs only for genomes within the cheap bounds
    (and only if the ranking needs it, unless always_proxy: the RL reward does)."""

    def __init__(self, space: GenomeSpace, always_proxy: bool = False):
        self.space = space
        self.problem = space.problem
        self.want_proxy = always_proxy or self.problem.needs_proxy
        self.memo: dict = {}
        self.proxy_evals = 0        # proxy calls made (distinct genomes within the bounds)

    def __call__(self, genome, born: int = 0) -> Evaluation:
        key = np.asarray(genome, dtype=np.int64).tobytes()
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        g = np.array(genome, dtype=np.int64)
        totals = self.space.totals(g)
        if self.want_proxy and self.problem.budget.excess(totals) == 0:
            totals = Totals(totals.latency_us, totals.sparsity, totals.flops,
                            self.problem.proxy(self.space.decode(g)))
            self.proxy_evals += 1
        ev = Evaluation(g, totals, self.problem.rank(totals),
                        self.problem.budget.excess(totals), born)
        self.memo[key] = ev
        return ev

    @property
    def evaluations(self) -> int:
        return len(self.memo)
