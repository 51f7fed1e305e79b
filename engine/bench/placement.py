"""Timing at 2+ threads split by where the hypervisor has put the vCPUs (engine.bench.machine).

On this kind of VM the vCPUs' core-to-core round trip flips every few seconds between ~100 ns
("close": one core complex) and ~330 ns ("far"). In the far state every layer-by-layer
parallel runtime loses most of its 2-thread gain (measured, P7: EfficientNet-B0 at 2 threads,
ONNX Runtime 6.6 ms close / 10.5-12.8 ms far; the engine 8.4 / 14.0), so a 2-thread timing
that mixes the states compares the machine, not the runtimes. `time_windows` times calls in
~1 s windows with the probe before and after each; a window whose probes both read close is
a close window. Each runtime's close windows are what `bench peers` compares; the far ones are
reported beside them.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

CLOSE_NS = 200.0          # between the two states (~100 vs ~330 ns here)


def _stats(samples: list) -> dict:
    return {"median_ms": statistics.median(samples) * 1e3, "min_ms": min(samples) * 1e3,
            "calls": len(samples)}


def time_windows(fn: Callable[[], object], seconds: float, probe: Callable[[], Optional[float]],
                 window_s: float = 1.0, patience: float = 3.0) -> dict:
    """Time single calls of `fn` (already warm) in windows of `window_s`, probing the placement
    between windows, until `seconds` of close windows are timed or `patience` x `seconds` of
    windows in all (at least `seconds`). Returns the stats over all calls, "close" and "far"
    (stats over the calls of those windows, with "windows": how many; absent when none), and
    "windows": [[probe before, median ms], ...]. A probe of None (no second CPU / no probe)
    counts as far, never as close."""
    before = probe()
    windows, close, far = [], [], []
    t_start, t_close = time.perf_counter(), 0.0
    while True:
        ts, t_end = [], time.perf_counter() + window_s
        while len(ts) < 3 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        after = probe()
        is_close = all(p is not None and p < CLOSE_NS for p in (before, after))
        (close if is_close else far).append(ts)
        windows.append([before, round(statistics.median(ts) * 1e3, 3)])
        t_close += sum(ts) if is_close else 0.0
        before = after
        spent = time.perf_counter() - t_start
        if spent >= seconds and (t_close >= seconds or spent >= patience * seconds):
            break
    out = _stats([t for w in close + far for t in w])
    for name, ws in (("close", close), ("far", far)):
        if ws:
            out[name] = {**_stats([t for w in ws for t in w]), "windows": len(ws)}
    out["windows"] = windows
    return out
