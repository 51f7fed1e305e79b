"""`bench peers`' summary: per thread count and model, each runtime's min and median over rounds
of its per-process medians, the best dense peer, and the engine's ratios to it (the best peer's
ms over the engine's, by the min); rendered as one markdown table per thread count. At 2+ threads a process counts with the
calls it made while the vCPUs were close (placement.py)."""
from __future__ import annotations

import statistics

from .placement import CLOSE_NS

PEERS = {"ort": "ONNX Runtime", "openvino": "OpenVINO", "xnnpack": "ExecuTorch+XNNPACK"}
ENGINE = {"engine:dense": "engine dense", "engine:block4x1": "engine 80% block 4x1",
          "engine:mapped": "engine mapped 80% (rule)"}


def summarize(runs: list) -> dict:
    """{threads: {model: {key: {ms_min, ms_median, rounds, flagged?/error?}}}} from the list of
    per-process results (each tagged with threads, model, key)."""
    out: dict = {}
    for r in runs:
        cell = out.setdefault(str(r["threads"]), {}).setdefault(r["model"], {}) \
                  .setdefault(r["key"], {"rounds": []})
        cell["rounds"].append(r)
    for models in out.values():
        for keys in models.values():
            for cell in keys.values():
                _stats(cell)
    return out


def _stats(cell: dict) -> None:
    """A process counts with its close windows' median (placement.py) when it had any; when no
    process of the cell had one, all are taken and the cell is marked far."""
    timed = [r for r in cell["rounds"] if "median_ms" in r]
    close = [r["close"]["median_ms"] for r in timed if "close" in r]
    meds = close or [r["median_ms"] for r in timed]
    if meds:
        cell["ms_min"], cell["ms_median"] = min(meds), statistics.median(meds)
        if any("windows" in r for r in timed):
            cell["placement"] = f"{len(close)}/{len(timed)} close" if close else "far"
    for bad in ("flagged", "error"):
        hits = [r[bad] for r in cell["rounds"] if bad in r]
        if hits:
            cell[bad] = hits[0]
    diffs = [r["rel_diff"] for r in cell["rounds"] if "rel_diff" in r]
    if diffs:
        cell["rel_diff_max"] = max(diffs)


def best_peer(keys: dict):
    """(key, cell) of the fastest dense peer by min over rounds (flagged ones excluded)."""
    timed = {k: c for k, c in keys.items() if k in PEERS and "ms_min" in c and
             "flagged" not in c}
    close = {k: c for k, c in timed.items() if c.get("placement") != "far"}
    timed = close or timed      # a far-only peer is not compared with close runs
    if not timed:
        return None, None
    k = min(timed, key=lambda n: timed[n]["ms_min"])
    return k, timed[k]


def ratios(summary: dict) -> None:
    """Adds ratio_vs_best_peer to each engine cell (best peer's min ms / the engine's)."""
    for models in summary.values():
        for keys in models.values():
            k, best = best_peer(keys)
            for e in ENGINE:
                if best is not None and "ms_min" in keys.get(e, {}):
                    keys[e]["ratio_vs_best_peer"] = best["ms_min"] / keys[e]["ms_min"]
                    keys[e]["best_peer"] = k


def _cell(c) -> str:
    if c is None:
        return "-"
    if "flagged" in c:
        return f"FLAGGED (rel. diff {c.get('rel_diff_max', float('nan')):.1e})"
    if "ms_min" not in c:
        return "failed" if "error" in c else "-"
    s = f"{c['ms_min']:.2f} / {c['ms_median']:.2f}" + (" far" if c.get("placement") == "far"
                                                         else "")
    return s + (f" ({c['ratio_vs_best_peer']:.2f}x)" if "ratio_vs_best_peer" in c else "")


def _best_cell(keys: dict, gflops: float, peak) -> str:
    k, best = best_peer(keys)
    if best is None:
        return "-"
    s = f"{PEERS[k]} {best['ms_min']:.2f} ms"
    if peak:
        s += f" ({gflops / best['ms_min'] * 1e3 / peak:.0%} of peak)"
    return s


def markdown(summary: dict, peaks: dict, gflops: dict, runtimes: tuple, peak_n: int) -> str:
    """One table per thread count; peaks {threads: GFLOP/s}, gflops {model: dense GFLOP}."""
    cols = [k for k in PEERS if k in runtimes] + \
        ([k for k in ENGINE] if "engine" in runtimes else [])
    names = {**PEERS, **ENGINE}
    out = []
    for threads, models in summary.items():
        peak = peaks.get(threads)
        head = f"**{threads} thread{'s' if threads != '1' else ''}**"
        if peak:
            head += (f", measured fp32 peak {peak:.0f} GFLOP/s (torch.mm {peak_n}^3, best of 8 "
                     f"in a process of its own before and after each round, the best)")
        if threads != "1":
            head += ("; timed while the vCPUs were close (core-to-core round trip < "
                     f"{CLOSE_NS:.0f} ns before and after each 1 s window; a process's far "
                     "windows are left out, 'far': that runtime never had a close one)")
        out += [head + "; ms: min / median over rounds of each process's median; "
                "(Nx): best dense peer's ms / the engine's", "",
                "| model | dense GFLOP | best dense peer | " +
                " | ".join(names[c] for c in cols) + " |",
                "|---|---|---|" + "---|" * len(cols)]
        for m, keys in models.items():
            out.append(f"| {m} | {gflops.get(m, float('nan')):.2f} | "
                       f"{_best_cell(keys, gflops.get(m, 0.0), peak)} | " +
                       " | ".join(_cell(keys.get(c)) for c in cols) + " |")
        out.append("")
    return "\n".join(out)
