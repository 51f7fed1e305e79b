"""Pruned GNNs (issue P10): a GCN whose weight layers are sparse-trained at 80% block 4x1 and run
on the engine's block-sparse linear kernels, the sparse adjacency product left to torch.

    python -m engine bench gcn [--hidden 512,1024] [--methods rigl,set] [--model gcn|sage]
                               [--sparsity 0.8] [--block 4x1] [--epochs 200] [--out gcn]

Data: the k-nearest-neighbour graph of scikit-learn's digits (engine/bench/graph_data.py: 1797
nodes, 64 features, 10 classes, k = 10, symmetric, GCN normalisation with self loops; 200 train
nodes (20 per class), 300 validation, 1297 test; transductive). No package ships a citation graph
inside its wheel (torch_geometric and dgl download theirs), so none is used.
Model: engine.zoo.gcn.GCN 64 -> hidden -> hidden -> 10 (or SAGE, GraphSAGE-mean), dropout 0.5.
Training, the same recipe for every row: full-batch Adam, lr 5e-3 cosine to 0, weight decay
5e-4, 200 epochs, from the same initialisation (seed); accuracy of the last epoch's model.
  dense   every layer dense
  rigl    RigL (engine/train/rigl.py): every layer but the classifier at the target sparsity from
          the first epoch, block rows x cols units dropped by magnitude and regrown by gradient
          every 6 epochs over the first 2/3 of training
  set     the same with SET's random regrowth
  gradual Zhu & Gupta's gradual pruning from the dense start (a pruning baseline)
The sparse-trained model then goes through engine.optimize(scheme="block", sparsity=s,
classifier excluded, backends="native", threads=1): its masks re-derived from the trained
weights (the trained zeros), each layer kept sparse only where measured faster. Test accuracy
of sparse rows is measured on that optimized model (opt(x, adj): the kernels that ship).
Latency: the whole graph in one call, batch = every node, 1 thread, the dense model in torch
against each optimized one, interleaved (engine.runtime.measure.compare); "weights' share" is
the dense model's linear layers alone (on their recorded inputs) over its whole forward.

Writes gcn.json and gcn.md (the table) into --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .. import cli_checks as chk
from ..progress import note
from ..zoo.gcn import MODELS, OnGraph
from .graph_data import Graph, as_csr, digits_graph

METHODS = ("rigl", "set", "gradual")
RECIPE = dict(lr=5e-3, lr_schedule="cosine", weight_decay=5e-4)


def node_batches(g: Graph) -> list:
    """One full-graph batch: the features and the labels of the training nodes (-100 elsewhere:
    cross_entropy ignores them)."""
    y = g.y.clone()
    y[~g.train] = -100
    return [(g.x, y)]


def node_accuracy(fn, g: Graph, adj, nodes: torch.Tensor) -> float:
    """Top-1 over `nodes` (bool mask) of fn(x, adj) (a model or an optimized model)."""
    with torch.no_grad():
        pred = fn(g.x, adj).argmax(1)
    return float((pred[nodes] == g.y[nodes]).float().mean())


def classifier(model: nn.Module) -> tuple:
    """The last layer's linears (kept dense: a block of its rows is a block of classes)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    last = names[-1].rsplit(".", 1)[1]
    return tuple(n for n in names if n.rsplit(".", 1)[1] == last)


def train(init: nn.Module, g: Graph, method: Optional[str], sparsity: float, block: tuple,
          epochs: int, seed: int) -> tuple:
    """(trained model, seconds): `init` trained on g (method None: dense)."""
    from mapping import Candidate

    from engine.train import PruneTrainer, TrainConfig
    dense_layers = classifier(init)
    targets = {} if method is None else {
        f"model.{n}": Candidate("block", tuple(block), sparsity)
        for n, m in init.named_modules() if isinstance(m, nn.Linear) and n not in dense_layers}
    cfg = TrainConfig(epochs=epochs, method=method or "gradual", seed=seed, **RECIPE)
    t0 = time.perf_counter()
    trained = PruneTrainer(OnGraph(init, g.adj), targets, cfg).fit(
        node_batches(g), nn.functional.cross_entropy)
    return trained.model.eval(), time.perf_counter() - t0


def weight_sparsity(model: nn.Module) -> float:
    """Zero weights over all the linear layers' weights."""
    ws = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def weights_share(model: nn.Module, g: Graph, adj, min_time: float) -> float:
    """Time of the model's linear layers alone (on the inputs they get in a forward) over the
    whole forward, dense torch."""
    from engine.runtime.measure import compare
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0])))
             for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(g.x, adj)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        t = compare({"model": lambda: model(g.x, adj),
                     "weights": lambda: [m(x) for m, x in seen]}, min_time=min_time)
    return t["weights"] / t["model"]


def optimized(model: nn.Module, g: Graph, adj, sparsity: float, block: tuple):
    import engine
    return engine.optimize(model, (g.x, adj), scheme="block", block=tuple(block),
                           sparsity=sparsity, exclude=classifier(model), backends="native",
                           threads=1, progress=False)


