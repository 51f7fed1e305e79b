"""threads="auto" for a loaded artifact: run on the thread count that is fastest now.

Why: how much a second thread helps depends on where the two CPUs sit, and on a cloud VM (or a
phone moving work between core clusters) that changes under a running process. Measured on this
project's 2-vCPU VM (issue P7): with the vCPUs on cores sharing an L3 (a 50 ns cache-line round
trip) MobileNetV2's mapped 80% artifact ran 3.3 ms on 2 threads; with them in different core
complexes (330 ns, every few seconds) it ran 7.7 ms on 2 threads and 3.7 ms on 1, since every
layer hands its activations across the chip. A fixed thread count is then 2x off in one state
or the other; the tuner follows the state.

How: the calls run on the current count; every `explore_every` calls (or sooner, when the
current count's recent time has grown by `drift` over its best), each other candidate runs
`trials` calls; the fastest recent minimum wins, the current count keeping its place unless
another is `margin` faster (no flapping on noise). So a state change is noticed within
explore_every calls and costs at most trials slow calls per candidate when exploring.
The clock and the knob are injected: tests drive the policy with fake timings.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable, Sequence


class ThreadTuner:
    def __init__(self, candidates: Sequence[int], set_threads: Callable[[int], object],
                 clock: Callable[[], float] = time.perf_counter, explore_every: int = 64,
                 trials: int = 3, window: int = 8, margin: float = 0.9, drift: float = 1.3):
        cands = sorted(set(int(c) for c in candidates), reverse=True)
        if not cands or cands[-1] < 1:
            raise ValueError(f"thread candidates must be positive ints, got {candidates!r}")
        self.candidates = cands
        self._set = set_threads
        self._clock = clock
        self.explore_every, self.trials, self.margin, self.drift = (explore_every, trials,
                                                                     margin, drift)
        self.current = cands[0]
        self._recent = {c: deque(maxlen=window) for c in cands}
        self._best = {c: float("inf") for c in cands}
        self._since_explore = 0
        self._queue: list = []        # candidates still to try in this exploration
        self.switches = 0
        self._set(self.current)
        self._applied = self.current

    def run(self, fn: Callable[[], object]):
        """Calls fn on the thread count the policy picks now and returns its result."""
        threads = self._next_threads()
        t0 = self._clock()
        out = fn()
        self._record(threads, self._clock() - t0)
        return out

    def _next_threads(self) -> int:
        if not self._queue:
            self._since_explore += 1
            if self._since_explore >= self.explore_every or self._drifted():
                self._since_explore = 0
                self._queue = [c for c in self.candidates if c != self.current
                               for _ in range(self.trials)]
                self._recent_current_only()
        want = self._queue[0] if self._queue else self.current
        self._apply(want)
        return want

    def _record(self, threads: int, seconds: float) -> None:
        self._recent[threads].append(seconds)
        self._best[threads] = min(self._best[threads], seconds)
        if self._queue:
            self._queue.pop(0)
            if not self._queue:
                self._decide()

    def _decide(self) -> None:
        mins = {c: min(r) for c, r in self._recent.items() if r}
        best = min(mins, key=mins.get)
        if best != self.current and mins[best] < self.margin * mins.get(self.current,
                                                                          float("inf")):
            self.current = best
            self.switches += 1
            self._best[best] = mins[best]   # a fresh baseline for drift in this state
        self._apply(self.current)

    def _drifted(self) -> bool:
        r = self._recent[self.current]
        return len(r) == r.maxlen and min(r) > self.drift * self._best[self.current]

    def _recent_current_only(self) -> None:
        """Other counts' old times describe an older state: they are re-measured now."""
        for c, r in self._recent.items():
            if c != self.current:
                r.clear()

    def _apply(self, threads: int) -> None:
        if threads != self._applied:
            self._set(threads)
            self._applied = threads


def candidates_for(max_threads: int) -> list:
    """The counts worth trying: all of them up to 2, then 1, half and all (each extra candidate
    costs exploration calls)."""
    if max_threads <= 2:
        return list(range(1, max_threads + 1))
    return sorted({1, max_threads // 2, max_threads})
