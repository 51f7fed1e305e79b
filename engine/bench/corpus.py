"""Any model a user brings, end to end: every model of the corpus (corpus_models.py: vision,
text, decoder-with-cache, detection, recurrent, audio and U-Net architectures) through
optimize -> opt(...) -> save -> load -> an arm64 artifact run under qemu, each checked against
the masked torch model, with its weight layers counted and its end-to-end time against its
dense self (the whole-model guard's figures).

    python -m engine bench corpus [--models bert,unet] [--sparsity 0.8] [--no-arm64]
        [--no-measure] [--out corpus]

Per model: the weight layers (the ones the engine can prune, and the others, listed with
reasons), how many were pruned and why the rest stayed dense, opt.sparsity over all weights,
the guard's optimized / dense ms and what it kept, and the largest output error relative to
the reference's largest value for opt(...), the loaded host artifact and the arm64 artifact.
A step that fails is recorded with its error and the model goes on to the next step. The
user's model must come back unchanged (state and module types): checked too. Output:
<out>/corpus.md and <out>/corpus.json. Needs `transformers` (bench-only).
"""
from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import torch

from .. import cli_checks as chk
from .corpus_models import MODELS


def _leaves(out) -> list:
    from ..graph.outputs import flatten_outputs
    return [t for _, t in flatten_outputs(out)[0]]


def _rel_err(got, ref) -> float:
    got, ref = _leaves(got) if not isinstance(got, list) else got, _leaves(ref)
    if len(got) != len(ref):
        raise AssertionError(f"{len(got)} outputs, the reference has {len(ref)}")
    worst = 0.0
    for g, r in zip(got, ref):
        g = torch.as_tensor(g)
        if tuple(g.shape) != tuple(r.shape):
            raise AssertionError(f"output shape {tuple(g.shape)} != {tuple(r.shape)}")
        if not r.is_floating_point():
            worst = max(worst, float((g != r).any()))
            continue
        worst = max(worst, (g.float() - r).abs().max().item() / (r.abs().max().item() + 1e-12))
    return worst


def _step(row: dict, key: str, fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001  (recorded: the corpus goes on)
        row[key] = f"FAIL {type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
        return None


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(n, type(m)) for n, m in model.named_modules()])


def _unchanged(model, snap) -> bool:
    state, types = snap
    return [(n, type(m)) for n, m in model.named_modules()] == types and all(
        torch.equal(state[k], v) for k, v in model.state_dict().items())


def run_model(name: str, a, out: Path, runner) -> dict:
    import engine
    from ..graph.inputs import ModelInputs, call
    row: dict = {"model": name}
    model, args, kwargs = MODELS[name]()
    snap = _snapshot(model)
    t0 = time.time()
    opt = _step(row, "optimize", lambda: engine.optimize(
        model, args, example_kwargs=kwargs, sparsity=a.sparsity, block=(4, 1),
        measure=a.measure, progress=False))
    row["optimize_s"] = round(time.time() - t0, 1)
    row["model_unchanged"] = _unchanged(model, snap)
    if opt is None:
        return row
    plan = opt.plan
    kept = collections.Counter(c.reason.split(":")[0] for c in plan if not c.pruned)
    row.update(listed=len(opt.layers), pruned=sum(c.pruned for c in plan),
               other=len(plan.other_layers), sparsity=round(opt.sparsity, 3),
               kept_dense=dict(kept), other_reasons=dict(collections.Counter(
                   o["reason"].split(":")[0] for o in plan.other_layers)),
               guard=plan.meta.get("guard"))
    with torch.no_grad():
        ref = call(opt.pruned_model, opt.example_inputs)
    row["err_opt"] = _step(row, "err_opt", lambda: _rel_err(call(opt, opt.example_inputs), ref))
    tensors = list(ModelInputs(opt.example_inputs).tensors)
    host = out / "artifacts" / name
    if _step(row, "save", lambda: opt.save(host)) is not None:
        row["err_artifact"] = _step(row, "err_artifact", lambda: _rel_err(
            engine.load(host)(*tensors), ref))
    if runner is not None:
        from .qemu import run_arm64
        arm = out / "artifacts" / f"{name}-arm64"
        if _step(row, "arm64", lambda: opt.save(arm, target="arm64")) is not None:
            row["err_arm64"] = _step(row, "err_arm64", lambda: _rel_err(
                [torch.from_numpy(o.copy()) for o in run_arm64(runner, arm, tensors)], ref))
    return row


def _fmt_err(v) -> str:
    return f"{v:.1e}" if isinstance(v, float) else ("-" if v is None else str(v)[:60])


def table(rows: list) -> str:
    lines = ["| model | weight layers | pruned | sparsity | vs dense self | max rel err "
             "opt / artifact / arm64 | unchanged | kept dense |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g = r.get("guard") or {}
        speed = (f"{g['dense_ms']:.2f} / {g['optimized_ms']:.2f} ms = {g['speedup']:.2f}x "
                 f"({g['kept']}, {g.get('measured', 'runtime')})" if g.get("speedup")
                 else "not measured")
        errs = " / ".join(_fmt_err(r.get(k)) for k in ("err_opt", "err_artifact", "err_arm64"))
        kept = ", ".join(f"{n} {k[:40]}" for k, n in (r.get("kept_dense") or {}).items())
        fail = r.get("optimize", "")
        lines.append(f"| {r['model']} | {r.get('listed', '-')} + {r.get('other', '-')} other | "
                     f"{r.get('pruned', '-')} | {r.get('sparsity', '-')} | {speed} | {errs} | "
                     f"{r.get('model_unchanged')} | {kept or fail or '-'} |")
    return "\n".join(lines)


def main(argv: list) -> int:
    ap = chk.Parser(prog="python -m engine bench corpus", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=chk.names(tuple(MODELS)), default=tuple(MODELS),
                    help=f"comma list out of {','.join(MODELS)} (default: all)")
    ap.add_argument("--sparsity", type=chk.real(0.0, 0.99), default=0.8)
    ap.add_argument("--no-arm64", dest="arm64", action="store_false",
                    help="skip the arm64 artifacts (qemu)")
    ap.add_argument("--no-measure", dest="measure", action="store_false",
                    help="prune every layer without measuring (no guard figures)")
    ap.add_argument("--out", default="corpus")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runner = None
    if a.arm64:
        from .qemu import arm64_runner
        runner = arm64_runner()
    rows = []
    for name in a.models:
        rows.append(run_model(name, a, out, runner))
        print(json.dumps(rows[-1], default=str), flush=True)
        (out / "corpus.json").write_text(json.dumps(rows, indent=1, default=str))
    (out / "corpus.md").write_text(table(rows) + "\n")
    print(table(rows))
    return 0