def run_hidden(arch: str, hidden: int, methods, sparsity: float, block: tuple, epochs: int,
               seed: int, min_time: float, progress: bool) -> list:
    """The rows of one width: dense, then each sparse-training method, timed together."""
    from engine.runtime.measure import compare
    g = digits_graph(seed=seed)
    adj = as_csr(g.adj if arch == "gcn" else g.adj_mean)
    if arch == "sage":
        g.adj = g.adj_mean               # what the model trains on
    torch.manual_seed(seed)
    init = MODELS[arch](g.x.shape[1], hidden, g.classes, 3)
    dense, secs = train(init, g, None, sparsity, block, epochs, seed)
    rows = [{"model": arch, "hidden": hidden, "method": "dense", "train_s": secs,
             "weight_sparsity": 0.0, "val": node_accuracy(dense, g, adj, g.val),
             "test": node_accuracy(dense, g, adj, g.test),
             "weights_share": weights_share(dense, g, adj, min_time / 2)}]
    note(f"  {arch} {hidden}: dense test {rows[0]['test']:.4f} ({secs:.0f} s)", progress)
    calls = {"dense": lambda: dense(g.x, adj)}
    for m in methods:
        model, secs = train(init, g, m, sparsity, block, epochs, seed)
        opt = optimized(model, g, adj, sparsity, block)
        calls[m] = partial(opt, g.x, adj)
        rows.append({"model": arch, "hidden": hidden, "method": m, "train_s": secs,
                     "weight_sparsity": weight_sparsity(opt.pruned_model),
                     "pruned": [c.layer for c in opt.plan.pruned],
                     "kernels": {c.layer: _kernel(c) for c in opt.plan
                                 if c.layer not in classifier(model)},
                     "layers": {c.layer: f"{c.kernel or c.backend}: {c.reason}"
                                for c in opt.plan},
                     "val": node_accuracy(opt, g, adj, g.val),
                     "test": node_accuracy(opt, g, adj, g.test),
                     "torch_test": node_accuracy(model, g, adj, g.test), "notes": opt.notes})
        note(f"  {arch} {hidden}: {m} test {rows[-1]['test']:.4f} ({secs:.0f} s)", progress)
    with torch.no_grad():
        t = compare(calls, min_time=min_time)
    for r in rows:
        r["ms"] = t[r["method"]] * 1e3
        r["speedup"] = t["dense"] / t[r["method"]]
    return rows


def _kernel(choice) -> str:
    """How a layer runs: its sparse kernel's tile, or "dense pack" (kept dense on the native
    dense kernel, whose packing also skips the trained weights' zero columns), or torch."""
    tile = choice.kernel.split("_")[2] if choice.kernel.count("_") >= 2 else choice.kernel
    if choice.pruned:
        return f"{choice.block[0]}x{choice.block[1]} sparse ({tile})"
    return f"dense pack ({tile})" if choice.backend == "native" else "torch"


def run(hidden=(512, 1024), methods=("rigl", "set"), arch: str = "gcn", sparsity: float = 0.8,
        block=(4, 1), epochs: int = 200, seed: int = 0, min_time: float = 2.0,
        progress: bool = True) -> dict:
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = [r for h in hidden for r in run_hidden(arch, h, methods, sparsity, block, epochs,
                                                      seed, min_time, progress)]
    finally:
        torch.set_num_threads(prev)
    return {"data": "digits kNN graph (k=10): 1797 nodes, 200 train / 300 val / 1297 test",
            "sparsity": sparsity, "block": list(block), "epochs": epochs, "seed": seed,
            "threads": 1, "rows": rows}


def table(r: dict) -> str:
    out = ["| model | hidden | training | weight sparsity | hidden layers run as | val | "
           "test | test vs dense | latency | speedup |", "|---" * 10 + "|"]
    dense = {}
    for row in r["rows"]:
        if row["method"] == "dense":
            dense[(row["model"], row["hidden"])] = row["test"]
        name = row["method"] if row["method"] == "dense" else \
            f"{row['method']}, {r['block'][0]}x{r['block'][1]} at {r['sparsity']:.0%}"
        if "weights_share" in row:
            name += f" (linears {row['weights_share']:.0%} of the time)"
        d = row["test"] - dense[(row["model"], row["hidden"])]
        kernels = " / ".join(row["kernels"].values()) if row.get("kernels") else "torch"
        out.append(f"| {row['model'].upper()} | {row['hidden']} | {name} | "
                   f"{row['weight_sparsity']:.1%} | {kernels} | {row['val']:.2%} | "
                   f"{row['test']:.2%} | "
                   f"{100 * d:+.2f} pt | {row['ms']:.2f} ms | {row['speedup']:.2f}x |")
    return "\n".join(out)


def _widths(text: str) -> tuple:
    try:
        vals = tuple(int(t, 10) for t in text.split(","))
    except ValueError:
        vals = ()
    if not vals or not all(4 <= v <= 16384 for v in vals):
        raise argparse.ArgumentTypeError(f"must be comma-separated widths in [4, 16384], got "
                                         f"{text!r}")
    return vals


def main(argv: Optional[list] = None) -> int:
    p = chk.Parser(prog="python -m engine bench gcn", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gcn", choices=sorted(MODELS))
    p.add_argument("--hidden", type=_widths, default=(512, 1024),
                   help="hidden widths, comma-separated (e.g. 512,1024)")
    p.add_argument("--methods", type=chk.names(METHODS), default=("rigl", "set"))
    p.add_argument("--sparsity", type=chk.real(0.0, 1.0, lo_open=True, hi_open=True,
                                               what="a number in (0, 1)"), default=0.8)
    p.add_argument("--block", type=chk.block, default=(4, 1))
    p.add_argument("--epochs", type=chk.integer(1, 100000), default=200)
    p.add_argument("--seed", type=chk.integer(0, 2**32 - 1), default=0)
    p.add_argument("--min-time", type=chk.seconds, default=2.0, help="seconds per timed model")
    p.add_argument("--out", default="gcn")
    a = p.parse_args(argv)
    chk.writable_dir("--out", a.out)
    r = run(a.hidden, a.methods, a.model, a.sparsity, a.block, a.epochs, a.seed, a.min_time)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gcn.json").write_text(json.dumps(r, indent=1))
    (out / "gcn.md").write_text(table(r) + "\n")
    print(r["data"])
    print(table(r))
    print(f"written to {out}/ (gcn.json, gcn.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
