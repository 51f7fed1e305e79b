"""Command line: python -m engine {optimize, bench, demo, info}.

    python -m engine optimize --model resnet50 --sparsity 0.8 --scheme block --block 4x1
    python -m engine bench kernels [--shapes resnet50_1x1] [--sparsity 0.8] [--block 4x1]
    python -m engine bench e2e --model resnet50
    python -m engine bench artifact --models resnet50,mobilenetv2 --sparsity 0,0.8
    python -m engine bench plans build|time --models resnet50,mobilenetv2 --out plans/
    python -m engine bench peers --models resnet50,mobilenetv2 --threads 1,2 --out peers/
    python -m engine bench corpus --models bert,gpt2_decode,unet --out corpus/
    python -m engine bench recurrent --out rnn/   (LSTM classifier: sparse / dense artifact, torch)
    python -m engine bench autobot --data digits  (AutoBot vs L1 filter pruning at 50% FLOPs)
    python -m engine bench gcn --hidden 512,1024  (GCN: dense vs RigL-trained 80% block 4x1)
    python -m engine demo
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional

from mapping.space import BLOCKED

from . import cli_checks as chk

def _optimize_parser(sub) -> None:
    p = sub.add_parser("optimize", help="prune a zoo model for the host and report per layer")
    p.add_argument("--model", default="resnet50", help="a model of engine.zoo (see `info`)")
    p.add_argument("--sparsity", type=chk.real(0.0, 1.0, hi_open=True, what="a number in [0, 1)"),
                   default=0.8)
    p.add_argument("--scheme", default="block",
                   help="block, unstructured, pattern, nm, filter, channel")
    p.add_argument("--block", type=chk.block, default="4x1",
                   help="rows x cols, e.g. 4x1 (block scheme)")
    p.add_argument("--threads", type=chk.threads, default=os.cpu_count() or 1)
    p.add_argument("--min-speedup", type=chk.real(1.0, what="a number >= 1"), default=1.1,
                   help="prune a layer only if measured at least this much faster than dense")
    p.add_argument("--input-shape", type=chk.shape, default=None,
                   help="e.g. 1,3,224,224 (default: model's)")
    p.add_argument("--exclude", action="append", default=[], help="layer to keep dense")
    p.add_argument("--guard", choices=("keep", "warn", "off"), default="keep",
                   help="the whole-model check: not faster than dense end to end -> keep the "
                        "dense model (keep), warn, or skip it (off)")
    p.add_argument("--plan-out", default=None, help="write the plan as JSON here")
    p.add_argument("--target", default="host",
                   help="host, x86_64, x86_64-avx512, arm64, arm64-dotprod, android-arm64")
    p.add_argument("--save", default=None, metavar="DIR",
                   help="compile for --target and write the artifact directory here")
    p.add_argument("--overwrite", action="store_true",
                   help="with --save: replace DIR even if it holds files that are not an "
                        "artifact's")
    p.add_argument("--ort", action="store_true", help="also time the dense model in ONNX Runtime")
    p.add_argument("--min-time", type=chk.seconds, default=2.0,
                   help="seconds per timed candidate")
    p.add_argument("--seed", type=chk.integer(0, 2**32 - 1), default=0)
    p.add_argument("--mapper", default=None,
                   choices=["rule", "search", "evolution", "rl", "gnn"],
                   help="choose scheme / block / sparsity per layer from measured costs "
                        "(default: --scheme/--block/--sparsity on every layer)")
    p.add_argument("--latency-budget", type=chk.real(0.0, lo_open=True, what="milliseconds > 0"),
                   default=None, metavar="MS",
                   help="mapper budget: summed layer latency <= MS (maximise the proxy)")
    p.add_argument("--min-proxy", type=chk.min_proxy, default="reference",
                   help="mapper accuracy floor: 'reference' (the proxy of --scheme/--block at "
                        "--sparsity everywhere), a number, or 'none'")
    p.add_argument("--search-time", type=chk.real(0.0, lo_open=True, what="seconds > 0"),
                   default=120.0, help="seconds (search, rl, gnn)")
    p.add_argument("--costs", default=None, metavar="JSON",
                   help="cost table file (default: the per-target cache)")
    p.add_argument("--device", type=chk.device, default=None,
                   metavar="artifact|rpc://HOST:PORT[/KEY]",
                   help="where candidates are timed: 'artifact' (this host, compiled as --save "
                        "ships them) or a device over TVM RPC (server, or tracker + key); "
                        "default: this host's Python runtime")
    p.add_argument("--allow-infeasible", action="store_true",
                   help="with --mapper: return the best plan when the budget cannot be met "
                        "(default: an error saying what is reachable)")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="with --mapper: write report.md, plan.json, latency_vs_block.png")
    _int8_args(p)
    p.add_argument("--backends", type=chk.backends, default="auto",
                   help="sparse backends to measure per layer: auto (native + tir when tvm is "
                        "installed), native, tir, or native,tir")


def _int8_args(p) -> None:
    p.add_argument("--bits", choices=("32", "8", "auto"), default="32",
                   help="32: fp32 kernels; 8: every conv the int8 kernels run; auto: the mapper "
                        "chooses per layer (needs --mapper)")
    p.add_argument("--calib-batches", type=chk.integer(1, 1000), default=4,
                   help="int8: batches of 4 random inputs to calibrate on (the zoo's models "
                        "are random-init; calibrate a trained model on its data in Python)")


def _bits(a, shape) -> dict:
    """optimize()'s bits and calibration (batches or None) from --bits / --calib-batches."""
    import torch
    bits = getattr(a, "bits", "32")
    bits = bits if bits == "auto" else int(bits)
    calib = None if bits == 32 else [torch.randn((4,) + tuple(shape[1:]))
                                     for _ in range(getattr(a, "calib_batches", 4))]
    return {"bits": bits, "calibration": calib}


