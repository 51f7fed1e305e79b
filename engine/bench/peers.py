"""The engine's saved artifacts against the dense runtimes a user would pick instead: ONNX
Runtime, OpenVINO and ExecuTorch with the XNNPACK delegate, each runtime in a fresh process of
its own (two runtimes' thread pools in one process steal each other's cores), rounds alternating
runtimes, at each thread count, on the same seeded input; every output is checked against
torch's before it is timed. In fp32 and in int8 (--precision).

    python -m engine bench peers [--models resnet50,mobilenetv2] [--threads 1,2] [--rounds 2]
        [--seconds 3] [--runtimes engine,ort,openvino,xnnpack] [--precision fp32,int8]
        [--out peers] [--reuse] [--artifacts DIR] [--tol 1e-4] [--tol-int8 0.1]
        [--weights init|bn]

Exports are built once into <out>/cache/<model>/ (--reuse keeps what is there). The engine runs
its artifacts (engine.optimize(...).save(dir); engine.load(dir)): dense (sparsity 0, measured
at each thread count, as a user shipping for N threads builds it), uniform
block 4x1 at 80% and the rule-mapped plan at 80% (device="artifact"), the last two built as
`bench plans build` builds them (tens of minutes for ResNet-50 cold) or taken from a directory
it wrote (--artifacts DIR: DIR/<model>/mapped and DIR/<model>/block4x1@0.80_tir). Output:
<out>/peers.md (one table per thread count, with the machine's fp32 peak measured in a process
of its own) and <out>/peers.json (every process's result).

int8 (engine/bench/peer_int8.py): every int8 export calibrates on the same seeded batches
(<cache>/<model>/calib.npy, 8 x the input shape, seed + 1): ONNX Runtime static int8 QDQ
(quant_pre_process, then quantize_static: per-channel s8 weights, u8 activations, MinMax) as
ort:int8; OpenVINO running that QDQ file through its low-precision path (not NNCF) as
openvino:int8, with the number of compute layers it runs in i8/u8 in each run's info;
ExecuTorch PT2E (XNNPACKQuantizer, symmetric per-channel) lowered to XNNPACK as xnnpack:int8;
the engine's engine:int8-dense (sparsity 0, bits=8, at each thread count as its fp32 dense),
engine:int8-block4x4 (block 4x4 at 80%, bits=8) and engine:int8-mapped (rule mapper at 80%,
bits="auto": peer_int8.INT8_MAPPED). Each int8 output is checked against torch's fp32 output
(the dense model's for the peers, the plan's masked model for the engine's) by relative L2
error, ||y - ref|| / ||ref||, within --tol-int8 or 1.5x the best int8 peer's error on the same
model, whichever is larger (peer_table.int8_flags; --weights bn: a network on which every int8
runtime lands near 0.2). After the fp32 tables, one int8 table per thread
count: the best int8 dense peer, every int8 column, the engine's ratios to that peer, and
engine int8 4x4 against engine fp32 4x1 (both 80%) when both ran. Bench-only dependencies
(setup.py's `peers` extra; pin torch, or pip may replace it):

    pip install onnxruntime onnx openvino executorch==1.5.1 -c <(echo torch==2.13.0)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from .. import cli_checks as chk
from .peer_run import ENGINE_INT8, ENGINE_VARIANTS, PRECISIONS, RUNTIMES
from .plans import WEIGHTS


def _parser() -> chk.Parser:
    ap = chk.Parser(prog="python -m engine bench peers", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", nargs="?", default="run", choices=["run", "one", "peak"],
                    help="run (default); one / peak: one measurement (what run starts)")
    ap.add_argument("--models", default="resnet50,mobilenetv2", help="engine.zoo names")
    ap.add_argument("--runtimes", type=chk.names(RUNTIMES), default=RUNTIMES,
                    help=f"comma list out of {','.join(RUNTIMES)} (default: all)")
    ap.add_argument("--precision", type=chk.names(PRECISIONS), default=PRECISIONS,
                    help="comma list out of fp32,int8 (default: both)")
    ap.add_argument("--threads", type=chk.thread_list, default=(1, 2),
                    help="thread counts, comma list (default 1,2)")
    ap.add_argument("--rounds", type=chk.integer(1, 1000), default=2,
                    help="rounds over every runtime (default 2)")
    ap.add_argument("--seconds", type=chk.seconds, default=3.0,
                    help="timed seconds per process (after a warm-up)")
    ap.add_argument("--out", default="peers", help="cache, peers.md, peers.json go here")
    ap.add_argument("--reuse", action="store_true", help="keep exports and artifacts built "
                    "by an earlier run in <out>/cache")
    ap.add_argument("--artifacts", default=None, metavar="DIR",
                    help="take the 80%% artifacts from a `bench plans build --out DIR`")
    ap.add_argument("--tol", type=chk.real(0.0, lo_open=True, what="a number > 0"),
                    default=1e-4, help="largest |output - torch| relative to max |torch|")
    ap.add_argument("--tol-int8", type=chk.real(0.0, lo_open=True, what="a number > 0"),
                    default=0.1, help="int8: largest ||output - torch fp32|| / ||torch fp32||")
    ap.add_argument("--seed", type=chk.integer(0, 2**32 - 1), default=0)
    ap.add_argument("--weights", choices=sorted(WEIGHTS), default="init",
                    help="; ".join(f"{k}: {v}" for k, v in WEIGHTS.items()))
    ap.add_argument("--peak", type=chk.integer(0, 8192), default=2048, metavar="N",
                    help="the fp32 peak: torch.mm of N x N matrices, per thread count and "
                         "round in a process of its own (0: not measured)")
    ap.add_argument("--engine-threads", choices=["fixed", "auto"], default="fixed",
                    help="fixed: the engine runs on exactly N threads, as the peers do; auto: "
                         "engine.load(threads='auto'), the count up to N that is fastest now")
    # one: what a child process measures
    ap.add_argument("--runtime", choices=RUNTIMES, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--variant", choices=ENGINE_VARIANTS + ENGINE_INT8 + ("int8",),
                    default="dense", help=argparse.SUPPRESS)
    return ap


def _check(ap, a) -> list:
    """Everything checkable before minutes of exporting; returns the models."""
    from engine import zoo
    models = [m.strip() for m in a.models.split(",")]
    known = zoo.list_models()
    bad = [m for m in models if m not in known]
    if bad or not models:
        ap.error(f"--models: unknown model(s) {bad}; known models: {', '.join(known)}")
    if a.artifacts is not None and "engine" in a.runtimes and "fp32" in a.precision:
        for m in models:
            if not (Path(a.artifacts) / m / "mapped" / "manifest.json").is_file():
                ap.error(f"--artifacts: no {m}/mapped artifact under {a.artifacts!r} (write "
                         f"one with `python -m engine bench plans build --out DIR`)")
    try:
        chk.writable_dir("--out", a.out)
    except Exception as e:      # noqa: BLE001  (ConfigError: one line naming the flag)
        ap.error(str(e))
    return models


def _child(step: str, a, **kw) -> dict:
    """Runs `python -m engine.bench.peers <step> ...` in a fresh process; its JSON, or an
    error entry with the last line it wrote to stderr."""
    args = [sys.executable, "-m", "engine.bench.peers", step]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    # the children import the same engine as this process, wherever it is run from
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TVM_NUM_THREADS=str(kw["threads"]), PYTHONPATH=path)
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    if r.returncode == 0:
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            pass
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    return {"error": (lines[-1] if lines else f"exit {r.returncode}")[:300]}


def _measurements(a, models: list, metas: dict) -> list:
    """(model, key, runtime, variant) in the order one round runs them."""
    out = []
    for m in models:
        for p in a.precision:
            for rt in a.runtimes:
                if rt == "engine":
                    out += [(m, f"engine:{v}", rt, v)
                            for v in (ENGINE_VARIANTS if p == "fp32" else ENGINE_INT8)
                            if v in metas[m].get("engine", {})]
                elif p == "fp32":
                    out.append((m, rt, rt, "dense"))
                else:
                    out.append((m, f"{rt}:int8", rt, "int8"))
    return out


def run_rounds(a, models: list, metas: dict, log=print) -> tuple:
    """Every measurement in its own process, rounds alternating; returns (runs, peaks)."""
    runs, peaks = [], {}
    todo = _measurements(a, models, metas)

    def peak(n: int) -> None:         # before and after each block: the best of both counts
        p = _child("peak", a, threads=n, peak=a.peak) if a.peak else {}
        if "gflops" in p:
            peaks[str(n)] = max(peaks.get(str(n), 0.0), p["gflops"])
    for rnd in range(a.rounds):
        for n in a.threads:
            peak(n)
            for m, key, rt, v in todo:
                r = _child("one", a, runtime=rt, model=m, variant=v, threads=n, out=a.out,
                           seconds=a.seconds, tol=a.tol,
                           engine_threads=a.engine_threads)
                r.update(model=m, key=key, threads=n, round=rnd + 1)
                runs.append(r)
                what = r.get("error") or r.get("flagged") or \
                    f"{r['median_ms']:.2f} ms (min {r['min_ms']:.2f})"
                log(f"round {rnd + 1}, {n} thread(s), {m}, {key}: {what}")
            peak(n)
    return runs, peaks


def build(a, models: list, log=print) -> dict:
    """{model: meta}: every export and artifact the run times (the fp32 ones, then int8)."""
    from .peer_build import prepare, seeded
    from .peer_int8 import prepare_int8
    out = Path(a.out)
    arts = Path(a.artifacts) if a.artifacts else None
    fp32 = "fp32" in a.precision
    metas = {}
    for m in models:
        metas[m] = prepare(m, out, a.runtimes, a.reuse, max(a.threads), a.seed, arts, log=log,
                           dense_threads=tuple(a.threads), fp32=fp32, weights=a.weights)
        if "int8" in a.precision:
            model, x = seeded(m, a.seed, a.weights)
            metas[m] = prepare_int8(metas[m], out / "cache" / m, model, x, a.runtimes, a.reuse,
                                    max(a.threads), log=log, dense_threads=tuple(a.threads))
    for m, meta in metas.items():
        want = (ENGINE_VARIANTS if fp32 else ()) + \
            (ENGINE_INT8 if "int8" in a.precision else ())
        lost = [v for v in want if "engine" in a.runtimes and v not in meta.get("engine", {})]
        if lost:
            log(f"note: {m}: no engine artifact {', '.join(lost)} (not in --artifacts, or "
                f"its build failed: meta.json's int8_failed)")
    return metas


def run(a, models: list, log=print) -> dict:
    from .peer_build import missing
    from .peer_table import int8_flags, markdown, markdown_int8, ratios, summarize
    runtimes = []
    for rt in a.runtimes:
        why = missing(rt)
        if why:
            log(f"note: {why}")
        else:
            runtimes.append(rt)
    a.runtimes = tuple(runtimes)
    metas = build(a, models, log)
    runs, peaks = run_rounds(a, models, metas, log)
    summary = summarize(runs)
    tols = int8_flags(summary, a.tol_int8) if "int8" in a.precision else {}
    ratios(summary)
    gflops = {m: metas[m]["dense_gflops"] for m in models}
    table = markdown(summary, peaks, gflops, a.runtimes, a.peak) if "fp32" in a.precision \
        else ""
    if "int8" in a.precision:
        table += ("\n" if table else "") + markdown_int8(summary, a.runtimes, tols)
    if a.engine_threads == "auto" and "engine" in a.runtimes:
        table = ("The engine's columns ran with engine.load(threads='auto'): the count up to the "
                 "table's that measured fastest as it ran; the peers on exactly that many.\n\n"
                 + table)
    result = {"runtimes": list(a.runtimes), "precision": list(a.precision),
              "threads": list(a.threads), "rounds": a.rounds,
              "engine_threads": a.engine_threads, "seconds": a.seconds, "tol": a.tol,
              "tol_int8": a.tol_int8, "int8_tolerance": tols, "weights": a.weights,
              "peak_gflops": peaks, "dense_gflops": gflops,
              "int8_failed": {m: metas[m]["int8_failed"] for m in models
                              if "int8_failed" in metas[m]},
              "summary": summary, "runs": runs}
    out = Path(a.out)
    (out / "peers.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "peers.md").write_text(table)
    return {"table": table, **result}


def main(argv: Optional[list] = None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    if a.step == "peak":
        from .peer_run import peak_gflops
        print(json.dumps(peak_gflops(a.threads[0], max(a.peak, 1))))
        return 0
    if a.step == "one":
        if a.runtime is None or a.model is None:
            ap.error("one: give --runtime and --model")
        from .peer_run import run_one
        mdir = Path(a.out) / "cache" / a.model
        print(json.dumps(run_one(a.runtime, mdir, a.threads[0], a.seconds, a.tol,
                                 a.variant, auto=a.engine_threads == "auto")))
        return 0
    models = _check(ap, a)
    print(run(a, models)["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
