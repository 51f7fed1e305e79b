"""The codegen microbenchmark runs, checks outputs, and reports ratios."""
from engine.bench import tir as bench


def test_bench_runs_on_a_small_shape_file(tmp_path):
    f = tmp_path / "tiny.txt"
    f.write_text("32 16 10 10 1  # conv\n16 32 12 12 2\n24 40 3  # linear\n")
    rows = bench.run(str(f), sparsity=0.8, block=(4, 1), threads=1, min_time=0.005)
    assert len(rows) == 3
    for r in rows:
        assert r.t_tir > 0 and r.t_native > 0 and r.t_torch > 0
        assert r.tir_vs_native > 0
    table = bench.format_table(rows)
    assert "tir / C++: geomean" in table and "within 1.5x" in table
    assert bench.main([f"--shapes={f}", "--threads=1", "--min-time=0.005"]) == 0