def cmd_optimize(a) -> int:
    import torch

    import engine
    from engine import zoo
    from engine.bench.e2e import onnxruntime_session
    from engine.runtime.measure import compare

    if a.report and not a.mapper:
        raise SystemExit("--report needs --mapper (it explains the mapper's choices)")
    kw = {"block": a.block} if a.scheme in BLOCKED else {}
    _check_before_work(a)
    torch.manual_seed(a.seed)
    model = zoo.get(a.model).eval()
    shape = a.input_shape or zoo.input_shape(a.model)
    x = torch.randn(shape)
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    opt = engine.optimize(model, (x,), target=a.target, scheme=a.scheme, sparsity=a.sparsity,
                          threads=a.threads, min_speedup=a.min_speedup, exclude=a.exclude,
                          backends=a.backends if a.backends == "auto" else
                          tuple(a.backends.split(",")), mapper=a.mapper,
                          latency_budget=a.latency_budget, min_proxy=a.min_proxy,
                          search_time=a.search_time, costs=a.costs, device=a.device,
                          seed=a.seed, allow_infeasible=a.allow_infeasible, guard=a.guard,
                          **_bits(a, shape), **kw)
    took = time.perf_counter() - t0
    print(opt.plan.table())
    print()
    other = len(opt.plan.other_layers)
    print(f"{a.model} {shape}: {len(opt.plan.pruned)}/{len(opt.plan)} layers pruned"
          + (f" (+{other} other weight layers, left dense)" if other else "")
          + f", {opt.sparsity:.1%} of all weight-layer parameters; optimize took {took:.1f} s")
    for n in opt.notes:
        print("note:", n)
    cands = {"optimized": lambda: opt(x), "dense torch eager": lambda: model(x)}
    if a.ort:
        sess, why = onnxruntime_session(model, (x,), a.threads)
        if sess is None:
            print("note:", why)
        else:
            feed = {sess.get_inputs()[0].name: x.numpy()}
            cands["dense onnxruntime"] = lambda: sess.run(None, feed)
    t = compare(cands, min_time=a.min_time, min_runs=10, block=5)
    print(f"\nend to end, batch {shape[0]}, {a.threads} threads (median, measured side by side):")
    for k, v in t.items():
        ratio = "" if k == "optimized" else f"   optimized is {v / t['optimized']:.2f}x faster"
        print(f"  {k:<20} {v * 1e3:8.2f} ms{ratio}")
    if a.report:
        from engine.report import write_report
        print(f"mapping report written to {write_report(opt, a.report)}")
    if a.plan_out:
        opt.plan.save(a.plan_out)
        print(f"plan written to {a.plan_out}")
    if a.save:
        t0 = time.perf_counter()
        path = opt.save(a.save, overwrite=a.overwrite)
        print(f"artifact for {a.target} written to {path} ({time.perf_counter() - t0:.1f} s); "
              f"see examples/README.md to run it without Python")
    return 0


def _check_before_work(a) -> None:
    """Everything that can be checked before minutes of optimizing: names, and the places the
    run writes at its end."""
    from engine import zoo
    from engine.errors import ConfigError
    from engine.schemes import get_scheme
    from engine.targets import get_target
    for flag, check, value in (("--model", zoo.input_shape, a.model),
                               ("--target", get_target, a.target),
                               ("--scheme", get_scheme, a.scheme)):
        try:
            check(value)           # unknown name: the error lists the known ones
        except ConfigError as e:
            raise ConfigError(f"{flag}: {e}") from None
    if a.costs:
        chk.writable_file("--costs", a.costs)
    if a.plan_out:
        chk.writable_file("--plan-out", a.plan_out)
    if a.report:
        chk.writable_dir("--report", a.report)
    if a.save:
        from engine.artifact import check_save_destination
        try:
            check_save_destination(a.save, overwrite=a.overwrite)
        except Exception as e:     # noqa: BLE001  (ArtifactError / OSError: one line, flag named)
            raise ConfigError(f"--save: {e}") from None
        chk.writable_dir("--save", a.save)   # a real write probe (access() says yes to root)


