"""The accuracy-recovery experiment (engine.bench.recovery) runs end to end on one short point."""
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def test_recovery_experiment_one_point(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_CACHE_DIR", str(tmp_path / "cache"))
    from engine.bench import recovery
    r = recovery.run(sparsities=(0.8,), epochs=2, progress=False)
    row, = r["rows"]
    assert 0.5 < r["dense"] <= 1.0          # the dense CNN learned digits
    for key in ("uniform", "mapper", "scratch"):
        assert 0.0 <= row[key] <= 1.0
    assert abs(row["uniform_sparsity_of_pruned_layers"] - 0.8) < 0.01
    assert row["mapper_layers"]              # the rule mapper pruned something
    recovery.plot(r, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 80% |" in recovery.table(r)
