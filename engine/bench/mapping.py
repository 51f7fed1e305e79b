"""Mapped plans vs uniform plans, end to end, in one interleaved run (issue P3's comparison).

    python -m engine bench mapping --models resnet50,mobilenetv2 [--sparsity 0.8]
                                   [--search-time 300] [--mappers rule,search,rl] [--json out]
    python -m engine bench mapping --predicted --mappers rule,search,rl,gnn --search-time 30
                                   --seeds 0,1,2 [--objective max-proxy]

Per model (batch 1, zoo input size, this host, `threads` threads):
1. one Problem (engine.pipeline.automap.build_problem): every candidate of the space measured per
   distinct layer shape (cost table cached on disk), the kept-weight-energy proxy, the budget
   "global sparsity >= S and proxy >= the uniform block 4x1 plan's";
2. every uniform plan (one scheme / block at S on every layer where it is measured faster,
   the rest dense) and each mapper's plan;
3. each plan built with engine.optimize(plan=..., measure=False) and all of them, plus the
   dense model on the engine's own dense kernels, timed end to end interleaved (one
   engine.runtime.measure.compare call); outputs checked against each plan's masked model.

The mappers run at the best uniform plan's budget: phase 1 times every uniform plan end to end
and takes the fastest, U; phase 2 maps with budget "global sparsity >= sparsity(U) and proxy >=
proxy(U)"; phase 3 times all plans again, side by side.

"Comparable" uniform plans of a mapped plan M are those M matches or beats on both quality
axes: sparsity(U) <= sparsity(M) and proxy(U) <= proxy(M). The table reports, for each mapped
plan, the fastest comparable uniform plan (measured) and the ratio: > 1 means the mapped plan
is faster at the same (or higher) sparsity and proxy.

--predicted compares the mappers themselves at equal search time, on the cost table alone (no
plan built or timed; the table is the one `threads` names, cached by an earlier run; the mappers
and the proxy run on one thread): the budget is that of the uniform plan with the lowest
predicted latency, U: "sparsity >= sparsity(U) and proxy >= proxy(U)", minimise latency
(--objective min-latency, as above) or "sparsity >= sparsity(U) and latency <= latency(U)",
maximise the proxy (max-proxy); every search mapper runs `search_time` seconds per seed and the
table gives each one's predicted latency and proxy (mean and range over the seeds).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Optional

import torch

from .. import cli_checks as chk
from ..pipeline.config import MAPPERS

TOL = 1e-6


def _totals(plan) -> dict:
    p = plan.meta.get("predicted", {})
    return {"sparsity": p.get("sparsity"), "proxy": p.get("proxy"),
            "predicted_ms": (p.get("latency_us") or 0) / 1e3,
            "pruned_layers": len(plan.pruned), "feasible": plan.meta.get("feasible")}


def run_model(model_name: str, sparsity: float = 0.8, mappers=("rule", "search"),
              search_time: float = 120.0, threads: int = 2, min_time: float = 3.0,
              seed: int = 0, space=None, progress: bool = True) -> dict:
    from engine import zoo
    from engine.pipeline.automap import MapSettings, build_problem
    from engine.runtime.native import lib
    from mapping import uniform_plans
    _kernels = lib()

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    _kernels.set_num_threads(threads)
    model = zoo.get(model_name).eval()
    x = torch.randn(zoo.input_shape(model_name))
    settings = MapSettings(sparsity=sparsity, search_time=search_time, seed=seed, space=space,
                           threads=threads, progress=progress)
    t0 = time.perf_counter()
    problem = build_problem(model, (x,), settings)
    t_problem = time.perf_counter() - t0
    # a uniform plan that prunes no layer (its scheme is never faster here) is the dense model
    plans = {f"uniform {k}": p for k, p in uniform_plans(problem).items() if p.pruned}
    runs = _Runs(model, x, threads)
    best = _best_uniform(runs, plans, min_time)
    timings, verified = _map_all(runs, plans, problem, settings, mappers, _totals(plans[best]))
    t = _time_all(runs, model, x, threads, min_time)
    rows = _rows(runs, plans, t, timings, verified)
    uniform = [r for r in rows if r["plan"].startswith("uniform")]
    fastest_uniform = min(uniform, key=lambda r: r["ms"]) if uniform else None
    return {"model": model_name, "sparsity_budget": sparsity, "threads": threads,
            "best_uniform_phase1": best,
            "budget": problem.budget.to_dict(), "reference_proxy": problem.info["reference_proxy"],
            "problem_s": t_problem, "measurements_taken": problem.info["measurements_taken"],
            "dense_ms": t["dense (engine)"] * 1e3, "rows": rows,
            "fastest_uniform": fastest_uniform["plan"] if fastest_uniform else None}


class _Runs:
    """The plans built into models (engine.optimize(plan=...)), each checked against its own
    masked model on the example input."""

    def __init__(self, model, x, threads: int):
        self.model, self.x, self.threads = model, x, threads
        self.built, self.errors = {}, {}

    def build(self, name: str, plan, verify: bool = False) -> None:
        # verify: what optimize(mapper=...) does with the plan: every pruned layer measured
        # again in place (native kernels only, like the uniform plans) and kept only if it is
        # still >= min_speedup faster than dense
        import engine
        x = self.x
        opt = engine.optimize(self.model, (x,), plan=plan, measure=verify, capture=False,
                              threads=self.threads, backends="native")
        with torch.no_grad():
            self.errors[name] = (opt(x) - opt.pruned_model(x)).abs().max().item()
        self.built[name] = opt

    def calls(self) -> dict:
        return {n: (lambda o=o: o(self.x)) for n, o in self.built.items()}


def _best_uniform(runs: _Runs, plans: dict, min_time: float) -> str:
    """Phase 1: every uniform plan built and timed end to end; the fastest one's name."""
    from engine.runtime.measure import compare
    for name, plan in plans.items():
        runs.build(name, plan)
    t1 = compare(runs.calls(), min_time=min_time / 2, min_runs=5, block=3)
    return min(t1, key=t1.get)


