"""engine.runtime.scrub: candidates timed as inside their model (weights cold, input warm), and
the HostProfiler `cache` option that sizes the scrub from the model's weights."""
import pytest
import torch

from engine.errors import ConfigError
from engine.measure import HostProfiler
from engine.runtime import scrub
from mapping import DENSE, Candidate, LayerSpec

CONV = LayerSpec("c", "conv2d", 8, 16, (3, 3), (1, 1), (1, 1), input_hw=(10, 10))


def test_cache_sizes_are_read_from_this_cpu():
    c = scrub.cache_bytes()
    assert c and all(isinstance(k, int) and v > 0 for k, v in c.items())
    # the fallback is used only when sysfs says nothing; either way L2 is there
    assert 2 in c


def test_model_scrub_is_the_models_weights_capped_at_a_full_scrub():
    l2 = scrub.cache_bytes()[2]
    full = scrub.full_scrub_bytes(1)
    assert full >= 1.25 * sum(scrub.cache_bytes().values()) - 1
    assert scrub.full_scrub_bytes(2) > full                  # another core's L2 to evict
    assert scrub.model_scrub_bytes(l2 // 2) == 0             # fits in L2: timed warm
    assert scrub.model_scrub_bytes(l2 * 3) == min(l2 * 3, full)
    assert scrub.model_scrub_bytes(10 * full) == full


def test_scrubber_streams_its_bytes_and_reads_the_inputs_back():
    s = scrub.Scrubber(1 << 20)
    x = torch.randn(100)
    before = s._buf.clone()
    s((x, "not a tensor"))
    s(())
    assert torch.equal(s._buf, before + 2)                   # every element written, twice


def test_measure_scrubbed_scrubs_before_every_timed_call_and_interleaves():
    log = []
    cands = {"a": lambda: log.append("a"), "b": lambda: log.append("b")}
    stats = scrub.measure_scrubbed(cands, lambda: log.append("s"), min_runs=4, warmup=1)
    assert set(stats) == {"a", "b"} and all(s.runs == 4 for s in stats.values())
    timed = log[2:]                                          # after one warm-up call each
    assert timed == ["s", "a", "s", "b"] * 4


def test_measure_scrubbed_goes_on_until_settled_or_max_runs():
    import itertools
    t = itertools.count()
    # a candidate that keeps slowing down never settles: max_runs ends it
    stats = scrub.measure_scrubbed({"slow": lambda: sum(range(1000 * next(t)))},
                                   lambda: None, min_runs=4, max_runs=9, warmup=0,
                                   stable_tol=1e-6)
    assert stats["slow"].runs == 9 and not stats["slow"].stable


def test_profiler_cache_option():
    big = {"c": torch.randn(16, 8, 3, 3), "w": torch.zeros(scrub.cache_bytes()[2])}   # 4x L2
    assert HostProfiler(big, cache="warm").scrub_bytes == 0
    assert HostProfiler({"c": torch.randn(16, 8, 3, 3)}).scrub_bytes == 0   # fits in L2
    model = HostProfiler(big, threads=1)
    total = sum(w.numel() * 4 for w in big.values())
    assert model.scrub_bytes == scrub.model_scrub_bytes(total, 1) > 0
    assert HostProfiler(big, cache="cold", threads=1).scrub_bytes == scrub.full_scrub_bytes(1)
    assert HostProfiler(big, cache=12345).scrub_bytes == 12345
    # warm and scrubbed tables must not share a cache key
    assert model.target != HostProfiler(big, cache="warm", threads=1).target
    for bad in ("hot", -1, True, 1.5):
        with pytest.raises(ConfigError, match="cache must be"):
            HostProfiler(big, cache=bad)


def test_scrubbed_profile_times_every_candidate():
    prof = HostProfiler({"c": torch.randn(16, 8, 3, 3)}, cache=1 << 20)
    got = prof.measure(CONV, [DENSE, Candidate("block", (4, 1), 0.8, "native")])
    assert set(got) == {DENSE.key, "block4x1@0.80/native"}
    assert all(m.us > 0 and m.runs >= 7 for m in got.values())


def _tvm():
    from engine.measure.host import tvm_available
    if not tvm_available():
        pytest.skip("needs apache-tvm")


def test_compiled_profiler_times_single_calls_after_a_flush():
    _tvm()
    from engine.codegen import get_num_threads, set_num_threads
    from engine.measure import CompiledProfiler
    w = {"c": torch.randn(16, 8, 3, 3)}
    cands = [DENSE, Candidate("block", (4, 1), 0.8, "tir")]
    # one thread: what is checked is calls per sample; at two, a loaded machine that deschedules
    # TVM's worker stretched one warm call of this 13 us layer to 16 ms (the calibration then
    # asks for one call per sample)
    before = get_num_threads()
    try:
        cold = CompiledProfiler(weights=w, cache=1 << 20, threads=1)
        assert cold.scrub_bytes == 1 << 20 and cold.target.endswith("/scrub1M")
        warm = CompiledProfiler(weights=w, cache="warm", threads=1)
        assert warm.scrub_bytes == 0 and "scrub" not in warm.target
        got_cold, got_warm = cold.measure(CONV, cands), warm.measure(CONV, cands)
    finally:
        set_num_threads(before)
    assert set(got_cold) == set(got_warm) == {c.key for c in cands}
    # flushed: one call per sample, 7..21 rounds; warm: many calls per 10 ms sample
    assert all(7 <= m.runs <= 21 for m in got_cold.values())
    assert all(m.runs > 21 for m in got_warm.values())


def test_rpc_profiler_cache_is_warm_or_bytes():
    _tvm()
    from engine.measure import RPCProfiler
    assert RPCProfiler("host", "127.0.0.1", 9).scrub_bytes == 0
    p = RPCProfiler("host", "127.0.0.1", 9, cache=8 << 20)
    assert p.scrub_bytes == 8 << 20 and p.target.endswith("/flush8M")
    for bad in ("model", "cold", -5):
        with pytest.raises(ConfigError, match="cache must be 'warm' or a byte count"):
            RPCProfiler("host", "127.0.0.1", 9, cache=bad)
