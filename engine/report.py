"""The mapping report: why each layer got its choice, as a table and a plot.

    write_report(opt, "report/")   # after engine.optimize(..., mapper=...)
    -> report/report.md            summary (mapper, budget, predicted totals, cost table) and the
                                   per-layer table (scheme, block, sparsity, kernel, speedup,
                                   reason)
    -> report/plan.json            the plan (engine.optimize(plan=...) replays it)
    -> report/latency_vs_block.png one panel per layer: measured latency of every block size
                                   (and pattern) at the layer's sparsity level, the dense
                                   latency as a dashed line, the min_speedup bar dotted, the
                                   chosen point starred

Files are written to a temporary directory next to the target and renamed into place, so a
failed report never leaves half a directory behind.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import ConfigError


def _family_label(key: str) -> str:
    head = key.split("@")[0]
    tail = "+int8" if key.endswith("+int8") else ""
    return (head[5:] if head.startswith("block") else head) + tail


def _panel_data(problem, spec, choice) -> tuple:
    """(labels, latencies, allowed flags, chosen index or None, level) for one layer."""
    from mapping import Candidate
    level = choice.sparsity if choice.pruned else problem.budget.sparsity
    cands = [c for c in problem.allowed(spec.name) if not c.is_dense]
    cands += [Candidate.from_key(r.key) for r in problem.rejected(spec.name)]
    if not cands:
        return [], [], [], None, level
    levels = sorted({c.sparsity for c in cands})
    if level is None:
        level = levels[-1]
    level = min(levels, key=lambda s: abs(s - level))
    labels, lat, ok, chosen = [], [], [], None
    allowed = {c.key for c in problem.allowed(spec.name)}
    # one x order for every panel: blocks by size (then rows), pattern and others last
    cands.sort(key=lambda c: (c.block is None, (c.block[0] * c.block[1], c.block[0])
                              if c.block else (0, 0), c.scheme))
    for c in cands:
        if abs(c.sparsity - level) > 1e-9 or c.backend != "native":
            continue
        us = problem.costs.latency(problem.target, spec.shape_key, c.key)
        if us is None:
            continue
        if choice.pruned and _same(c, choice):
            chosen = len(labels)
        labels.append(_family_label(c.key))
        lat.append(us)
        ok.append(c.key in allowed)
    return labels, lat, ok, chosen, level


def _same(c, choice) -> bool:
    return (c.scheme == choice.scheme and abs(c.sparsity - choice.sparsity) < 0.02 and
            (c.block or None) == (tuple(choice.block) if choice.block else None))


def plot(problem, plan, path: os.PathLike) -> Path:
    """latency_vs_block.png (see the module docstring)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ConfigError("the report plot needs matplotlib (pip install matplotlib)") from e
    specs = [s for s in problem.layers if not s.is_grouped]
    cols = 6
    rows = max(1, -(-len(specs) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat[len(specs):]:
        ax.axis("off")
    for ax, spec in zip(axes.flat, specs):
        choice = plan[spec.name] if spec.name in plan else None
        dense = problem.costs.dense(problem.target, spec.shape_key)
        labels, lat, ok, chosen, level = _panel_data(problem, spec, choice)
        xs = range(len(labels))
        ax.plot(xs, lat, "-", color="0.7", lw=1)
        ax.scatter([x for x in xs if ok[x]], [lat[x] for x in xs if ok[x]], s=14, c="tab:blue")
        ax.scatter([x for x in xs if not ok[x]], [lat[x] for x in xs if not ok[x]], s=14,
                   facecolors="none", edgecolors="tab:gray")
        if dense:
            ax.axhline(dense, ls="--", color="k", lw=1)
            ax.axhline(dense / problem.min_speedup, ls=":", color="k", lw=0.8)
        if chosen is not None:
            ax.scatter([chosen], [lat[chosen]], marker="*", s=140, c="tab:red", zorder=5)
        what = (f"{choice.scheme} {'x'.join(map(str, choice.block)) if choice.block else ''}"
                f"@{choice.sparsity:.2f}" if choice is not None and choice.pruned else "dense")
        ax.set_title(f"{spec.name}\n{what}", fontsize=7)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=6, rotation=45)
        ax.tick_params(axis="y", labelsize=6)
        if level is not None:
            ax.text(0.98, 0.95, f"s={level:.2f}", transform=ax.transAxes, ha="right", va="top",
                    fontsize=6)
    mapper = plan.meta.get("mapping", {}).get("mapper") or plan.meta.get("mapper", "plan")
    fig.suptitle(f"{mapper} on {problem.target}: latency (us) per "
                 f"block size at each layer's sparsity; dashed = dense, dotted = dense / "
                 f"min_speedup, star = chosen, hollow = not faster than dense", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def summary(opt) -> str:
    plan = opt.plan
    m = plan.meta.get("mapping", {})
    pred = m.get("predicted", {})
    lines = [f"# Mapping report: {m.get('mapper', 'plan')} on {plan.target}", "",
             f"- budget: {m.get('budget')}",
             f"- predicted (sum of measured layer latencies): "
             f"{(pred.get('latency_us') or 0) / 1e3:.2f} ms vs dense "
             f"{(m.get('dense', {}).get('latency_us') or 0) / 1e3:.2f} ms; global sparsity "
             f"{pred.get('sparsity', 0):.3f}; accuracy proxy {pred.get('proxy') or 0:.4f}",
             f"- feasible: {m.get('feasible')} {m.get('violations') or ''}",
             f"- costs: {m.get('mapping', {}).get('cost_table')} (profiler "
             f"{m.get('mapping', {}).get('profiler')}, "
             f"{m.get('mapping', {}).get('measurements_taken')} new measurements)",
             f"- proxy: {m.get('mapping', {}).get('proxy')}; reference "
             f"{m.get('mapping', {}).get('reference')} = "
             f"{m.get('mapping', {}).get('reference_proxy')}",
             f"- layers pruned: {len(plan.pruned)} of {len(plan)} (plus "
             f"{len(plan.other_layers)} other weight layers, left dense); {opt.sparsity:.1%} "
             f"of all weight-layer parameters pruned", "",
             "## Notes", ""] + [f"- {n}" for n in opt.notes] + [
             "", "## Per layer", "", "```", plan.table(), "```", "",
             "![latency vs block size](latency_vs_block.png)", ""]
    return "\n".join(lines)


def write_report(opt, directory: os.PathLike) -> Path:
    """Write the report directory (see the module docstring); returns its path."""
    if getattr(opt, "mapping", None) is None:
        raise ConfigError("write_report needs a model optimized with mapper=... (it plots the "
                          "mapper's measured costs)")
    out = Path(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        opt.plan.save(tmp / "plan.json")
        plot(opt.mapping, opt.plan, tmp / "latency_vs_block.png")
        (tmp / "report.md").write_text(summary(opt))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
