"""End-to-end benchmark of the compiled host artifact (opt.save -> engine.load) vs the dense
model in PyTorch eager and in ONNX Runtime, same run, same threads, interleaved; outputs checked.

    python -m engine bench artifact [--models resnet50,mobilenetv2] [--sparsity 0,0.8]
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Optional

import torch

from .. import cli_checks as chk


def run_one(model_name: str, sparsity: float, threads: int = 2, min_time: float = 3.0,
            block=(4, 1), seed: int = 0) -> dict:
    import engine
    from engine import zoo
    from engine.bench.e2e import onnxruntime_session
    from engine.runtime.measure import compare

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    model = zoo.get(model_name).eval()
    x = torch.randn(zoo.input_shape(model_name))
    # sparsity 0: nothing to measure per layer; every layer runs on the dense native kernel
    opt = engine.optimize(model, (x,), target="host", sparsity=sparsity, block=block,
                          threads=threads, measure=sparsity > 0, capture=False)
    with tempfile.TemporaryDirectory() as d:
        art = engine.load(opt.save(os.path.join(d, "artifact")))
        with torch.no_grad():
            err = (art(x) - opt.pruned_model(x)).abs().max().item()
        cands = {"artifact": lambda: art(x), "torch_eager": lambda: model(x)}
        sess, why = onnxruntime_session(model, (x,), threads)
        if sess is not None:
            feed = {sess.get_inputs()[0].name: x.numpy()}
            cands["onnxruntime"] = lambda: sess.run(None, feed)
        t = compare(cands, min_time=min_time, min_runs=10, block=5)
    r = {"model": model_name, "sparsity": sparsity, "threads": threads,
         "pruned_layers": len(opt.plan.pruned), "layers": len(opt.plan),
         "ms": {k: v * 1e3 for k, v in t.items()}, "max_abs_err_vs_masked_torch": err,
         "speedup_vs_torch": t["torch_eager"] / t["artifact"]}
    if "onnxruntime" in t:
        r["speedup_vs_onnxruntime"] = t["onnxruntime"] / t["artifact"]
    else:
        r["note"] = why
    return r


def format_rows(rows: list) -> str:
    head = (f"{'model':<12} {'sparsity':>8} {'artifact ms':>11} {'torch ms':>9} {'ORT ms':>8} "
            f"{'x torch':>8} {'x ORT':>7}")
    out = [head, "-" * len(head)]
    for r in rows:
        ms = r["ms"]
        out.append(f"{r['model']:<12} {r['sparsity']:>8.0%} {ms['artifact']:>11.2f} "
                   f"{ms['torch_eager']:>9.2f} {ms.get('onnxruntime', float('nan')):>8.2f} "
                   f"{r['speedup_vs_torch']:>7.2f}x {r.get('speedup_vs_onnxruntime', float('nan')):>6.2f}x")
    return "\n".join(out)


def main(argv: Optional[list] = None) -> int:
    ap = chk.Parser(prog="python -m engine bench artifact", description=__doc__)
    ap.add_argument("--models", default="resnet50,mobilenetv2")
    ap.add_argument("--sparsity", default="0,0.8")
    ap.add_argument("--threads", type=chk.threads, default=os.cpu_count() or 1)
    ap.add_argument("--min-time", type=chk.seconds, default=3.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    rows = [run_one(m, float(s), a.threads, a.min_time) for m in a.models.split(",")
            for s in a.sparsity.split(",")]
    print(format_rows(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0
