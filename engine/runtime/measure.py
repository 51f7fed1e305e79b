"""Robust latency measurement on a noisy, shared machine.

Candidates are timed in interleaved blocks: each round runs every candidate `block` times in a
row, after one untimed call, so noise hits all candidates alike while no candidate pays for the
previous one's runtime still spinning its worker threads (torch's OpenMP, ONNX Runtime and our
pool all spin briefly after a call). Rounds repeat until each candidate has run for `min_time`;
the median is reported. Compare ratios from one call, never absolute times across calls.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def compare(candidates: dict, min_time: float = 0.05, min_runs: int = 5,
            max_runs: int = 1000, warmup: int = 2, block: int = 1) -> dict:
    """name -> median seconds per call, each candidate a zero-argument callable."""
    names = list(candidates)
    with torch.no_grad():
        for n in names:
            for _ in range(warmup):
                candidates[n]()
        times = {n: [] for n in names}
        spent = {n: 0.0 for n in names}
        while True:
            for n in names:
                fn = candidates[n]
                if block > 1:
                    fn()  # untimed: lets the previous candidate's threads go idle
                for _ in range(block):
                    t0 = time.perf_counter()
                    fn()
                    dt = time.perf_counter() - t0
                    times[n].append(dt)
                    spent[n] += dt
            runs = len(times[names[0]])
            if runs >= max_runs or (runs >= min_runs and min(spent.values()) >= min_time):
                break
    return {n: statistics.median(v) for n, v in times.items()}


def median_time(fn: Callable[[], object], **kw) -> float:
    return compare({"f": fn}, **kw)["f"]
