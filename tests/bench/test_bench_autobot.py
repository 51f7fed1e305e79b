"""The AutoBot bench (engine.bench.autobot) runs end to end on a short, small configuration."""
import pytest
import torch

pytest.importorskip("sklearn")


def test_autobot_bench_small_run():
    from engine.bench import autobot
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = autobot.run("digits", flops_target=0.5, epochs=1, share=0.2, dense_epochs=2,
                        width=8, time_it=False, progress=False)
    finally:
        torch.set_num_threads(before)
    rows = r["rows"]
    assert list(rows) == list(autobot.VARIANTS)
    assert rows["autobot"]["sparsity"] == rows["l1"]["sparsity"] == rows["l2"]["sparsity"]
    assert isinstance(rows["l1 uniform"]["sparsity"], float)
    for row in rows.values():            # FLOPs counted on each shrunk model
        assert 0.4 < row["flops"] <= 0.5
        assert all(0.0 <= row[k] <= 1.0 for k in ("as_cut", "bn_recalibrated", "finetuned"))
    assert r["autobot_flops"]["chosen"] == pytest.approx(rows["autobot"]["flops"], rel=1e-9)
    t = autobot.table(r)
    assert "| autobot |" in t and "| l1 uniform |" in t and "ms" not in t
