"""The machine probe benchmarks record beside their timings (engine/bench/machine.py)."""
from __future__ import annotations

import math
import os

import pytest

from engine import _kernels as K
from engine.bench.machine import core_to_core_ns


def test_round_trip_is_a_positive_time():
    if len(os.sched_getaffinity(0)) < 2:
        assert core_to_core_ns() is None
        return
    ns = core_to_core_ns(runs=3, trips=200)
    # a cache line cannot cross between cores in under a nanosecond, and a round trip that
    # took a second would be a hang, not a measurement
    assert math.isfinite(ns) and 1.0 < ns < 1e9


def test_bad_cpus_are_refused_not_pinned():
    cpus = sorted(os.sched_getaffinity(0))
    outside = max(cpus) + 1
    with pytest.raises(ValueError, match=f"CPU {outside} is not one this process may run on"):
        K.core_to_core_ns(cpus[0], outside, 10)
    with pytest.raises(ValueError, match="two different CPUs"):
        K.core_to_core_ns(cpus[0], cpus[0], 10)
    with pytest.raises(ValueError, match="iters"):
        K.core_to_core_ns(cpus[0], cpus[-1], 0)
    # the caller's affinity is left as it was
    assert sorted(os.sched_getaffinity(0)) == cpus
