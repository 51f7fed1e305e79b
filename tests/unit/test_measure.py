"""engine.runtime.measure.compare: interleaved blocks, adaptive block sizes, stopping rules."""
import time

import pytest
import torch

from engine.runtime.measure import compare, median_time


def _counting(fn):
    calls = []

    def run():
        calls.append(1)
        return fn()
    return run, calls


def test_ratio_of_known_durations():
    slow, fast = (lambda: time.sleep(0.004)), (lambda: time.sleep(0.001))
    t = compare({"slow": slow, "fast": fast}, min_time=0.03, settle=0.0)
    assert 2.0 < t["slow"] / t["fast"] < 6.0
    assert t["fast"] >= 0.001


def test_fast_candidates_run_bigger_blocks_and_rounds_are_capped():
    quick, quick_calls = _counting(lambda: None)
    slow, slow_calls = _counting(lambda: time.sleep(0.002))
    compare({"quick": quick, "slow": slow}, min_time=10.0, max_rounds=4, settle=0.0,
            block_time=0.002)
    # 4 rounds: slow runs blocks of 3 (+1 untimed, +2 warm-up) = 18 calls; quick runs far more
    assert len(slow_calls) == 2 + 4 * (3 + 1)
    assert len(quick_calls) > 4 * 50


def test_block_one_is_plain_interleaving():
    f, calls = _counting(lambda: None)
    compare({"f": f}, min_time=0.0, min_runs=7, block=1, warmup=1)
    assert len(calls) == 1 + 7


def test_median_time_single():
    assert median_time(lambda: time.sleep(0.001), min_time=0.01) >= 0.001


def test_measure_reports_spread_and_runs():
    from engine.runtime.measure import measure
    s = measure({"f": lambda: time.sleep(0.001)}, min_time=0.01, settle=0.0)["f"]
    assert s.median >= 0.001 and s.runs >= 5 and s.spread >= 0 and s.stable


class _FakeClock:
    """Stands in for the time module inside engine.runtime.measure: calls cost what the test
    says, so the stopping rules are checked without timing anything."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_stable_tol_extends_rounds_while_the_median_moves_and_is_capped(monkeypatch):
    import engine.runtime.measure as m
    assert m.drift([1.0, 1.0, 2.0, 2.0]) > 0.3 and m.drift([1.0] * 6) == 0.0
    clock = _FakeClock()
    monkeypatch.setattr(m, "time", clock)
    calls = []

    def drifting():        # each call slower than the last: never settles
        calls.append(1)
        clock.now += 0.0001 * len(calls)

    def steady():
        clock.now += 0.001

    base = m.measure({"d": drifting}, min_time=0.01, block=1, min_runs=1)["d"]
    calls.clear()
    s = m.measure({"d": drifting}, min_time=0.01, block=1, min_runs=1, stable_tol=0.03,
                  stable_cap=3.0)["d"]
    assert not s.stable and s.drift > 0.03 and s.runs > base.runs
    timed = sum(0.0001 * i for i in range(3, len(calls) + 1))     # 2 warm-up calls untimed
    assert 0.03 <= timed < 0.03 + 0.0001 * len(calls)             # stopped at the cap
    ok = m.measure({"s": steady}, min_time=0.01, block=1, min_runs=1, stable_tol=0.03)["s"]
    assert ok.stable and ok.runs == 10                            # settled: no extra rounds


def test_blocks_are_resized_after_the_first_round(monkeypatch):
    """A cold first call must not keep a fast candidate on short blocks for the whole run."""
    import engine.runtime.measure as m
    clock = _FakeClock()
    monkeypatch.setattr(m, "time", clock)
    calls = []

    def cold_then_fast():
        calls.append(1)
        clock.now += 0.01 if len(calls) <= 2 else 0.00001

    m.measure({"f": cold_then_fast}, min_time=0.0, min_runs=4, max_rounds=5, block=3,
              block_time=0.001, settle=0.0)
    # warm-up 2, round 1: 1 untimed + 3 (sized from the cold estimate), round 2: 1 + 100
    assert len(calls) == 2 + (1 + 3) + (1 + 100)


def test_candidates_are_timed_with_denormals_as_a_deployed_model_has_them():
    """A mode that flushes denormals (a user's torch.set_flush_denormal(True), a library) makes
    a kernel that touches denormals look up to 3.7x faster than it runs in an app: timing runs
    in IEEE mode and the caller's mode comes back after."""
    from engine.runtime.measure import as_deployed, flushing_denormals, measure
    from engine.runtime.scrub import measure_scrubbed
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        assert flushing_denormals()
        seen = []
        with as_deployed():
            seen.append(flushing_denormals())
        assert flushing_denormals()                     # restored
        measure({"a": lambda: seen.append(flushing_denormals())}, min_time=0.001,
                min_runs=2, settle=0.0)
        measure_scrubbed({"b": lambda: seen.append(flushing_denormals())}, lambda: None,
                         min_runs=2)
        assert len(seen) > 5 and not any(seen)
        assert flushing_denormals()
    finally:
        torch.set_flush_denormal(False)
    assert not flushing_denormals()
    with as_deployed():                                  # already IEEE: left alone
        assert not flushing_denormals()
    assert not flushing_denormals()
