"""Timing a layer as it runs inside its model: its weights cold, its input warm.

A layer timed alone, call after call, finds its weights and its output buffer in cache from the
call before. Inside a model the rest of the network runs in between: ResNet-50 streams 100 MB
of weights per inference through a 32 MB L3, so every layer starts with its weights in DRAM and
only its input (just written by the producer) in cache. Measured (Zen 4, 1 thread, this
project's dense ResNet-50): a Winograd conv, whose transformed weights are 4x the conv's, timed
1.75 ms warm and 2.3-2.6 ms in the model; the 1x1 convs 10-50% more in the model than alone;
the classifier 154 us warm and 570 us cold. Warm timings picked Winograd where it lost in the
model, and added up to 63.5 ms for a network that ran 83 ms.

`Scrubber(nbytes)` streams `nbytes` of scratch through the caches (what the rest of the model
would have read) and then reads the layer's inputs back; `measure_scrubbed` times candidates
one call at a time, interleaved, with a scrub before every call. `model_scrub_bytes` sizes the
scrub from the model's weights: a model whose weights fit in L2 is timed nearly warm, one that
overflows the last-level cache fully cold.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from .measure import as_deployed, drift, summarize

_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
_FALLBACK = {2: 1 << 20, 3: 32 << 20}      # per-core L2, shared L3 when sysfs says nothing


def _size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG") or 0) * mult


def cache_bytes() -> dict:
    """{level: bytes} of this CPU's data / unified caches (cpu0's view; L3 is shared)."""
    out = {}
    try:
        for idx in sorted(_CACHE_DIR.glob("index*")):
            if (idx / "type").read_text().strip() == "Instruction":
                continue
            level = int((idx / "level").read_text())
            out[level] = max(out.get(level, 0), _size((idx / "size").read_text()))
    except (OSError, ValueError):
        out = {}
    return out or dict(_FALLBACK)


def full_scrub_bytes(cores: int = 1) -> int:
    """1.25x everything the caches of `cores` cores hold: a scrub that leaves nothing warm."""
    caches = cache_bytes()
    l2 = caches.get(2, _FALLBACK[2])
    return int(1.25 * (sum(caches.values()) + (max(1, cores) - 1) * l2))


def model_scrub_bytes(weight_bytes: int, cores: int = 1) -> int:
    """Bytes to stream between two timed calls of one layer of a model whose weights take
    `weight_bytes`: the model's weights, capped at a full scrub (more evicts nothing more).
    0 (no scrub) when the weights fit in one core's L2."""
    if weight_bytes <= cache_bytes().get(2, _FALLBACK[2]):
        return 0
    return min(int(weight_bytes), full_scrub_bytes(cores))


class Scrubber:
    """Streams `nbytes` through the caches, then reads `touch` back (see the module doc)."""

    def __init__(self, nbytes: int):
        self.nbytes = int(nbytes)
        self._buf = torch.zeros(max(1, self.nbytes // 4), dtype=torch.float32)

    def __call__(self, touch: Sequence[torch.Tensor] = ()) -> None:
        self._buf.add_(1.0)           # reads and writes every line: evicts what was there
        for t in touch:
            if torch.is_tensor(t):
                t.sum()


def measure_scrubbed(candidates: dict, scrub: Callable[[], None], min_runs: int = 7,
                     max_runs: int = 21, warmup: int = 2,
                     stable_tol: Optional[float] = None) -> dict:
    """name -> Stats per call, each candidate a zero-argument callable timed one call at a
    time, candidates interleaved, `scrub()` (untimed) before every call. Stops after
    `min_runs` rounds, or with `stable_tol` when every candidate's median has settled (or at
    `max_runs`)."""
    names = list(candidates)
    times: dict = {n: [] for n in names}
    with torch.no_grad(), as_deployed():
        for n in names:
            for _ in range(warmup):
                candidates[n]()
        while True:
            for n in names:
                scrub()
                t0 = time.perf_counter()
                candidates[n]()
                times[n].append(time.perf_counter() - t0)
            runs = len(times[names[0]])
            if runs >= max_runs:
                break
            if runs >= min_runs and (stable_tol is None or
                                     all(drift(v) <= stable_tol for v in times.values())):
                break
    return {n: summarize(v, stable_tol) for n, v in times.items()}