def _map_all(runs: _Runs, plans: dict, problem, settings, mappers, bt: dict) -> tuple:
    """Phase 2: every mapper at the best uniform plan's global sparsity and proxy; each plan
    built with the in-place check. Returns (mapping seconds, what the check kept) by mapper."""
    from engine.pipeline.automap import make_mapper
    from mapping import Budget
    problem.budget = Budget(sparsity=bt["sparsity"], min_proxy=bt["proxy"])
    timings, verified = {}, {}
    for m in mappers:
        settings.mapper = m
        t0 = time.perf_counter()
        plans[m] = make_mapper(settings).map(problem)
        timings[m] = time.perf_counter() - t0
        runs.build(m, plans[m], verify=True)
        kept = runs.built[m].plan
        verified[m] = {"pruned_in_plan": len(plans[m].pruned), "pruned_after_check":
                       len(kept.pruned), "min_in_place_speedup":
                       min((c.speedup for c in kept.pruned if c.speedup), default=None)}
    return timings, verified


def _time_all(runs: _Runs, model, x, threads: int, min_time: float) -> dict:
    """Phase 3: every built plan and the engine's best dense model, side by side in one run
    (the dense model: each layer on torch or the native dense kernel, whichever measured
    faster in place)."""
    import engine
    from engine.runtime.measure import compare
    dense = engine.optimize(model, (x,), sparsity=0.0, measure=True, capture=False,
                            threads=threads)
    cands = runs.calls()
    cands["dense (engine)"] = lambda: dense(x)
    return compare(cands, min_time=min_time, min_runs=10, block=3)


