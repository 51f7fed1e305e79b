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

`measure` returns full statistics (median, relative spread, runs) and, with `stable_tol`, keeps
adding rounds while some candidate's median still moves between the first and second half of
its samples (a neighbour's burst of load shifts one half), up to `stable_cap` x min_time.
`compare` is its medians-only form.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class Stats:
    """One candidate's timing: seconds per call."""

    median: float
    spread: float        # (p75 - p25) / median: how noisy the samples were
    runs: int            # timed calls behind the median
    drift: float         # |median(2nd half) - median(1st half)| / median: did it settle?
    stable: bool         # drift within the tolerance asked for (True when none was asked)


def spread(samples: Sequence[float]) -> float:
    """Interquartile range relative to the median (0 for fewer than 2 samples)."""
    if len(samples) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    med = statistics.median(samples)
    return (q3 - q1) / med if med > 0 else 0.0


def drift(samples: Sequence[float]) -> float:
    """Relative move of the median between the chronological halves of `samples` (0 for
    fewer than 4 samples: too few to tell)."""
    if len(samples) < 4:
        return 0.0
    half = len(samples) // 2
    med = statistics.median(samples)
    if med <= 0:
        return 0.0
    return abs(statistics.median(samples[half:]) - statistics.median(samples[:half])) / med


def summarize(samples: Sequence[float], stable_tol: Optional[float] = None) -> Stats:
    d = drift(samples)
    return Stats(statistics.median(samples), spread(samples), len(samples), d,
                 stable_tol is None or d <= stable_tol)


def flushing_denormals() -> bool:
    """Whether this thread's floating-point mode flushes denormal results to zero (FTZ, as
    torch.set_flush_denormal(True) and some libraries loaded beside the engine set it): a
    product whose exact result is denormal comes out 0."""
    tiny = np.array([1e-38], np.float32) * np.float32(0.01)
    return bool(tiny[0] == 0)


@contextmanager
def as_deployed():
    """Times kernels in the floating-point mode a deployed model runs in (IEEE denormals: an
    app or a fresh process does not set FTZ / DAZ). A kernel that touches denormals runs up to
    several times faster with them flushed (Winograd on denormal lanes: 3.7x), so a mode the
    measuring process set (a user's torch.set_flush_denormal(True), a library) would time
    kernels faster than the artifact runs them. The calling thread's mode is restored after."""
    was = flushing_denormals()
    if was:
        torch.set_flush_denormal(False)
    try:
        yield
    finally:
        if was:
            torch.set_flush_denormal(True)


def measure(candidates: dict, min_time: float = 0.05, min_runs: int = 5,
            max_runs: int = 1000, warmup: int = 2, block: int = 3,
            settle: float = 0.003, block_time: float = 0.002, max_rounds: int = 200,
            stable_tol: Optional[float] = None, stable_cap: float = 4.0,
            max_block: int = 100) -> dict:
    """name -> Stats per call, each candidate a zero-argument callable.

    block: timed calls per candidate per round, at least (1: plain per-call interleaving, no
    untimed call and no settle); a fast candidate runs more calls per block so that a block
    lasts about `block_time` (at most `max_block` calls; sized from the warm-up, then again
    from the first round's median) and the settle stays a small part of
    the measuring time. settle:
    seconds slept before each block's untimed call. Stops when every candidate has `min_runs`
    calls and `min_time` seconds, or after `max_runs` calls of one or `max_rounds` rounds.
    stable_tol: also go on while some candidate's drift exceeds it, until every candidate has
    run `stable_cap` x min_time (then Stats.stable says which did not settle)."""
    names = list(candidates)
    with torch.no_grad(), as_deployed():
        est = {}
        for n in names:
            t0 = time.perf_counter()
            for _ in range(warmup):
                candidates[n]()
            est[n] = (time.perf_counter() - t0) / max(1, warmup)

        def block_sizes(per_call: dict) -> dict:
            return {n: block if block <= 1 else
                    max(block, min(max_block, int(block_time / max(per_call[n], 1e-7))))
                    for n in names}
        sizes = block_sizes(est)
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
            if rounds == 1:
                # warm-up calls run cold (first-touch page faults, idle thread pools) and can
                # overestimate a fast candidate tenfold: its blocks would then be short and
                # every other candidate would run extra rounds until it catches up
                sizes = block_sizes({n: statistics.median(v) for n, v in times.items()})
            runs = min(len(v) for v in times.values())
            if rounds >= max_rounds or max(len(v) for v in times.values()) >= max_runs:
                break
            if runs >= min_runs and min(spent.values()) >= min_time:
                if stable_tol is None or min(spent.values()) >= stable_cap * min_time or \
                        all(drift(v) <= stable_tol for v in times.values()):
                    break
    return {n: summarize(v, stable_tol) for n, v in times.items()}


def compare(candidates: dict, min_time: float = 0.05, min_runs: int = 5,
            max_runs: int = 1000, warmup: int = 2, block: int = 3,
            settle: float = 0.003, block_time: float = 0.002, max_rounds: int = 200) -> dict:
    """name -> median seconds per call (see `measure`)."""
    stats = measure(candidates, min_time=min_time, min_runs=min_runs, max_runs=max_runs,
                    warmup=warmup, block=block, settle=settle, block_time=block_time,
                    max_rounds=max_rounds)
    return {n: s.median for n, s in stats.items()}


def median_time(fn: Callable[[], object], **kw) -> float:
    return compare({"f": fn}, **kw)["f"]
