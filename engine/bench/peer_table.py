"""`bench peers`' summary: per thread count and model, each runtime's min and median over rounds
of its per-process medians, the best dense peer, and the engine's ratios to it (the best peer's
ms over the engine's, by the min); rendered as one markdown table per thread count, then (int8)
one per thread count with the best int8 peer, the engine's int8 artifacts' ratios to it and
engine int8 4x4 against engine fp32 4x1. At 2+ threads a process counts with the calls it made
while the vCPUs were close (placement.py)."""
from __future__ import annotations

import statistics
from typing import Optional

from .placement import CLOSE_NS

PEERS = {"ort": "ONNX Runtime", "openvino": "OpenVINO", "xnnpack": "ExecuTorch+XNNPACK"}
ENGINE = {"engine:dense": "engine dense", "engine:block4x1": "engine 80% block 4x1",
          "engine:mapped": "engine mapped 80% (rule)"}
PEERS_INT8 = {f"{k}:int8": f"{v} int8" for k, v in PEERS.items()}
ENGINE_INT8 = {"engine:int8-dense": "engine int8 dense",
               "engine:int8-block4x4": "engine int8 80% block 4x4",
               "engine:int8-mapped": "engine int8 mapped 80% (rule, bits auto)"}
# each engine int8 artifact's fp32 counterpart (ratio_vs_engine_fp32: its ms / the int8 one's)
FP32_TWIN = {"engine:int8-dense": "engine:dense", "engine:int8-block4x4": "engine:block4x1",
             "engine:int8-mapped": "engine:mapped"}


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
    for f in ("rel_diff", "rel_l2"):
        diffs = [r[f] for r in cell["rounds"] if f in r]
        if diffs:
            cell[f"{f}_max"] = max(diffs)
    info = [r["info"] for r in cell["rounds"] if "int8_layers" in r.get("info", {})]
    if info:        # an engine int8 artifact: how many of its layers run int8
        cell["int8_layers"], cell["layers"] = info[0]["int8_layers"], info[0].get("layers")


# int8: a runtime further from torch's fp32 output than this times the best int8 peer's error
# on the same model (or than --tol-int8, whichever is larger) is flagged
INT8_PEER_FACTOR = 1.5


def int8_flags(summary: dict, tol_int8: float) -> dict:
    """{threads: {model: tolerance}}. What int8 costs in accuracy is the network's as much as
    the runtime's: on the zoo's initialised weights the int8 peers land at 0.01-0.04 relative
    L2, on a random network with re-estimated BatchNorm statistics (--weights bn) every one of
    them at ~0.2. So a model's tolerance is max(tol_int8, INT8_PEER_FACTOR x the smallest error
    an int8 peer reached on it), and every int8 cell (peers and engine) further than that is
    flagged, out of the comparison (a broken export, 0.5-4 here, stays far outside either)."""
    tols: dict = {}
    for threads, models in summary.items():
        for m, keys in models.items():
            errs = [keys[k]["rel_l2_max"] for k in PEERS_INT8
                    if "rel_l2_max" in keys.get(k, {}) and "flagged" not in keys[k]]
            tol = max(tol_int8, INT8_PEER_FACTOR * min(errs)) if errs else tol_int8
            tols.setdefault(threads, {})[m] = tol
            for k in (*PEERS_INT8, *ENGINE_INT8):
                c = keys.get(k)
                if c is not None and "flagged" not in c and c.get("rel_l2_max", 0.0) > tol:
                    c["flagged"] = (f"int8 output differs from torch's fp32 by "
                                    f"{c['rel_l2_max']:.3g} relative L2 (tolerance {tol:.3g}: "
                                    f"--tol-int8 or {INT8_PEER_FACTOR:g} x the best int8 "
                                    f"peer's): not compared")
    return tols


def best_peer(keys: dict, peers: dict = PEERS):
    """(key, cell) of the fastest dense peer by min over rounds (flagged ones excluded);
    peers=PEERS_INT8: of the int8 ones."""
    timed = {k: c for k, c in keys.items() if k in peers and "ms_min" in c and
             "flagged" not in c}
    close = {k: c for k, c in timed.items() if c.get("placement") != "far"}
    timed = close or timed      # a far-only peer is not compared with close runs
    if not timed:
        return None, None
    k = min(timed, key=lambda n: timed[n]["ms_min"])
    return k, timed[k]