def _rows(runs: _Runs, plans: dict, t: dict, timings: dict, verified: dict) -> list:
    """One row per plan; a mapped plan's row also names the fastest uniform plan it matches or
    beats on both sparsity and proxy, and what the in-place check kept."""
    rows = [{"plan": name, "ms": t[name] * 1e3, "max_abs_err": runs.errors[name],
             **_totals(plan)} for name, plan in plans.items()]
    uniform = [r for r in rows if r["plan"].startswith("uniform")]
    for r in rows:
        if r["plan"].startswith("uniform"):
            continue
        comp = [u for u in uniform if u["sparsity"] <= r["sparsity"] + TOL
                and u["proxy"] <= r["proxy"] + TOL]
        if comp:
            best = min(comp, key=lambda u: u["ms"])
            r["best_comparable_uniform"] = best["plan"]
            r["speedup_vs_best_comparable_uniform"] = best["ms"] / r["ms"]
        r["mapping_s"] = timings[r["plan"]]
        r.update(verified[r["plan"]])
        # the built model's own sparsity (layers the in-place check kept dense lower it)
        r["sparsity_built"] = runs.built[r["plan"]].sparsity
    return rows


def run_predicted(model_name: str, sparsity: float = 0.8, mappers=("rule", "search", "rl"),
                  search_time: float = 30.0, threads: int = 2, seeds=(0,),
                  objective: str = "min-latency", progress: bool = False) -> dict:
    """--predicted (module docstring): one row per mapper and seed, plus the uniform plan U."""
    from engine import zoo
    from engine.pipeline.automap import MapSettings, build_problem, make_mapper
    from mapping import Budget, uniform_plans
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = zoo.get(model_name).eval()
    x = torch.randn(zoo.input_shape(model_name))
    settings = MapSettings(sparsity=sparsity, search_time=search_time, threads=threads,
                           progress=progress)
    problem = build_problem(model, (x,), settings)
    plans = {f"uniform {k}": p for k, p in uniform_plans(problem).items() if p.pruned}
    u = min(plans, key=lambda k: _totals(plans[k])["predicted_ms"])
    bt = _totals(plans[u])
    problem.budget = Budget(sparsity=bt["sparsity"], min_proxy=bt["proxy"]) \
        if objective == "min-latency" else \
        Budget(sparsity=bt["sparsity"], latency_us=bt["predicted_ms"] * 1e3)
    bt["feasible"] = not problem.budget.violations(_as_totals(bt))   # U meets its own budget
    rows = [dict(mapper=u, seed=None, mapping_s=0.0, **bt)]
    for m in mappers:
        for seed in (seeds[:1] if m == "rule" else seeds):
            settings.mapper, settings.seed = m, seed
            t0 = time.perf_counter()
            plan = make_mapper(settings).map(problem)
            search = plan.meta.get("search", {})
            rows.append(dict(mapper=m, seed=seed, mapping_s=time.perf_counter() - t0,
                             steps=search.get("episodes", search.get("generations")),
                             evaluations=search.get("evaluations"), **_totals(plan)))
    return {"model": model_name, "objective": objective, "budget": problem.budget.to_dict(),
            "search_time": search_time, "measurements_taken":
            problem.info["measurements_taken"], "rows": rows}


def _as_totals(t: dict):
    from mapping import Totals
    return Totals(t["predicted_ms"] * 1e3, t["sparsity"], None, t["proxy"])