def cmd_bench(a, rest: list) -> int:
    import importlib
    return importlib.import_module(f"engine.bench.{a.what}").main(rest)


def cmd_demo(a) -> int:
    """The README's main job: optimize a bundled model and show where it got faster."""
    print("engine demo: ResNet-50 (random init), batch 1, 224x224, block 4x1 at 80% sparsity\n")
    ns = argparse.Namespace(model=a.model, sparsity=0.8, scheme="block", block="4x1",
                            threads=a.threads, min_speedup=1.1, input_shape=None, exclude=[],
                            plan_out=a.plan_out, ort=True, min_time=2.0, seed=0,
                            target="host", save=None, backends="auto", mapper=None,
                            latency_budget=None, min_proxy="reference", search_time=120.0,
                            costs=None, device=None, report=None, overwrite=False,
                            allow_infeasible=False, guard="keep")
    return cmd_optimize(ns)


def cmd_info(a) -> int:
    from engine import zoo
    from engine.runtime.native import lib
    _kernels = lib()
    from engine._version import __version__
    from engine.targets import TARGETS
    print(json.dumps({
        "engine": __version__, "kernels": {"available_isas": _kernels.available_isas(),
                                           "best_isa": _kernels.best_isa(),
                                           "threads": _kernels.get_num_threads()},
        "targets": sorted(TARGETS), "zoo": zoo.list_models()}, indent=2))
    return 0


# python -m engine bench WHAT: engine.bench.WHAT's main(rest), and what each one times
BENCHES = {
    "kernels": "the sparse kernels vs the engine's dense kernel and torch, per layer shape",
    "dense": "the packed dense kernels (GEMM, direct, Winograd) vs the path dense layers take",
    "depthwise": "the direct depthwise kernel vs torch vs the sparse-SpMM path",
    "tir": "generated TIR kernels vs the C++ kernels vs torch dense, on real shapes",
    "invres": "fused inverted-residual blocks vs the unfused layers (MobileNetV2's shapes)",
    "e2e": "an optimized model vs the dense model in PyTorch eager and ONNX Runtime",
    "artifact": "compiled host artifacts (opt.save -> engine.load) vs the dense model",
    "mapping": "mapped plans vs uniform plans, end to end, interleaved",
    "plans": "build / time the mapped and uniform plans as saved artifacts",
    "peers": "the engine's artifacts vs ONNX Runtime, OpenVINO, ExecuTorch+XNNPACK (fp32, int8)",
    "corpus": "any model a user brings (vision, transformers, decoders), end to end",
    "recurrent": "an LSTM classifier pruned matrix by matrix, artifact vs torch",
    "recovery": "accuracy recovery on real data (gradual, ADMM, RGP, LTH, ...; int8 columns)",
    "autobot": "AutoBot vs magnitude filter pruning at the same FLOPs, on real data",
    "gcn": "GCN / GraphSAGE: dense vs sparse-trained 80% block 4x1, accuracy and time",
}


def bench_help() -> str:
    width = max(map(len, BENCHES))
    rows = "\n".join(f"  {k:{width}s}  {v}" for k, v in BENCHES.items())
    return ("usage: python -m engine bench WHAT [options]   (python -m engine bench WHAT --help: "
            "its options)\n\nWHAT:\n" + rows)


def main(argv: Optional[list] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = chk.Parser(prog="python -m engine", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    _optimize_parser(sub)
    b = sub.add_parser("bench", help="microbenchmarks (kernels) or end-to-end (e2e)",
                       add_help=False)
    b.add_argument("what", choices=list(BENCHES))
    d = sub.add_parser("demo", help="optimize a bundled model and compare with dense")
    d.add_argument("--model", default="resnet50")
    d.add_argument("--threads", type=chk.threads, default=os.cpu_count() or 1)
    d.add_argument("--plan-out", default=None)
    sub.add_parser("info", help="kernels, targets and zoo models available here")
    if argv[:1] == ["bench"] and (len(argv) == 1 or argv[1] in ("-h", "--help")):
        print(bench_help())
        return 0 if len(argv) > 1 else 2
    a, rest = ap.parse_known_args(argv)
    if a.cmd != "bench" and rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    from engine.errors import EngineError
    try:
        if a.cmd == "bench":
            return cmd_bench(a, rest)
        return {"optimize": cmd_optimize, "demo": cmd_demo, "info": cmd_info}[a.cmd](a)
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:         # a file the run writes (checked up front; the disk can still fill)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


