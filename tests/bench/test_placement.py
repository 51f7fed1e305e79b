"""engine.bench.placement: 2-thread timings split into windows by the vCPUs' placement probe,
and bench peers' table built from the close windows, with a scripted probe and clock-free
calls (no timing assertion: which windows count, and what the summary takes)."""
import itertools

from engine.bench import peer_table
from engine.bench.placement import CLOSE_NS, time_windows


def _probe(values):
    it = itertools.chain(values, itertools.repeat(values[-1]))
    return lambda: next(it)


def test_windows_are_close_only_when_both_probes_read_close():
    calls = []
    # probes: before w1, after w1 (= before w2), after w2, ...
    r = time_windows(lambda: calls.append(1), 0.05, _probe([100, 110, 330, 90, 95]),
                     window_s=0.01, patience=100)
    wins = r["windows"]
    assert [w[0] for w in wins[:4]] == [100, 110, 330, 90]
    # w1 (100 -> 110) close, w2 (110 -> 330) and w3 (330 -> 90) far, w4.. (90 -> 95 ...) close
    assert r["far"]["windows"] == 2 and r["close"]["windows"] == len(wins) - 2
    assert r["calls"] == len(calls) == r["close"]["calls"] + r["far"]["calls"]
    assert r["close"]["min_ms"] <= r["close"]["median_ms"]


def test_a_machine_that_stays_far_stops_after_patience_and_none_is_never_close():
    r = time_windows(lambda: None, 0.02, _probe([CLOSE_NS + 1]), window_s=0.01, patience=3)
    assert "close" not in r and r["far"]["windows"] == len(r["windows"]) >= 2
    r = time_windows(lambda: None, 0.02, lambda: None, window_s=0.01, patience=2)
    assert "close" not in r and "far" in r


def test_the_table_takes_close_windows_and_marks_a_runtime_that_never_had_one():
    def run(key, med, close=None, far=True):
        r = {"threads": 2, "model": "m", "key": key, "median_ms": med, "min_ms": med,
             "windows": [[100, med]], "rel_diff": 0.0}
        if close is not None:
            r["close"] = {"median_ms": close, "min_ms": close, "calls": 5, "windows": 1}
        if far:
            r["far"] = {"median_ms": med, "min_ms": med, "calls": 5, "windows": 1}
        return r
    runs = [run("ort", 9.0, close=6.0), run("ort", 8.0),                 # one process close
            run("engine:dense", 12.0), run("engine:dense", 11.0)]        # never close
    s = peer_table.summarize(runs)
    peer_table.ratios(s)
    ort, eng = s["2"]["m"]["ort"], s["2"]["m"]["engine:dense"]
    assert (ort["ms_min"], ort["placement"]) == (6.0, "1/2 close")
    assert (eng["ms_min"], eng["placement"]) == (11.0, "far")
    assert abs(eng["ratio_vs_best_peer"] - 6.0 / 11.0) < 1e-12
    # a faster peer that only ran far is not the one the engine is compared with
    s2 = peer_table.summarize(runs + [run("openvino", 4.0)])
    assert peer_table.best_peer(s2["2"]["m"])[0] == "ort"
    md = peer_table.markdown(s, {}, {"m": 1.0}, ("engine", "ort"), 2048)
    assert "11.00 / 11.50 far" in md and "6.00 / 6.00 |" in md and "close" in md
