"""Microbenchmarks of the sparse kernel vs torch dense (pytest-benchmark), and tests of
engine.bench.kernels / make_shapes and the shape data files.

    pytest tests/bench --benchmark-only --benchmark-group-by=param:shape   # timings
    pytest tests/bench --benchmark-disable                                  # CI: one run each

Every benchmark body checks the timed function's output against torch, so the run-once CI mode
still tests correctness.
"""
from __future__ import annotations

import json

import pytest
import torch

from engine import _kernels as K
from engine.bench import kernels as kb
from engine.bench import make_shapes

# Representative ResNet-50 1x1 convs: reduce, expand, a stride-2 downsample, the deepest.
RESNET50 = {s.label: s for s in kb.load_shapes("resnet50_1x1")}
BENCH_SHAPES = ["64x256 56x56", "256x64 56x56", "512x128 28x28", "1024x512 28x28/2",
                "512x2048 7x7"]
SPARSITY, BLOCK = 0.8, (4, 1)


@pytest.fixture
def same_threads():
    """torch and the kernels on the same thread count; both restored afterwards."""
    old_k, old_t = K.get_num_threads(), torch.get_num_threads()
    torch.set_num_threads(old_k)
    yield old_k
    K.set_num_threads(old_k)
    torch.set_num_threads(old_t)


def _check(y: torch.Tensor, ref: torch.Tensor) -> None:
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4 * max(1.0, float(ref.abs().max())))


