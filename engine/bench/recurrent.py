"""An LSTM text classifier pruned matrix by matrix (engine.graph.recurrent), its artifact
against the engine's dense artifact and torch's fused nn.LSTM.

    python -m engine bench recurrent --out rnn/ [--hidden 256] [--embed 128] [--steps 64]
        [--layers 1] [--sparsity 0.8] [--threads 2] [--rounds 5] [--seconds 2]

Builds (measured plan, block 4x1, guard off: the artifact is what is timed) the sparse artifact
and the dense one (sparsity 0), then alternates rounds: both artifacts interleaved in one
process, torch in a process of its own (two thread pools in one process steal each other's
cores), each round's JSON line with the vCPUs' cache-line round trip (engine.bench.machine).
The ratios are per round."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .. import cli_checks as chk


class LSTMClassifier(nn.Module):
    """Embedding -> LSTM -> Linear on the last step; int64 token ids in."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, classes: int = 10):
        super().__init__()
        self.emb = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, ids):
        out, _ = self.lstm(self.emb(ids))
        return self.fc(out[:, -1])


def _model(cfg: dict):
    torch.manual_seed(0)
    model = LSTMClassifier(10000, cfg["embed"], cfg["hidden"], cfg["layers"]).eval()
    return model, torch.randint(0, 10000, (1, cfg["steps"]))


def build(out: Path, cfg: dict) -> None:
    import engine
    model, ids = _model(cfg)
    for name, sparsity in (("sparse", cfg["sparsity"]), ("dense", 0.0)):
        opt = engine.optimize(model, (ids,), sparsity=sparsity, block=(4, 1),
                              threads=cfg["threads"], guard="off", progress=False)
        opt.save(out / name, overwrite=True)
        if sparsity:
            print(opt.plan.table().split("\n\n")[0])
    (out / "config.json").write_text(json.dumps(cfg))


def time_round(out: Path, which: str, seconds: float) -> dict:
    """One process's medians (ms): "art" both artifacts interleaved, "torch" the model."""
    import engine
    from ..runtime.measure import compare
    from .machine import core_to_core_ns
    cfg = json.loads((out / "config.json").read_text())
    model, ids = _model(cfg)
    if which == "art":
        s = engine.load(out / "sparse", threads=cfg["threads"])
        d = engine.load(out / "dense", threads=cfg["threads"])
        r = compare({"sparse_artifact": lambda: s(ids), "dense_artifact": lambda: d(ids)},
                    min_time=seconds)
    else:
        torch.set_num_threads(cfg["threads"])
        with torch.no_grad():
            r = compare({"torch": lambda: model(ids)}, min_time=seconds)
    res = {k: round(v * 1e3, 4) for k, v in r.items()}
    res["core_to_core_ns"] = round(core_to_core_ns() or 0.0, 1)
    return res


def _run(out: Path, which: str, seconds: float) -> dict:
    cmd = [sys.executable, "-m", "engine", "bench", "recurrent", "one", which, "--out",
           str(out), "--seconds", str(seconds)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Optional[list] = None) -> int:
    ap = chk.Parser(prog="python -m engine bench recurrent", description=__doc__)
    ap.add_argument("step", choices=["all", "build", "time", "one"], nargs="?", default="all")
    ap.add_argument("which", nargs="?", default="art", choices=["art", "torch"])
    ap.add_argument("--out", default="recurrent")
    ap.add_argument("--embed", type=chk.integer(1, 4096), default=128)
    ap.add_argument("--hidden", type=chk.integer(4, 4096), default=256)
    ap.add_argument("--steps", type=chk.integer(1, 1024), default=64)
    ap.add_argument("--layers", type=chk.integer(1, 8), default=1)
    ap.add_argument("--sparsity", type=chk.real(0.0, 1.0, lo_open=True, hi_open=True,
                                                what="sparsity in (0, 1)"), default=0.8)
    ap.add_argument("--threads", type=chk.threads, default=2)
    ap.add_argument("--rounds", type=chk.integer(1, 100), default=5)
    ap.add_argument("--seconds", type=chk.seconds, default=2.0)
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.step == "one":
        print(json.dumps(time_round(out, a.which, a.seconds)))
        return 0
    if a.step in ("all", "build"):
        out.mkdir(parents=True, exist_ok=True)
        build(out, {"embed": a.embed, "hidden": a.hidden, "steps": a.steps, "layers": a.layers,
                    "sparsity": a.sparsity, "threads": a.threads})
    if a.step in ("all", "time"):
        for i in range(a.rounds):
            art, ref = _run(out, "art", a.seconds), _run(out, "torch", a.seconds)
            print(json.dumps({"round": i, **art, **ref,
                              "dense_artifact/sparse": round(art["dense_artifact"] /
                                                             art["sparse_artifact"], 3),
                              "torch/sparse": round(ref["torch"] / art["sparse_artifact"], 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
