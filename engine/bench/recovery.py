"""Accuracy recovery experiment: held-out accuracy vs sparsity on real data (issue P4).

    python -m engine bench recovery [--out recovery/] [--sparsities 0.5,0.7,0.8,0.9]

Data: scikit-learn's bundled digits (1797 8x8 images, shipped with the package, no download),
upsampled to 16x16 so the convs are big enough for sparse kernels to matter; a fixed split of
1400 training and 397 held-out images. Model: a 4-conv CNN with BN (DigitsNet), trained dense
first. For each sparsity s, three ways to a pruned model, each trained for the same epochs:

  uniform   block 4x1 at s on every hidden conv (first and last layer dense), gradual pruning +
            masked fine-tuning (engine.train.PruneTrainer)
  mapper    the rule mapper's plan (engine.optimize(mapper="rule", sparsity=s): per-layer
            scheme, block and sparsity from measured costs, accuracy floor = uniform 4x1), then
            the same fine-tuning with its plan as targets
  scratch   the uniform plan's final masks trained from a fresh initialisation ("Rethinking the
            Value of Network Pruning")

Writes recovery.json, recovery.md (the table) and recovery.png (accuracy vs sparsity).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn


class DigitsNet(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(1, w, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.conv2 = nn.Conv2d(w, 2 * w, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * w)
        self.conv3 = nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(2 * w)
        self.conv4 = nn.Conv2d(2 * w, 4 * w, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(4 * w)
        self.fc = nn.Linear(4 * w, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.bn3(self.conv3(x)))
        x = torch.relu(self.bn4(self.conv4(x)))
        return self.fc(x.mean((2, 3)))


def digits(size: int = 16, batch: int = 50):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    train = [(x[i:i + batch], y[i:i + batch]) for i in range(0, 1400, batch)]
    return train, [(x[1400:], y[1400:])]


def _train_dense(train, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(epochs):
        net.train()
        for xb, yb in train:
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    return net.eval()


def run(sparsities=(0.5, 0.7, 0.8, 0.9), epochs: int = 12, seed: int = 0,
        progress: bool = True) -> dict:
    import engine
    from engine.accuracy import accuracy
    from engine.train import (PruneTrainer, TrainConfig, targets_from_plan, train_from_scratch,
                              uniform_targets)
    train, val = digits()
    net = _train_dense(train, 20, seed)
    dense_acc = accuracy(net, val)
    x = val[0][0][:1]
    rows = []
    cfg = dict(epochs=epochs, lr=1e-3, prune_epochs=epochs // 2, seed=seed)
    loss = nn.functional.cross_entropy
    for s in sparsities:
        t0 = time.perf_counter()
        targets = uniform_targets(net, "block", (4, 1), s)
        ut = PruneTrainer(net, targets, TrainConfig(**cfg))
        uni = ut.fit(train, loss)
        opt = engine.optimize(net, (x,), mapper="rule", sparsity=s, capture=False,
                              measure=False, progress=False)
        mtargets = targets_from_plan(opt.plan)
        mapped = PruneTrainer(net, mtargets, TrainConfig(**cfg)).fit(train, loss) \
            if mtargets else net
        scratch = train_from_scratch(net, ut.masks, train, loss,
                                     TrainConfig(epochs=epochs, lr=3e-3, seed=seed))
        total = sum(getattr(net, n).weight.numel() for n in targets)
        row = {"sparsity": s, "dense": dense_acc, "uniform": accuracy(uni, val),
               "mapper": accuracy(mapped, val), "scratch": accuracy(scratch, val),
               "mapper_layers": {n: c.key for n, c in mtargets.items()},
               "mapper_sparsity": opt.sparsity,
               "mapper_predicted_speedup": (opt.plan.meta.get("mapping", {})
                                            .get("predicted_speedup")),
               "uniform_sparsity_of_pruned_layers": sum(
                   float((getattr(uni, n).weight == 0).sum()) for n in targets) / total,
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        if progress:
            print(f"  s={s:.2f}: uniform {row['uniform']:.4f} mapper {row['mapper']:.4f} "
                  f"scratch {row['scratch']:.4f} (dense {dense_acc:.4f}, "
                  f"{row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return {"dense": dense_acc, "epochs": epochs, "rows": rows,
            "data": "scikit-learn digits, 1400 train / 397 held out, upsampled to 16x16"}


def table(r: dict) -> str:
    out = ["| sparsity | uniform 4x1 + fine-tune | mapper plan + fine-tune | from scratch | dense |",
           "|---|---|---|---|---|"]
    for row in r["rows"]:
        out.append(f"| {row['sparsity']:.0%} | {row['uniform']:.2%} | {row['mapper']:.2%} "
                   f"(global {row['mapper_sparsity']:.0%}) | {row['scratch']:.2%} | "
                   f"{row['dense']:.2%} |")
    return "\n".join(out)


def plot(r: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = [row["sparsity"] for row in r["rows"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("uniform", "o-"), ("mapper", "s-"), ("scratch", "^--")):
        ax.plot(s, [100 * row[key] for row in r["rows"]], style, label=key)
    ax.axhline(100 * r["dense"], color="k", ls=":", label="dense")
    ax.set_xlabel("sparsity")
    ax.set_ylabel("held-out top-1 (%)")
    ax.set_title("digits (16x16): accuracy after pruning + training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine bench recovery", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="recovery")
    p.add_argument("--sparsities", default="0.5,0.7,0.8,0.9")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    r = run(tuple(float(v) for v in a.sparsities.split(",")), a.epochs, a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recovery.json").write_text(json.dumps(r, indent=1))
    (out / "recovery.md").write_text(table(r) + "\n")
    plot(r, out / "recovery.png")
    print(table(r))
    print(f"written to {out}/ (recovery.json, recovery.md, recovery.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
