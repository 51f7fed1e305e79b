"""Synthetic mapping problems for the tests: real layer shapes, made-up but plausible costs.

No engine import: LayerSpecs are written out from the ResNet-50 layout, latencies come from a
simple roofline-ish model with seeded noise, and the accuracy proxy's `retained` table from a
block-size-aware formula. Tests derive every expectation from these tables (brute force, the
tables themselves), never from hard-coded numbers.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from mapping import (DENSE, Budget, Candidate, CostTable, LayerSpec, Measurement, Problem,
                     TableProxy, default_space)

TARGET = "synthetic:2t"


def conv(name, cin, cout, k, hw, stride=1, order=0, groups=1):
    return LayerSpec(name, "conv2d", cin, cout, (k, k), (stride, stride), (k // 2, k // 2),
                     groups=groups, input_hw=(hw, hw), order=order)


def linear(name, cin, cout, order):
    return LayerSpec(name, "linear", cin, cout, order=order)


def resnet50_specs() -> list:
    """The 54 conv / linear layers of ResNet-50 (torchvision v1.5 layout), 224x224 input."""
    specs = [conv("conv1", 3, 64, 7, 224, 2, order=0)]
    cin, hw = 64, 56
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for b in range(blocks):
            stride = 2 if (b == 0 and stage > 0) else 1
            pre = f"layer{stage + 1}.{b}"
            n = len(specs)
            specs.append(conv(f"{pre}.conv1", cin, width, 1, hw, order=n))
            specs.append(conv(f"{pre}.conv2", width, width, 3, hw, stride, order=n + 1))
            out_hw = hw // stride
            specs.append(conv(f"{pre}.conv3", width, width * 4, 1, out_hw, order=n + 2))
            if b == 0:
                specs.append(conv(f"{pre}.downsample.0", cin, width * 4, 1, hw, stride,
                                  order=n + 3))
            cin, hw = width * 4, out_hw
    specs.append(linear("fc", 2048, 1000, order=len(specs)))
    return specs


# Relative cost per kept weight of each sparse format (unstructured is load-bound).
EFFICIENCY = {1: 2.4, 2: 1.5, 4: 1.0, 8: 0.88, 16: 0.84, 32: 0.8}


def sparse_factor(spec: LayerSpec, cand: Candidate) -> float:
    """Sparse latency / dense latency predicted by the synthetic cost model."""
    eff = 0.92 if cand.scheme == "pattern" else EFFICIENCY.get(cand.block_elems, 0.8)
    if spec.op == "linear":
        eff *= 6.0          # batch-1 GEMV: sparse loses, as the README's FC layer did
    return (1.0 - cand.sparsity) * eff + 0.03


def synthetic_costs(specs, space, rng, target=TARGET, noise=0.05) -> CostTable:
    table = CostTable()
    for spec in specs:
        dense = 5.0 + spec.macs / 2.0e5           # us: a fixed cost + a throughput term
        table.put(target, spec.shape_key, DENSE.key, Measurement(dense, kernel="torch"))
        for cand in space.for_layer(spec)[1:]:
            us = dense * sparse_factor(spec, cand) * math.exp(rng.normal(0.0, noise))
            table.put(target, spec.shape_key, cand.key,
                      Measurement(us, kernel=f"f32_spmm_{cand.block_elems}__syn"))
    return table


def synthetic_retained(specs, space, rng) -> dict:
    """layer -> candidate key -> fraction of weight energy kept (bigger blocks keep less)."""
    out = {}
    for spec in specs:
        sensitivity = rng.uniform(0.8, 1.2)
        scores = {}
        for cand in space.for_layer(spec)[1:]:
            a = 0.30 if cand.scheme == "pattern" else 0.32 + 0.06 * math.log2(cand.block_elems)
            scores[cand.key] = (1.0 - cand.sparsity) ** (a * sensitivity)
        out[spec.name] = scores
    return out


def resnet50_problem(budget=None, seed=0, space=None, min_speedup=1.1) -> Problem:
    rng = np.random.default_rng(seed)
    specs = resnet50_specs()
    space = space or default_space()
    costs = synthetic_costs(specs, space, rng)
    proxy = TableProxy(synthetic_retained(specs, space, rng),
                       {s.name: s.params for s in specs})
    return Problem.from_space(TARGET, specs, space, costs, proxy,
                              budget or Budget(sparsity=0.8), min_speedup)


def small_problem(budget, seed=0, layers=5, sparsities=(0.5, 0.7, 0.9),
                  blocks=((1, 1), (4, 1))) -> Problem:
    """A few layers x a few candidates, small enough to brute-force."""
    rng = np.random.default_rng(seed)
    specs = [conv(f"l{i}", 64 * (1 + i % 2), 64 * (1 + (i + 1) % 2), 1 if i % 2 else 3, 28,
                  order=i + 1) for i in range(layers)]
    space = default_space(blocks=blocks, sparsities=sparsities, pattern=False)
    costs = synthetic_costs(specs, space, rng, noise=0.15)
    proxy = TableProxy(synthetic_retained(specs, space, rng), {s.name: s.params for s in specs})
    return Problem.from_space(TARGET, specs, space, costs, proxy, budget)


def brute_force(problem: Problem):
    """(rank, assignment) of the best assignment over every combination of allowed candidates."""
    names = problem.names
    best = None
    for combo in itertools.product(*(problem.allowed(n) for n in names)):
        a = dict(zip(names, combo))
        rank = problem.rank(problem.totals(a, with_proxy=problem.needs_proxy))
        if best is None or rank < best[0]:
            best = (rank, a)
    return best


def plan_assignment(plan) -> dict:
    """layer -> candidate key, from a Plan."""
    out = {}
    for c in plan:
        if c.scheme == "dense":
            out[c.layer] = DENSE.key
        else:
            out[c.layer] = Candidate(c.scheme, c.block, c.sparsity,
                                     c.backend, tuple(c.options.items())).key
    return out


def default_retained(cand: Candidate) -> float:
    a = 0.30 if cand.scheme == "pattern" else 0.32 + 0.06 * math.log2(cand.block_elems)
    return (1.0 - cand.sparsity) ** a


def table_problem(specs, latencies: dict, budget=None, min_speedup=1.1, unmeasured=None,
                  proxy=None) -> Problem:
    """A problem from hand-written tables. latencies: layer -> {candidate key: us} ("dense"
    required); the candidates offered are the keys listed plus `unmeasured` (layer -> [keys]),
    which get no measurement."""
    unmeasured = unmeasured or {}
    table = CostTable()
    candidates, retained = {}, {}
    by_name = {s.name: s for s in specs}
    for name, lat in latencies.items():
        spec = by_name[name]
        for key, us in lat.items():
            table.put(TARGET, spec.shape_key, key, Measurement(us, kernel=f"k:{key}"))
        keys = [k for k in lat if k != DENSE.key] + list(unmeasured.get(name, []))
        candidates[name] = [Candidate.from_key(k) for k in keys]
        retained[name] = {k: default_retained(Candidate.from_key(k)) for k in keys}
    return Problem(TARGET, specs, candidates, table, proxy or TableProxy(retained),
                   budget or Budget(), min_speedup)
