"""engine.measure.cache: cost tables on disk per target; a warm table measures nothing."""
import torch

from engine.measure import HostProfiler, default_cost_path, open_costs, profile_costs
from mapping import CostTable, LayerSpec, default_space


class Counting:
    """A HostProfiler that counts the shapes it is asked to measure."""

    def __init__(self, prof):
        self.prof, self.calls = prof, []
        self.target = prof.target

    def why_not(self, spec, cand):
        return self.prof.why_not(spec, cand)

    def measure(self, spec, candidates):
        self.calls.append((spec.shape_key, len(candidates)))
        return self.prof.measure(spec, candidates)


def test_default_path_follows_env_and_sanitises(monkeypatch, tmp_path):
    monkeypatch.setenv("ENGINE_CACHE_DIR", str(tmp_path))
    p = default_cost_path("host/Intel Xeon Processor/avx512/2t")
    assert p == tmp_path / "costs" / "host_Intel_Xeon_Processor_avx512_2t.json"
    monkeypatch.delenv("ENGINE_CACHE_DIR")
    assert ".cache/engine/costs/" in str(default_cost_path("rpc/pixel7/arm64"))


def test_second_run_measures_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("ENGINE_CACHE_DIR", str(tmp_path))
    specs = [LayerSpec("a", "conv2d", 8, 8, (3, 3), padding=(1, 1), input_hw=(6, 6),
                       epilogue="relu"),
             LayerSpec("b", "conv2d", 8, 8, (3, 3), padding=(1, 1), input_hw=(6, 6),
                       epilogue="relu", order=1),                 # same shape as "a"
             LayerSpec("fc", "linear", 8, 4, order=2)]
    # pattern@0.50 cannot be built (pattern prunes >= 5/9): filtered out, never re-asked
    space = default_space(blocks=((2, 1),), sparsities=(0.5, 0.8), backends=("native",))
    prof = Counting(HostProfiler({"a": torch.randn(8, 8, 3, 3)}, min_time=0.001,
                                 backends=("native",)))
    table, cands, taken = profile_costs(prof, specs, space, progress=False)
    assert len(prof.calls) == 2                                   # two distinct shapes
    assert taken == len(cands["a"]) + len(cands["fc"])
    assert [c.key for c in cands["a"]] == ["dense", "block2x1@0.50/native",
                                           "block2x1@0.80/native", "pattern@0.80/native"]
    path = default_cost_path(prof.target)
    assert path.exists() and table.path == path
    again = Counting(prof.prof)
    table2, _, taken2 = profile_costs(again, specs, space, table=open_costs(prof.target),
                                      progress=False)
    assert taken2 == 0 and again.calls == []
    for spec in specs:
        for c in cands[spec.name]:
            assert table2.latency(prof.target, spec.shape_key, c.key) > 0
    # another machine's target never answers for this one
    other = CostTable.open(path)
    assert other.latency("host/other cpu/avx2/2t", specs[0].shape_key, "dense") is None