def format_predicted(r: dict) -> str:
    head = (f"{'mapper':<30} {'seeds':>5} {'pred ms (mean, min-max)':>26} "
            f"{'proxy (mean, min-max)':>24} {'feasible':>8} {'evaluated':>9} {'steps':>7}")
    out = [f"{r['model']}: {r['objective']}, budget {r['budget']}, {r['search_time']:g} s per "
           f"search ({r['measurements_taken']} new measurements)", head, "-" * len(head)]
    for m in dict.fromkeys(row["mapper"] for row in r["rows"]):
        rows = [row for row in r["rows"] if row["mapper"] == m]
        ms, px = [row["predicted_ms"] for row in rows], [row["proxy"] for row in rows]
        ev = [row.get("evaluations") or 0 for row in rows]
        st = [row.get("steps") or 0 for row in rows]
        out.append(f"{m:<30} {len(rows):>5} {sum(ms) / len(ms):>9.3f} ({min(ms):.3f}-"
                   f"{max(ms):.3f}) {sum(px) / len(px):>8.4f} ({min(px):.4f}-{max(px):.4f}) "
                   f"{sum(bool(row['feasible']) for row in rows):>8} "
                   f"{sum(ev) // len(ev):>9} {sum(st) // len(st):>7}")
    return "\n".join(out)


def format_result(r: dict) -> str:
    head = (f"{'plan':<32} {'sparsity':>8} {'proxy':>6} {'pred ms':>8} {'e2e ms':>7} "
            f"{'pruned':>6}  vs best comparable uniform")
    out = [f"{r['model']}: budget {r['budget']}, dense (engine kernels) {r['dense_ms']:.2f} ms, "
           f"problem built in {r['problem_s']:.0f} s ({r['measurements_taken']} new "
           f"measurements)", head, "-" * len(head)]
    for row in sorted(r["rows"], key=lambda z: z["ms"]):
        vs = ""
        if "speedup_vs_best_comparable_uniform" in row:
            vs = (f"{row['speedup_vs_best_comparable_uniform']:.2f}x vs "
                  f"{row['best_comparable_uniform']}")
        elif not row["plan"].startswith("uniform"):
            vs = "no comparable uniform plan (lower sparsity or proxy than all)"
        if "pruned_after_check" in row:
            vs += (f"; in-place check kept {row['pruned_after_check']}/{row['pruned_in_plan']} "
                   f"pruned, min speedup {row['min_in_place_speedup']:.2f}x")
        out.append(f"{row['plan']:<32} {row['sparsity']:>8.3f} {row['proxy']:>6.3f} "
                   f"{row['predicted_ms']:>8.2f} {row['ms']:>7.2f} {row['pruned_layers']:>6}  "
                   f"{vs}")
    return "\n".join(out)


def _seed_list(text: str) -> tuple:
    try:
        seeds = tuple(int(v, 10) for v in text.split(","))
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 0, e.g. 0,1,2, "
                                         f"got {text!r}")
    return seeds


def main(argv: Optional[list] = None) -> int:
    p = chk.Parser(prog="python -m engine bench mapping", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet50,mobilenetv2")
    p.add_argument("--sparsity", type=float, default=0.8)
    p.add_argument("--mappers", type=chk.names(MAPPERS), default="rule,search")
    p.add_argument("--search-time", type=chk.real(0.0, lo_open=True, what="seconds > 0"), default=120.0)
    p.add_argument("--threads", type=chk.threads, default=2)
    p.add_argument("--min-time", type=chk.seconds, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--predicted", action="store_true",
                   help="compare the mappers on the cached cost table only (no e2e timing)")
    p.add_argument("--seeds", type=_seed_list, default=None,
                   help="with --predicted: e.g. 0,1,2 (default: --seed)")
    p.add_argument("--objective", choices=("min-latency", "max-proxy"), default="min-latency",
                   help="with --predicted: the budget kind (module docstring)")
    a = p.parse_args(argv)
    results = []
    for m in a.models.split(","):
        if a.predicted:
            r = run_predicted(m, a.sparsity, a.mappers, a.search_time, a.threads,
                              a.seeds or (a.seed,), a.objective)
            print(format_predicted(r), flush=True)
            print()
            results.append(r)
            continue
        r = run_model(m, a.sparsity, a.mappers, a.search_time, a.threads,
                      a.min_time, a.seed)
        print(format_result(r), flush=True)
        print()
        results.append(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": platform.processor() or platform.machine(),
                       "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
