"""AutoBot vs magnitude filter pruning at the same FLOPs, on real data (issue P10).

    python -m engine bench autobot [--data digits|mnist5k] [--flops 0.5] [--epochs 6]
                                   [--share 0.5] [--out DIR]

The bench recovery CNN (DigitsNet, BatchNorm) is trained dense (20 epochs, Adam 3e-3; data as
in engine/bench/recovery.py), then AutoBot (engine/train/autobot.py; Castells & Yeom 2021)
trains its bottleneck gates for one pass over the first `share` of the training images in
batches of 10, and derives per-layer ratios that meet the FLOPs target. Filter pruning
(engine.schemes "filter": the model physically shrunk) then removes, per coupled group:

  autobot        the lowest-gated channels, at AutoBot's per-layer ratios
  l1, l2         the filters of lowest L1 / L2 norm, at the same per-layer ratios
  l1 uniform     the filters of lowest L1 norm, one ratio for every group, the largest whose
                 FLOPs are not above the target

Each shrunk model's held-out top-1: as cut, after re-estimating its BatchNorm statistics on
the training inputs (no gradient), and after the same fine-tuning (`epochs` epochs, Adam 1e-3,
cosine; engine.train.PruneTrainer with no targets: every remaining weight trains). FLOPs are
counted on each shrunk model (conv / linear multiply-accumulates, batch 1). Latency: batch 1,
one thread (torch.set_num_threads(1)), torch eager, every model timed interleaved in one run
(engine.runtime.measure.compare), plus the AutoBot model as engine.optimize(scheme="filter",
sparsity=res.sparsity, importance=res.scores, threads=1) runs it on the engine's runtime (each
shrunk layer on the fastest dense kernel measured for it).
Writes autobot.json and autobot.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .. import cli_checks as chk
from ..progress import note
from . import recovery

VARIANTS = ("autobot", "l1", "l2", "l1 uniform")


def macs(model: nn.Module, x: torch.Tensor) -> float:
    """Conv / linear multiply-accumulates of one forward on `x` (batch 1), counted from the
    output shapes: output elements * (input channels per group * kernel size)."""
    total = []

    def hook(m, inputs, out):
        per = m.weight.shape[1] * (m.weight[0, 0].numel() if m.weight.dim() > 2 else 1)
        total.append(out.numel() / out.shape[0] * per)
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(x[:1])
    finally:
        for h in handles:
            h.remove()
    return float(sum(total))


train_dense = recovery.train_dense     # DigitsNet(width) trained dense, seeded


def rebatch(train, share: float, batch: int = 10) -> list:
    """The first `share` of the training images, in batches of `batch`."""
    x = torch.cat([b[0] for b in train])
    y = torch.cat([b[1] for b in train])
    n = max(batch, round(share * len(y)))
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def run(data: str = "digits", flops_target: float = 0.5, epochs: int = 6, share: float = 0.5,
        seed: int = 0, dense_epochs: int = 20, width: int = 32, time_it: bool = True,
        progress: bool = True) -> dict:
    from engine.accuracy import accuracy
    from engine.train.autobot import autobot
    train, val = recovery.load(data)
    x = val[0][0][:1]
    net = train_dense(train, dense_epochs, seed, width)
    dense_acc, dense_macs = accuracy(net, val), macs(net, x)
    note(f"  dense: {dense_acc:.4f}", progress)
    res = autobot(net, rebatch(train, share), flops_target=flops_target)
    note(f"  autobot: ratios {res.keep_ratios}, FLOPs {res.flops['chosen']:.3f}", progress)
    rows, models = {}, {}
    for v in VARIANTS:
        sparsity, importance = _variant(v, res, net, x, flops_target, dense_macs)
        small, _ = _prune(net, x, sparsity, importance)
        rows[v], models[v] = _evaluate(small, train, val, epochs, seed), small
        rows[v].update(flops=macs(small, x) / dense_macs, sparsity=sparsity)
        note(f"  {v}: " + ", ".join(f"{k} {rows[v][k]:.4f}" for k in
                                   ("flops", "as_cut", "bn_recalibrated", "finetuned")), progress)
    out = {"data": data, "flops_target": flops_target, "epochs": epochs, "share": share,
           "dense": dense_acc, "dense_macs": dense_macs, "autobot_flops": res.flops,
           "autobot_steps": len(res.history), "rows": rows, "threads": torch.get_num_threads()}
    if time_it:
        out["ms"] = _latency(net, models, res, x)
    return out


def _variant(v: str, res, net, x, target: float, dense_macs: float):
    if v == "autobot":
        return res.sparsity, res.scores
    if v in ("l1", "l2"):
        return res.sparsity, v
    lo, hi = 0.0, 0.95          # l1 uniform: the lowest uniform ratio meeting the target
    for _ in range(12):
        mid = (lo + hi) / 2
        small, _ = _prune(net, x, mid, "l1")
        if macs(small, x) <= target * dense_macs:
            hi = mid
        else:
            lo = mid
    return hi, "l1"


def _prune(net, x, sparsity, importance):
    from engine.schemes import get_scheme
    return get_scheme("filter").prune(net, (x,), sparsity, importance)


def _evaluate(small: nn.Module, train, val, epochs: int, seed: int) -> dict:
    from engine.accuracy import accuracy, recalibrate_bn
    from engine.train import PruneTrainer, TrainConfig
    recal = copy.deepcopy(small)
    recalibrate_bn(recal, (b[0] for b in train))
    tuned = PruneTrainer(small, {}, TrainConfig(epochs=epochs, lr=1e-3, lr_schedule="cosine",
                                                seed=seed)).fit(train,
                                                                nn.functional.cross_entropy)
    return {"as_cut": accuracy(small, val), "bn_recalibrated": accuracy(recal.eval(), val),
            "finetuned": accuracy(tuned, val)}


def _latency(net, models: dict, res, x) -> dict:
    import engine
    from engine.runtime.measure import compare
    opt = engine.optimize(net, (x,), scheme="filter", sparsity=res.sparsity,
                          importance=res.scores, threads=1, capture=False, progress=False)
    fns = {"dense": lambda: net(x), "autobot (engine runtime)": lambda: opt(x)}
    fns.update({v: (lambda m=m: m(x)) for v, m in models.items()})
    with torch.no_grad():
        t = compare(fns, min_time=2.0)
    return {k: v * 1e3 for k, v in t.items()}


def table(r: dict) -> str:
    ms = r.get("ms")
    head = ["pruned by", "kept per group", "FLOPs", "as cut", "BN re-estimated",
            f"fine-tuned ({r['epochs']} epochs)"] + (["ms (vs dense)"] if ms else [])
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for v, row in r["rows"].items():
        s = row["sparsity"]
        kept = (", ".join(f"{k} {1 - f:.0%}" for k, f in s.items()) if isinstance(s, dict)
                else f"{1 - s:.0%} each")
        cells = [v, kept, f"{row['flops']:.1%}", f"{row['as_cut']:.2%}",
                 f"{row['bn_recalibrated']:.2%}", f"{row['finetuned']:.2%}"]
        if ms:
            cells.append(f"{ms[v]:.3f} ({ms['dense'] / ms[v]:.2f}x)")
        out.append("| " + " | ".join(cells) + " |")
    out.append(f"| dense | 100% | 100% | {r['dense']:.2%} | | | "
               + (f"{ms['dense']:.3f} |" if ms else "|"))
    if ms:
        k = "autobot (engine runtime)"
        out.append(f"\nAutoBot model on the engine runtime (optimize(scheme='filter')): "
                   f"{ms[k]:.3f} ms ({ms['dense'] / ms[k]:.2f}x dense torch)")
    return "\n".join(out)


def main(argv: Optional[list] = None) -> int:
    p = chk.Parser(prog="python -m engine bench autobot", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="digits", choices=recovery.DATASETS)
    p.add_argument("--flops", type=float, default=0.5, help="FLOPs target (share of dense)")
    p.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs")
    p.add_argument("--share", type=float, default=0.5,
                   help="share of the training images AutoBot sees (one pass)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="autobot")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    r = run(a.data, a.flops, a.epochs, a.share, a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "autobot.json").write_text(json.dumps(r, indent=1, default=str))
    (out / "autobot.md").write_text(table(r) + "\n")
    print(table(r))
    print(f"written to {out}/ (autobot.json, autobot.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
