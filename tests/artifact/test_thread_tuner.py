"""threads="auto": the tuner follows the thread count that is fastest now (thread_tuner.py).

The policy is driven with a fake clock and a fake model whose cost per call depends on the
thread count and on a "machine state" the test flips, as the vCPUs' placement flips on a cloud
VM (issue P7: 2 threads 3.3 ms when the cores share an L3, 7.7 ms when not; 1 thread 3.7 ms).
"""
from __future__ import annotations

import numpy as np
import pytest

from engine.artifact.thread_tuner import ThreadTuner, candidates_for


class FakeMachine:
    def __init__(self, costs):
        self.costs = costs          # threads -> seconds per call, in the current state
        self.now = 0.0
        self.threads = None
        self.sets = 0

    def set_threads(self, n):
        self.threads = n
        self.sets += 1

    def clock(self):
        return self.now

    def call(self):
        self.now += self.costs[self.threads]
        return self.threads


def run(tuner, machine, calls):
    return [tuner.run(machine.call) for _ in range(calls)]


def test_follows_the_state_both_ways():
    m = FakeMachine({1: 3.7e-3, 2: 3.3e-3})
    t = ThreadTuner([1, 2], m.set_threads, clock=m.clock, explore_every=16, trials=2)
    ran = run(t, m, 100)
    assert t.current == 2 and ran[-1] == 2
    assert ran.count(1) <= 2 * (100 // 16 + 1)   # exploration is a few calls, not a regime
    m.costs = {1: 3.7e-3, 2: 7.7e-3}              # the vCPUs moved apart
    ran = run(t, m, 40)
    assert t.current == 1 and ran[-16:].count(1) >= 16 - 2   # 2 = trials of the other count
    m.costs = {1: 3.7e-3, 2: 3.3e-3}              # and back
    ran = run(t, m, 40)
    assert t.current == 2 and ran[-16:].count(2) >= 16 - 2
    assert t.switches == 2


def test_drift_triggers_exploration_before_the_period():
    m = FakeMachine({1: 4e-3, 2: 2e-3})
    t = ThreadTuner([1, 2], m.set_threads, clock=m.clock, explore_every=10 ** 6, trials=2,
                    window=4)
    run(t, m, 5)
    assert t.current == 2
    m.costs = {1: 4e-3, 2: 9e-3}
    ran = run(t, m, 12)   # a full window of slow calls, then the other count, then stays
    assert t.current == 1 and ran[-3:] == [1, 1, 1]


def test_no_flapping_within_the_margin():
    m = FakeMachine({1: 3.05e-3, 2: 3.0e-3})
    t = ThreadTuner([1, 2], m.set_threads, clock=m.clock, explore_every=8, trials=2)
    run(t, m, 200)
    assert t.switches == 0 and t.current == 2
    m.costs = {1: 2.95e-3, 2: 3.0e-3}          # 1 thread a little faster: not worth a switch
    run(t, m, 200)
    assert t.switches == 0


def test_candidates_and_bad_input():
    assert candidates_for(1) == [1]
    assert candidates_for(2) == [1, 2]
    assert candidates_for(8) == [1, 4, 8]
    with pytest.raises(ValueError, match="positive ints"):
        ThreadTuner([0, 2], lambda n: None)
    with pytest.raises(ValueError, match="positive ints"):
        ThreadTuner([], lambda n: None)


def test_loaded_artifact_with_auto_threads(tiny_case, tiny_artifact):
    from engine import load
    fixed = load(tiny_artifact)
    art = load(tiny_artifact, threads="auto")
    assert art.tuner is not None and art.tuner.current in art.tuner.candidates
    want = fixed(tiny_case.x)
    for _ in range(150):          # past several explorations: every count gives the result
        np.testing.assert_allclose(art(tiny_case.x), want, rtol=1e-5, atol=1e-6)
    assert art.threads in art.tuner.candidates   # the current count, or one being explored
    assert load(tiny_artifact, threads=1).threads == 1