def ratios(summary: dict) -> None:
    """Adds ratio_vs_best_peer to each engine fp32 cell (best peer's min ms / the engine's),
    ratio_vs_best_int8_peer to each engine int8 cell (the best int8 peer's), and
    ratio_vs_engine_fp32 (its fp32 counterpart's, FP32_TWIN)."""
    for models in summary.values():
        for keys in models.values():
            for peers, engine, tag in ((PEERS, ENGINE, "peer"),
                                       (PEERS_INT8, ENGINE_INT8, "int8_peer")):
                k, best = best_peer(keys, peers)
                for e in engine:
                    if best is not None and "ms_min" in keys.get(e, {}):
                        keys[e][f"ratio_vs_best_{tag}"] = best["ms_min"] / keys[e]["ms_min"]
                        keys[e][f"best_{tag}"] = k
            for e, twin in FP32_TWIN.items():
                if "ms_min" in keys.get(e, {}) and "ms_min" in keys.get(twin, {}):
                    keys[e]["ratio_vs_engine_fp32"] = keys[twin]["ms_min"] / keys[e]["ms_min"]
                    keys[e]["engine_fp32"] = twin


def _cell(c, ratio: str = "ratio_vs_best_peer") -> str:
    if c is None:
        return "-"
    if "flagged" in c:
        if "rel_l2_max" in c:
            return f"FLAGGED (rel. L2 {c['rel_l2_max']:.1e})"
        return f"FLAGGED (rel. diff {c.get('rel_diff_max', float('nan')):.1e})"
    if "ms_min" not in c:
        return "failed" if "error" in c else "-"
    s = f"{c['ms_min']:.2f} / {c['ms_median']:.2f}" + (" far" if c.get("placement") == "far"
                                                         else "")
    s += f" ({c[ratio]:.2f}x)" if ratio in c else ""
    if "rel_l2_max" in c:                  # int8: how far from torch's fp32 output
        s += f", L2 {c['rel_l2_max']:.1e}"
    if "int8_layers" in c:                 # the engine keeps a layer fp32 where that is faster
        s += f", {c['int8_layers']}/{c['layers']} layers int8"
    return s


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


def _head(threads: str, what: str) -> str:
    head = f"**{threads} thread{'s' if threads != '1' else ''}**, {what}"
    if threads != "1":
        head += ("; timed while the vCPUs were close (core-to-core round trip < "
                 f"{CLOSE_NS:.0f} ns before and after each 1 s window; 'far': never close)")
    return head


def markdown_int8(summary: dict, runtimes: tuple, tols: Optional[dict] = None) -> str:
    """One int8 table per thread count: the int8 peers, the engine's int8 artifacts with their
    ratio to the best int8 peer, and engine int8 4x4 against engine fp32 4x1 (both 80%);
    tols (int8_flags): each model's L2 tolerance, in the best peer's cell."""
    cols = [f"{k}:int8" for k in PEERS if k in runtimes] + \
        (list(ENGINE_INT8) if "engine" in runtimes else [])
    names = {**PEERS_INT8, **ENGINE_INT8}
    twin = "engine int8 4x4 vs engine fp32 4x1, both 80% (fp32 ms / int8 ms)"
    out = []
    for threads, models in summary.items():
        out += [_head(threads, "int8 (static, calibrated on the same seeded batches; L2: "
                      "relative L2 error against torch's fp32 output; the engine keeps a layer "
                      "fp32 where it measured faster: 'k/n layers int8')") +
                "; ms: min / median over rounds of each process's median; (Nx): best int8 "
                "dense peer's ms / the engine's", "",
                "| model | best int8 dense peer | " + " | ".join(names[c] for c in cols) +
                (f" | {twin} |" if "engine" in runtimes else " |"),
                "|---|---|" + "---|" * (len(cols) + ("engine" in runtimes))]
        for m, keys in models.items():
            k, best = best_peer(keys, PEERS_INT8)
            row = [m, "-" if best is None else f"{PEERS_INT8[k]} {best['ms_min']:.2f} ms"]
            tol = (tols or {}).get(threads, {}).get(m)
            if tol is not None:
                row[1] += f" (L2 tolerance {tol:.2g})"
            row += [_cell(keys.get(c), "ratio_vs_best_int8_peer") for c in cols]
            if "engine" in runtimes:
                c = keys.get("engine:int8-block4x4", {})
                row.append(f"{c['ratio_vs_engine_fp32']:.2f}x" if "ratio_vs_engine_fp32" in c
                           else "-")
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)
