"""engine.runtime.measure.compare: interleaved blocks, adaptive block sizes, stopping rules."""
import time

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
