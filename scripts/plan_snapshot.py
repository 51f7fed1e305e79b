"""Plan snapshot: the plans every mapper makes for every zoo model from a FIXED cost table.

    python scripts/plan_snapshot.py --out plans.json                 # every zoo model
    python scripts/plan_snapshot.py --models resnet18_cifar --out p.json
    python scripts/plan_snapshot.py --diff before.json after.json   # exit 1 if they differ
    python scripts/plan_snapshot.py --out p.json --energy-cache energy.json   # reuse the proxy

What it is for: a refactoring of mapping/ must not change a single plan. Timings would make the
plans move from run to run, so the costs here are synthetic and deterministic; everything else
is built the way engine.pipeline.automap.build_problem builds it:

1. layers: engine.measure.model_specs at batch 1 and zoo.input_shape, weights from
   model_weights (each model built after torch.manual_seed(0));
2. candidates: mapping.default_space for the space ("native" or "native+tir"), filtered per
   layer by engine.measure.runnable_candidates with a profiler whose why_not is the engine's
   own (engine.measure.masks.mask_problem), measured through engine.measure.profile_costs;
3. costs: `SyntheticProfiler.measure`, a roofline-ish model of the spec's MACs and the
   candidate's scheme / block / sparsity / backend with noise seeded by (shape, candidate), so
   some candidates beat dense and some lose, batch-1 linear layers lose on the native kernel
   and win on "tir", and convs on "tir" sometimes beat their native twin;
4. proxy: TableProxy of engine.measure.retained_energy (the kept-weight-energy proxy), one
   mask at a time (the masks of VGG-16's 25088x4096 layer would not fit in memory together);
5. budget: sparsity 0.8 and min_proxy "reference" (the proxy of block 4x1 at 0.8 on every
   layer offering it, engine.pipeline.automap.reference_assignment), min_speedup 1.1.

Then it runs the rule mapper (also with the proxy behind a CallableProxy, "rule_probed", so
that proxy-guard and proxy-spend take their probe path), the evolution mapper and the RL
mapper with fixed seeds and generation / episode counts (no time budget: deterministic), and
the best uniform plan, and writes per model / space / mapper the choices (layer, scheme, block,
sparsity, backend, kernel, reason) and the plan's meta without wall-clock fields.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import zoo  # noqa: E402
from engine.measure import (MaskCache, mask_problem, model_specs, model_weights,  # noqa: E402
                            profile_costs, retained_energy)
from engine.pipeline.automap import reference_assignment  # noqa: E402
from mapping import (Budget, CallableProxy, Candidate, CostTable, Measurement,  # noqa: E402
                     Problem, RuleMapper, TableProxy, best_uniform, default_space)
from mapping.search import EvolutionMapper, RLMapper  # noqa: E402
from mapping.space import DENSE_KEY  # noqa: E402

TARGET = "synthetic/plan-snapshot"
SPACES = {"native": ("native",), "native+tir": ("native", "tir")}
ALL_BACKENDS = ("native", "tir")
BIG_LAYER = 4_000_000    # weights above which masks are built (and dropped) one at a time
SPARSITY = 0.8
REFERENCE = Candidate("block", (4, 1), SPARSITY)
MIN_SPEEDUP = 1.1
SEED = 0
# Relative cost per kept weight of each native block size (unstructured is load-bound).
EFFICIENCY = {1: 2.4, 2: 1.5, 4: 1.0, 8: 0.88, 16: 0.84, 32: 0.8}
CALL_US = 3.0          # fixed cost of one sparse kernel call: small layers do not win
META_DROPPED = ("space", "elapsed_s")   # the candidate-key list (long) and wall clock


def _rng(*parts) -> np.random.Generator:
    """A generator seeded by what is drawn for (never Python's salted hash)."""
    return np.random.default_rng(zlib.crc32("|".join(map(str, parts)).encode()))


def dense_us(spec) -> float:
    return 5.0 + spec.macs / 2.0e5


def sparse_us(spec, cand: Candidate) -> float:
    """The synthetic latency of a sparse candidate on a layer shape."""
    rng = _rng(spec.shape_key, cand.key)
    kept = 1.0 - cand.sparsity
    eff = 0.92 if cand.scheme == "pattern" else EFFICIENCY.get(cand.block_elems, 0.8)
    factor = kept * eff + 0.03
    if spec.op == "linear" and spec.batch == 1:
        # Batch-1 GEMV: the native SpMM loses to dense, the generated GEMV wins.
        factor = factor * 6.0 if cand.backend == "native" else kept * 1.1 + 0.08
    elif cand.backend == "tir":
        factor *= math.exp(rng.normal(0.15, 0.25))
    factor *= math.exp(rng.normal(0.0, 0.08))
    return dense_us(spec) * factor + CALL_US


def dense_kernel(spec) -> str:
    """Which dense kernel "measured" fastest: torch, the native kernel or a generated one."""
    return ("torch", "f32_gemm_8x8__native", "tir_dense_gemm")[zlib.crc32(
        spec.shape_key.encode()) % 3]


class SyntheticProfiler:
    """A mapping.Profiler whose measurements are the synthetic cost model above."""

    target = TARGET

    def why_not(self, spec, cand):
        return mask_problem(spec, cand)

    def measure(self, spec, candidates: list) -> dict:
        out = {}
        for cand in candidates:
            if cand.is_dense:
                out[DENSE_KEY] = Measurement(dense_us(spec), kernel=dense_kernel(spec),
                                             source="synthetic", when=1.0)
            else:
                out[cand.key] = Measurement(sparse_us(spec, cand),
                                            kernel=f"syn_{cand.key}", source="synthetic",
                                            when=1.0)
        return out


def energy(weights: dict, specs: list, cands: dict) -> dict:
    """engine.measure.retained_energy, a layer at a time (one mask at a time for layers above
    BIG_LAYER weights), so that memory holds one layer's masks at most."""
    out: dict = {}
    for spec in specs:
        groups = [cands[spec.name]]
        if spec.params > BIG_LAYER:
            by_mask: dict = {}
            for c in cands[spec.name]:
                by_mask.setdefault(MaskCache.key(spec.name, c), []).append(c)
            groups = list(by_mask.values())
        per = out.setdefault(spec.name, {})
        for group in groups:
            got = retained_energy(weights, [spec], {spec.name: group}, masks=MaskCache())
            per.update(got[spec.name])
    return out


def proxy_for(table: dict, cands: dict) -> TableProxy:
    """The TableProxy automap builds for these candidates: `table` (energy over every space)
    cut down to the candidates this problem offers."""
    return TableProxy({name: {k: v for k, v in table[name].items()
                              if k == DENSE_KEY or k in {c.key for c in cands[name]}}
                       for name in cands})


def build_model(name: str) -> tuple:
    """(specs, weights) of zoo model `name` at batch 1."""
    torch.manual_seed(SEED)
    model = zoo.get(name).eval()
    x = torch.randn(zoo.input_shape(name))
    specs = model_specs(model, (x,))
    return specs, model_weights(model, specs)


def build_problems(specs: list, weights: dict, backends: tuple, energies: dict) -> tuple:
    """(problem, probed): the Problem engine.pipeline.automap.build_problem makes, with the
    synthetic profiler and an in-memory table, and the same with the proxy behind a
    CallableProxy (so the rule mapper's global rules take their probe path: one full
    evaluation per move).
    energies: a per-model cache, {"all": retained energy of every space's candidates}."""
    space = default_space(backends=backends)
    table, cands, _ = profile_costs(SyntheticProfiler(), specs, space, CostTable(),
                                    progress=False)
    if "all" not in energies:
        every = default_space(backends=ALL_BACKENDS)
        _, all_cands, _ = profile_costs(SyntheticProfiler(), specs, every, CostTable(),
                                        progress=False)
        energies["all"] = energy(weights, specs, all_cands)
    proxy = proxy_for(energies["all"], cands)
    ref_proxy = proxy.score(reference_assignment(specs, cands, REFERENCE))
    budget = Budget(sparsity=SPARSITY, min_proxy=ref_proxy)
    return (Problem(TARGET, specs, cands, table, proxy, budget, MIN_SPEEDUP),
            Problem(TARGET, specs, cands, table, CallableProxy(proxy.score), budget,
                    MIN_SPEEDUP))


def mappers(generations: int, episodes: int) -> dict:
    """name -> run(problem, probed) -> Plan or None, all deterministic."""
    return {
        "rule": lambda p, q: RuleMapper().map(p),
        "rule_probed": lambda p, q: RuleMapper().map(q),
        "evolution": lambda p, q: EvolutionMapper(generations=generations, seed=SEED).map(p),
        "rl": lambda p, q: RLMapper(episodes=episodes, seed=SEED).map(p),
        "best_uniform": lambda p, q: best_uniform(p),
    }


def _clean(value):
    """A plan's meta without wall-clock fields, JSON-ready (tuples as lists)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in META_DROPPED}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def plan_record(plan) -> dict:
    if plan is None:
        return {"plan": None}
    choices = [[c.layer, c.scheme, list(c.block) if c.block else None, c.sparsity, c.backend,
                c.kernel, c.reason] for c in plan]
    return {"feasible": plan.meta.get("feasible"), "choices": choices,
            "meta": _clean(plan.meta)}


def snapshot(models: list, generations: int, episodes: int, cache: dict, log=print) -> dict:
    """The snapshot of `models`; cache: model -> retained energy, read and filled here."""
    out = {"settings": {"target": TARGET, "sparsity": SPARSITY, "reference": REFERENCE.key,
                        "min_speedup": MIN_SPEEDUP, "seed": SEED, "generations": generations,
                        "episodes": episodes},
           "models": {}}
    for name in models:
        t0 = time.perf_counter()
        specs, weights = build_model(name)
        per_model = out["models"][name] = {}
        energies = {"all": cache[name]} if name in cache else {}
        for space_name, backends in SPACES.items():
            problem, probed = build_problems(specs, weights, backends, energies)
            cache[name] = energies["all"]
            runs = per_model[space_name] = {
                "min_proxy": problem.budget.min_proxy, "layers": len(specs)}
            for mapper_name, run in mappers(generations, episodes).items():
                t1 = time.perf_counter()
                runs[mapper_name] = plan_record(run(problem, probed))
                log(f"  {name:18s} {space_name:10s} {mapper_name:12s} "
                    f"feasible={runs[mapper_name].get('feasible')!s:5s} "
                    f"{time.perf_counter() - t1:6.1f}s")
        del weights
        log(f"{name}: {time.perf_counter() - t0:.1f}s")
    return out


def diff(a: dict, b: dict, path: str = "") -> list:
    """Where two snapshots differ (paths), for --diff."""
    if type(a) is not type(b):
        return [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict):
        out = [f"{path}/{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for k in a.keys() & b.keys():
            out += diff(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the snapshot JSON here")
    ap.add_argument("--models", nargs="*", help="zoo models (default: all)")
    ap.add_argument("--generations", type=int, default=60, help="evolution generations")
    ap.add_argument("--episodes", type=int, default=960, help="RL episodes")
    ap.add_argument("--energy-cache", help="JSON file of the retained-energy tables: read "
                    "when it has a model, else computed and written (engine-side, slow for "
                    "VGG-16; delete it to recompute)")
    ap.add_argument("--diff", nargs=2, metavar=("BEFORE", "AFTER"),
                    help="compare two snapshots instead; exit 1 if they differ")
    args = ap.parse_args(argv)
    if args.diff:
        a, b = (json.loads(Path(p).read_text()) for p in args.diff)
        found = diff(a, b)
        print("\n".join(found[:50]) or "identical")
        return 1 if found else 0
    known = zoo.list_models()
    models = args.models or known
    unknown = [m for m in models if m not in known]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {known}")
    if not args.out:
        ap.error("--out is required (or --diff BEFORE AFTER)")
    cache_path = Path(args.energy_cache) if args.energy_cache else None
    cache = json.loads(cache_path.read_text()) if cache_path and cache_path.exists() else {}
    snap = snapshot(models, args.generations, args.episodes, cache)
    if cache_path:
        cache_path.write_text(json.dumps(cache))
    Path(args.out).write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
