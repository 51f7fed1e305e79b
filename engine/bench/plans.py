"""The mapped plan against uniform plans, measured as shipped: each plan's saved artifact timed
in a process of its own, in alternating rounds (two runtimes interleaved in one process on 2
cores steal each other's threads).

    python -m engine bench plans build --models resnet50,mobilenetv2 --out plans/
    python -m engine bench plans time --out plans/ [--rounds 4] [--seconds 3]

build: per model, optimize(mapper=...) with costs measured where the artifact runs
(--device artifact: each candidate compiled as opt.save() compiles it; "host": the Python
runtime), then the uniform plans of the same problem at the budget sparsity (one family each:
scheme, block, backend, as mapping.uniform makes them; only candidates measured faster than
dense, so they replay without new measurement), every plan saved as an artifact with its
predicted sparsity and proxy (plans/<model>/<name>/ and plans/summary.json).
time: every artifact in its own process (`--one DIR` runs one), rounds alternating; the
summary gets each artifact's min and median over rounds and the rule plan's ratio to the best
uniform plan that is at least as sparse and as accurate by the proxy (and to the fastest
uniform plan overall).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from .. import cli_checks as chk

FAMILIES = ("block4x1", "block8x1", "block16x1", "pattern")


def _space():
    from mapping import default_space
    return default_space(blocks=((2, 1), (4, 1), (8, 1), (16, 1)), sparsities=(0.7, 0.8, 0.9),
                         backends=("native", "tir"))


def _entry(opt, meta: dict) -> dict:
    """What a plan was predicted to be (its mapping meta) and what the result is."""
    pred = meta.get("predicted", {})
    return {"sparsity": opt.sparsity, "predicted_us": pred.get("latency_us"),
            "proxy": pred.get("proxy"), "feasible": meta.get("feasible"),
            "pruned_layers": len(opt.plan.pruned)}


# the weights the benches run (--weights): the seeded zoo model as initialised, or with its
# BatchNorm statistics re-estimated on seeded random batches. The zoo's init leaves running
# statistics at 0 / 1, so a deep network's activations decay (MobileNetV2's outputs ~1e-9: below
# XNNPACK int8's 2^-12 activation-scale floor); re-estimated, they are O(1), but a random
# network so normalised amplifies rounding ~1.4x a block (every int8 runtime then lands at
# ~0.2 relative L2 on MobileNetV2: peer_table's int8 tolerance follows the best peer's).
WEIGHTS = {"init": "the seeded zoo model as initialised",
           "bn": "the seeded zoo model, BatchNorm statistics re-estimated on 2 seeded batches "
                 "of 4 (cumulative averages)"}


def bench_model(model_name: str, seed: int = 0, weights: str = "init") -> tuple:
    """(model in eval mode, input): the weights (WEIGHTS) and the seeded input every bench
    export and artifact is made of."""
    from engine import zoo
    from ..accuracy import recalibrate_bn
    from ..errors import ConfigError
    if weights not in WEIGHTS:
        raise ConfigError(f"weights must be one of {sorted(WEIGHTS)}, got {weights!r}")
    torch.manual_seed(seed)
    model = zoo.get(model_name).eval()
    x = torch.randn(zoo.input_shape(model_name))
    if weights == "bn":
        g = torch.Generator().manual_seed(seed + 2)
        recalibrate_bn(model, [torch.randn((4,) + tuple(x.shape[1:]), generator=g)
                               for _ in range(2)])
    return model, x


def build(model_name: str, out: Path, sparsity: float, mapper: str, device: Optional[str],
          threads: int, seed: int = 0, families: tuple = FAMILIES,
          weights: str = "init") -> dict:
    import engine
    from mapping.uniform import uniform_plans
    model, x = bench_model(model_name, seed, weights)
    opt = engine.optimize(model, (x,), mapper=mapper, sparsity=sparsity, space=_space(),
                          device=None if device == "host" else device, threads=threads,
                          capture=False, allow_infeasible=True, progress=True)
    meta = opt.plan.meta["mapping"]
    rows = {"mapped": dict(_entry(opt, meta), mapper=meta.get("mapper"))}
    opt.save(out / model_name / "mapped", overwrite=True)
    (out / model_name / "weights.json").write_text(json.dumps({"seed": seed,
                                                               "weights": weights}))
    for key, plan in uniform_plans(opt.mapping).items():
        if key.split("@")[0] not in families:
            continue
        u = engine.optimize(model, (x,), plan=plan, measure=False, capture=False,
                            threads=threads)
        u.save(out / model_name / key.replace("/", "_"), overwrite=True)
        rows[key] = _entry(u, plan.meta)
    return rows


def time_one(directory: str, seconds: float) -> dict:
    """Load one artifact and time it (this process runs nothing else)."""
    import engine
    from engine.runtime.measure import compare
    art = engine.load(directory)
    x = torch.randn(tuple(art.inputs[0].shape))
    art(x)
    s = compare({"a": lambda: art(x)}, min_time=seconds)["a"]
    return {"median_s": s}


def time_all(out: Path, rounds: int, seconds: float, only: Optional[set] = None) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    arts = [(m, name) for m, rows in summary["models"].items() for name in rows
            if only is None or name in only]
    times: dict = {}
    for _ in range(rounds):
        for m, name in arts:
            d = out / m / name.replace("/", "_")
            r = subprocess.run([sys.executable, "-m", "engine.bench.plans", "one", str(d),
                                "--seconds", str(seconds)], capture_output=True, text=True,
                               check=True)
            times.setdefault((m, name), []).append(json.loads(r.stdout)["median_s"] * 1e3)
    for (m, name), ts in times.items():
        row = summary["models"][m][name]
        row["ms_min"], row["ms_median"] = min(ts), sorted(ts)[len(ts) // 2]
        row["ms_rounds"] = [round(t, 3) for t in ts]
    for m, rows in summary["models"].items():
        _compare(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _compare(rows: dict) -> None:
    """The mapped plan's ratio to the best uniform plan as sparse and as accurate (by the
    proxy), and to the fastest uniform plan."""
    mapped = rows["mapped"]
    uni = {k: r for k, r in rows.items() if k != "mapped" and "ms_min" in r}
    peers = {k: r for k, r in uni.items()
             if r["sparsity"] >= mapped["sparsity"] - 0.01 and
             (r["proxy"] or 0) >= (mapped["proxy"] or 0) - 1e-9}
    for label, pool in (("vs_best_comparable_uniform", peers), ("vs_fastest_uniform", uni)):
        if pool:
            k = min(pool, key=lambda n: pool[n]["ms_min"])
            mapped[label] = {"uniform": k, "ratio": pool[k]["ms_min"] / mapped["ms_min"]}


def format_summary(summary: dict) -> str:
    out = [f"{'model':<12} {'plan':<24} {'sparsity':>8} {'proxy':>6} {'min ms':>8} {'median':>8}"]
    for m, rows in summary["models"].items():
        for name, r in rows.items():
            out.append(f"{m:<12} {name:<24} {r['sparsity']:>8.3f} {r['proxy'] or 0:>6.3f} "
                       f"{r.get('ms_min', float('nan')):>8.2f} "
                       f"{r.get('ms_median', float('nan')):>8.2f}")
        for label in ("vs_best_comparable_uniform", "vs_fastest_uniform"):
            if label in rows["mapped"]:
                v = rows["mapped"][label]
                out.append(f"  mapped {label}: {v['uniform']} / mapped = {v['ratio']:.2f}x")
    return "\n".join(out)


def main(argv: Optional[list] = None) -> int:
    ap = chk.Parser(prog="python -m engine bench plans", description=__doc__)
    ap.add_argument("step", choices=["build", "time", "one"])
    ap.add_argument("dir", nargs="?", default=None, help="one: the artifact directory")
    ap.add_argument("--models", default="resnet50,mobilenetv2")
    ap.add_argument("--out", default="plans")
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--mapper", default="rule")
    ap.add_argument("--device", default="artifact", choices=["artifact", "host"])
    ap.add_argument("--threads", type=chk.threads, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=chk.integer(1, 1000), default=4)
    ap.add_argument("--seconds", type=chk.seconds, default=3.0)
    ap.add_argument("--plans", default=None,
                    help="time: only these plans (comma list, e.g. mapped,block4x1@0.80/tir)")
    ap.add_argument("--weights", choices=sorted(WEIGHTS), default="init",
                    help="build: " + "; ".join(f"{k}: {v}" for k, v in WEIGHTS.items()))
    ap.add_argument("--seed", type=chk.integer(0, 2**32 - 1), default=0)
    a = ap.parse_args(argv)
    if a.step == "one":
        if a.dir is None:
            ap.error("one: give the artifact directory")
        print(json.dumps(time_one(a.dir, a.seconds)))
        return 0
    out = Path(a.out)
    if a.step == "build":
        t0 = time.time()
        models = {m: build(m, out, a.sparsity, a.mapper, a.device, a.threads, a.seed,
                           weights=a.weights)
                  for m in a.models.split(",")}
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(
            {"device": a.device, "threads": a.threads, "sparsity": a.sparsity,
             "seed": a.seed, "weights": a.weights,
             "build_s": round(time.time() - t0, 1), "models": models}, indent=2))
        return 0
    if not (out / "summary.json").is_file():
        ap.error(f"--out {out}: no summary.json there; run `bench plans build --out {out}` "
                 f"first")
    only = set(a.plans.split(",")) if a.plans else None
    built = {n for rows in json.loads((out / "summary.json").read_text())["models"].values()
             for n in rows}
    if only is not None and only - built:
        ap.error(f"--plans: unknown plan(s) {sorted(only - built)}; built: {sorted(built)}")
    print(format_summary(time_all(out, a.rounds, a.seconds, only)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
