"""End-to-end benchmark: the optimized model vs the dense model in PyTorch eager and in ONNX
Runtime, same run, same thread count, interleaved; outputs checked against each other.

    python -m engine bench e2e --model resnet50 --sparsity 0.8 --block 4x1 --threads 2
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Optional

import torch

from .. import cli_checks as chk


def onnxruntime_session(model: torch.nn.Module, example_inputs: tuple, threads: int):
    """An ONNX Runtime session for the dense model, or (None, reason) if unavailable."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime is not installed (pip install onnxruntime onnx)"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.onnx")
        try:
            torch.onnx.export(model, example_inputs, path, dynamo=False, opset_version=17,
                              input_names=[f"input{i}" for i in range(len(example_inputs))])
        except Exception as e:  # noqa: BLE001
            return None, f"ONNX export failed: {type(e).__name__}: {e}"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return sess, ""


def run(model_name: str = "resnet50", sparsity: float = 0.8, block=(4, 1), scheme: str = "block",
        threads: int = 2, min_time: float = 3.0, seed: int = 0, input_shape=None,
        with_ort: bool = True, verbose: bool = True) -> dict:
    import engine
    from engine import zoo
    from engine.runtime.measure import compare

    torch.manual_seed(seed)
    model = zoo.get(model_name).eval()
    x = torch.randn(input_shape or zoo.input_shape(model_name))
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    opt = engine.optimize(model, (x,), target="host", scheme=scheme, block=block,
                          sparsity=sparsity, threads=threads)
    t_opt = time.perf_counter() - t0
    cands = {"engine": lambda: opt(x), "torch_eager": lambda: model(x)}
    notes = []
    sess = None
    if with_ort:
        sess, why = onnxruntime_session(model, (x,), threads)
        if sess is None:
            notes.append(why)
        else:
            feed = {sess.get_inputs()[0].name: x.numpy()}
            cands["onnxruntime"] = lambda: sess.run(None, feed)
    with torch.no_grad():
        ref_dense = model(x)
        ref_masked = opt.pruned_model(x)
        got = opt(x)
        if sess is not None:
            ort_out = torch.from_numpy(sess.run(None, feed)[0])
            notes.append(f"onnxruntime vs torch dense max abs diff "
                         f"{(ort_out - ref_dense).abs().max().item():.2e}")
    notes.append(f"engine vs masked reference max abs diff "
                 f"{(got - ref_masked).abs().max().item():.2e}")
    times = compare(cands, min_time=min_time, min_runs=10, block=5)
    res = {
        "model": model_name, "input": list(x.shape), "threads": threads, "scheme": scheme,
        "block": list(block), "sparsity": sparsity, "optimize_seconds": t_opt,
        "ms": {k: v * 1e3 for k, v in times.items()},
        "speedup_vs_torch": times["torch_eager"] / times["engine"],
        "pruned_layers": len(opt.plan.pruned), "layers": len(opt.plan),
        "model_sparsity": opt.sparsity, "notes": notes,
    }
    if "onnxruntime" in times:
        res["speedup_vs_onnxruntime"] = times["onnxruntime"] / times["engine"]
    if verbose:
        print(format_result(res))
    return res


def format_result(r: dict) -> str:
    lines = [f"{r['model']} {tuple(r['input'])}, {r['threads']} threads, {r['scheme']} "
             f"{'x'.join(map(str, r['block']))} at {r['sparsity']:.0%} "
             f"({r['pruned_layers']}/{r['layers']} layers pruned, "
             f"{r['model_sparsity']:.1%} of prunable weights)"]
    for k, v in r["ms"].items():
        lines.append(f"  {k:<14} {v:8.2f} ms")
    lines.append(f"  engine speedup vs torch eager: {r['speedup_vs_torch']:.2f}x")
    if "speedup_vs_onnxruntime" in r:
        lines.append(f"  engine speedup vs onnxruntime: {r['speedup_vs_onnxruntime']:.2f}x")
    lines += [f"  note: {n}" for n in r["notes"]]
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> int:
    from engine.api import parse_block
    ap = chk.Parser(prog="python -m engine bench e2e", description=__doc__)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--scheme", default="block")
    ap.add_argument("--block", default="4x1")
    ap.add_argument("--threads", type=chk.threads, default=os.cpu_count() or 1)
    ap.add_argument("--min-time", type=chk.seconds, default=3.0)
    ap.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime")
    ap.add_argument("--json", help="write the result as JSON to this file")
    a = ap.parse_args(argv)
    r = run(a.model, a.sparsity, parse_block(a.block), a.scheme, a.threads, a.min_time,
            with_ort=not a.no_ort)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0
