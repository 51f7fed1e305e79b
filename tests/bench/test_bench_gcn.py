"""The pruned-GNN experiment (engine.bench.gcn, `python -m engine bench gcn`) runs end to end
on one short point and writes its table."""
import json

import pytest

pytest.importorskip("sklearn")


def test_gcn_bench_one_short_point(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ENGINE_CACHE_DIR", str(tmp_path / "cache"))
    from engine.bench import gcn
    out = tmp_path / "out"
    assert gcn.main(["--hidden", "32", "--epochs", "3", "--methods", "rigl", "--min-time",
                     "0.05", "--out", str(out)]) == 0
    r = json.loads((out / "gcn.json").read_text())
    dense, rigl = r["rows"]
    assert (dense["method"], rigl["method"]) == ("dense", "rigl")
    assert dense["weight_sparsity"] == 0.0 and dense["speedup"] == 1.0
    assert 0.0 < dense["weights_share"] < 1.0
    # the hidden layers (64 x 32, 32 x 32) at 80% in 4x1 blocks, the 32 x 10 classifier dense
    # (kept weights may be zero too: the digits' blank border pixels give them no gradient)
    hidden, total = 64 * 32 + 32 * 32, 64 * 32 + 32 * 32 + 32 * 10
    assert 0.8 * hidden / total - 0.01 <= rigl["weight_sparsity"] <= 0.8
    assert rigl["test"] == pytest.approx(rigl["torch_test"], abs=0.002)   # engine == torch
    for row in r["rows"]:
        assert 0.0 <= row["val"] <= 1.0 and row["ms"] > 0
    table = (out / "gcn.md").read_text()
    assert "| GCN | 32 | rigl, 4x1 at 80% |" in table and "| GCN | 32 | dense" in table
    assert table.strip() in capsys.readouterr().out


@pytest.mark.parametrize("argv,flag", [(["--hidden", "0"], "--hidden"),
                                       (["--methods", "admm"], "--methods"),
                                       (["--sparsity", "1"], "--sparsity")])
def test_gcn_bench_refuses_bad_flags(argv, flag, capsys):
    from engine.bench import gcn
    with pytest.raises(SystemExit):
        gcn.main(argv)
    assert flag in capsys.readouterr().err