@pytest.mark.parametrize("candidate", ["sparse", "torch"])
@pytest.mark.parametrize("shape", BENCH_SHAPES)
def test_bench_resnet50_1x1(benchmark, same_threads, shape, candidate):
    case = kb.build_case(RESNET50[shape], SPARSITY, BLOCK)
    fn = case.candidates[candidate]
    benchmark.group = f"resnet50 1x1 {shape} @ {SPARSITY:.0%} {BLOCK[0]}x{BLOCK[1]}"
    benchmark.extra_info.update(kernel=case.sparse.kernel_name if candidate == "sparse" else
                                "torch", stored=int(case.sparse.nnz),
                                dense_flops=RESNET50[shape].dense_flops)
    out = benchmark.pedantic(fn, rounds=20, warmup_rounds=2, iterations=1)
    masked, dense = case.reference()
    if candidate == "sparse":
        _check(case.as_torch(out), masked)
        o, c = RESNET50[shape].out_channels, RESNET50[shape].in_channels
        blocks = (o // BLOCK[0]) * (c // BLOCK[1])
        assert case.sparse.nnz == (blocks - round(SPARSITY * blocks)) * BLOCK[0] * BLOCK[1]
    else:
        _check(out, dense)


# ------------------------------------------------------------------------------ shape data

def test_shape_files_are_what_make_shapes_generates():
    for name, generate in make_shapes.GENERATORS.items():
        assert (kb.SHAPES_DIR / f"{name}.txt").read_text() == generate(), name


def test_resnet50_1x1_shapes():
    shapes = kb.load_shapes("resnet50_1x1")
    assert len(shapes) == len({(s.out_channels, s.in_channels, s.height, s.width, s.stride)
                               for s in shapes}) == 15
    strided = {(s.out_channels, s.in_channels, s.height) for s in shapes if s.stride == 2}
    assert strided == {(512, 256, 56), (1024, 512, 28), (2048, 1024, 14)}
    assert all(not s.linear for s in shapes)
    assert any("downsample" in s.comment for s in shapes if s.stride == 1)  # layer1's


def test_mobilenetv2_1x1_shapes():
    shapes = kb.load_shapes("mobilenetv2_1x1")
    keys = [(s.out_channels, s.in_channels, s.height) for s in shapes]
    assert (96, 16, 112) in keys and (16, 32, 112) in keys and (1280, 320, 7) in keys
    assert all(s.stride == 1 for s in shapes)


def test_fc_shapes():
    keys = [(s.out_channels, s.in_channels, s.width, s.linear) for s in kb.load_shapes("fc")]
    assert keys == [(1000, 2048, 1, True), (4096, 25088, 1, True), (4096, 4096, 1, True),
                    (1000, 4096, 1, True), (1000, 1280, 1, True)]


def test_parse_shapes_names_the_bad_line():
    assert kb.parse_shapes("# c\n8 4 5 5 2  # x\n\n3 2 7\n") == [
        kb.Shape(8, 4, 5, 5, 2, False, "x"), kb.Shape(3, 2, 1, 7, 1, True, "")]
    with pytest.raises(ValueError, match="f.txt:2: expected 'O C H W stride' or 'O C N'"):
        kb.parse_shapes("1 2 3\n1 2 3 4\n", "f.txt")
    with pytest.raises(ValueError, match="f.txt:1: expected integers"):
        kb.parse_shapes("1 2 x\n", "f.txt")
    with pytest.raises(ValueError, match="unknown shapes 'nope'"):
        kb.load_shapes("nope")


# ------------------------------------------------------------------------------ library

@pytest.mark.parametrize("block", [(1, 1), (4, 1), (16, 1), (8, 4), (3, 5)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8, 1.0])
def test_block_mask_is_exact_and_blocky(block, sparsity):
    o, c = 35, 22
    m = kb.block_mask(o, c, block, sparsity, torch.Generator().manual_seed(0))
    br, bc = block
    nr, nc = -(-o // br), -(-c // bc)
    padded = torch.zeros(nr * br, nc * bc, dtype=torch.bool)
    padded[:o, :c] = m
    blocks = padded.reshape(nr, br, nc, bc).permute(0, 2, 1, 3).reshape(nr, nc, br * bc)
    # every block is uniform (over its in-range part) ...
    inside = torch.zeros_like(padded)
    inside[:o, :c] = True
    inside = inside.reshape(nr, br, nc, bc).permute(0, 2, 1, 3).reshape(nr, nc, br * bc)
    kept = blocks.any(-1)
    assert torch.equal(blocks, kept[..., None] & inside)
    # ... and exactly round(sparsity * #blocks) blocks are zero
    assert int((~kept).sum()) == round(sparsity * nr * nc)


def test_run_reports_consistent_numbers_and_restores_threads():
    old_k, old_t = K.get_num_threads(), torch.get_num_threads()
    shapes = [kb.Shape(32, 24, 9, 11, 1), kb.Shape(16, 8, 10, 10, 2), kb.Shape(20, 40, 1, 3,
                                                                                linear=True)]
    results = kb.run(shapes, sparsities=(0.5,), blocks=((4, 1), (8, 4)), threads=1,
                     min_time=0.001)
    assert K.get_num_threads() == old_k and torch.get_num_threads() == old_t
    assert len(results) == 6
    for r in results:
        assert r.threads == 1
        assert min(r.t_torch, r.t_dense, r.t_sparse) > 0
        assert r.speedup_vs_torch == pytest.approx(r.t_torch / r.t_sparse)
        assert r.speedup_vs_dense == pytest.approx(r.t_dense / r.t_sparse)
        assert r.gflops_dense_equiv == pytest.approx(r.gflops_nnz / r.density)
        assert r.kernel.startswith(f"f32_spmm_{r.block[0]}x") and r.dense_kernel.startswith(
            f"f32_spmm_{r.block[0]}x")
        assert 0.4 <= r.density <= 0.6  # 50% of the blocks kept, edge blocks cropped
    table = kb.format_table(results)
    assert table.splitlines()[0].split()[:2] == ["shape", "sparsity"]
    assert "geometric mean over shapes" in table
    assert len(json.dumps([r.to_dict() for r in results])) > 0


def test_check_case_catches_a_wrong_kernel():
    case = kb.build_case(kb.Shape(16, 16, 6, 6), 0.8, (4, 1))
    kb.check_case(case)
    case.candidates["sparse"] = case.candidates["dense"]  # right shape, wrong (unmasked) weight
    with pytest.raises(AssertionError, match="sparse kernel differs from torch"):
        kb.check_case(case)


def test_main_writes_table_and_json(tmp_path, capsys):
    shapes = tmp_path / "tiny.txt"
    shapes.write_text("# O C H W stride\n16 8 6 6 1\n8 16 7 7 2\n# O C N\n12 20 2\n")
    out = tmp_path / "res.json"
    rc = kb.main(["--shapes", str(shapes), "--sparsity", "0.8", "--block", "4x1,8x1",
                  "--threads", "1", "--min-time", "0.001", "--json", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "x torch" in text and "GF/s nnz" in text and "fc 12x20 n2" in text
    data = json.loads(out.read_text())
    assert len(data["results"]) == 6
    assert data["settings"]["threads"] == 1
    assert {"speedup_vs_torch", "speedup_vs_dense", "gflops_nnz", "gflops_dense_equiv",
            "kernel"} <= set(data["results"][0])


def test_main_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        kb.main(["--block", "4by1"])
    with pytest.raises(SystemExit):
        kb.main(["--sparsity", "1.5"])
    with pytest.raises(SystemExit):
        kb.main(["--shapes", "no_such_shapes"])
    assert "error" in capsys.readouterr().err
