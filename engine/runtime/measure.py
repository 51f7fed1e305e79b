"""Robust latency measurement on a noisy, shared machine.

Candidates are timed in interleaved blocks: each round runs every candidate `block` times in a
row, after a short sleep (`settle`) and one untimed call, so noise hits all candidates alike
while no candidate pays for the previous one's runtime still spinning its worker threads
(torch's OpenMP, TVM, ONNX Runtime and our pool all spin after a call). Rounds repeat until each
candidate has run for `min_time`; the median is reported. Compare ratios from one call, never
absolute times across calls.

Why both: timed back to back with nothing in between (block=1), a 0.29 ms sparse stem conv
measured 1.0 ms next to torch and TVM, whose workers were still spinning on both cores; blocks
of 3 after one untimed call fixed our kernel but not TVM's (0.60 vs 0.32 ms alone); with a 3 ms
settle every candidate matched its time measured alone (2 vCPUs, this machine).
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def compare(candidates: dict, min_time: float = 0.05, min_runs: int = 5,
            max_runs: int = 1000, warmup: int = 2, block: int = 3,
            settle: float = 0.003, block_time: float = 0.002, max_rounds: int = 200) -> dict:
    """name -> median seconds per call, each candidate a zero-argument callable.

    block: timed calls per candidate per round, at least (1: plain per-call interleaving, no
    untimed call and no settle); a fast candidate runs more calls per block so that a block
    lasts about `block_time` and the settle stays a small part of the measuring time. settle:
    seconds slept before each block's untimed call. Stops when every candidate has `min_runs`
    calls and `min_time` seconds, or after `max_runs` calls of one or `max_rounds` rounds."""
    names = list(candidates)
    with torch.no_grad():
        est = {}
        for n in names:
            t0 = time.perf_counter()
            for _ in range(warmup):
                candidates[n]()
            est[n] = (time.perf_counter() - t0) / max(1, warmup)
        sizes = {n: block if block <= 1 else
                 max(block, min(100, int(block_time / max(est[n], 1e-7)))) for n in names}
        times = {n: [] for n in names}
        spent = {n: 0.0 for n in names}
        rounds = 0
        while True:
            for n in names:
                fn = candidates[n]
                if sizes[n] > 1:
                    if settle > 0 and len(names) > 1:
                        time.sleep(settle)   # the previous runtime's spinning threads go idle
                    fn()  # untimed: wakes this runtime's threads, warms its caches
                for _ in range(sizes[n]):
                    t0 = time.perf_counter()
                    fn()
                    dt = time.perf_counter() - t0
                    times[n].append(dt)
                    spent[n] += dt
            rounds += 1
            runs = min(len(v) for v in times.values())
            if rounds >= max_rounds or max(len(v) for v in times.values()) >= max_runs or \
                    (runs >= min_runs and min(spent.values()) >= min_time):
                break
    return {n: statistics.median(v) for n, v in times.items()}


def median_time(fn: Callable[[], object], **kw) -> float:
    return compare({"f": fn}, **kw)["f"]
