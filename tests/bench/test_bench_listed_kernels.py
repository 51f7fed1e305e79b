"""The kernel benchmarks take their kernels from the library's list
(engine._kernels.list_kernels()): bench kernels --kernel / --list-kernels and bench depthwise
--kernel / --isa all run exactly the listed kernels, checked against torch."""
from __future__ import annotations

import pytest

from engine import _kernels as K
from engine.bench import depthwise as dwb
from engine.bench import kernels as kb
from engine.bench.report import listed_kernels

RUNNABLE_SPMM = [k for k in K.list_kernels() if k["family"] == "f32_spmm" and k["available"]]
RUNNABLE_DW = [k for k in K.list_kernels() if k["family"] == "f32_dwconv" and k["available"]]


def test_listed_kernels_selects_by_name_or_all_and_names_bad_ones():
    assert listed_kernels("f32_spmm", ["all"]) == RUNNABLE_SPMM
    first = RUNNABLE_SPMM[0]["name"]
    assert [k["name"] for k in listed_kernels("f32_spmm", [first])] == [first]
    with pytest.raises(ValueError, match="unknown f32_spmm kernel 'f32_spmm_9x9__sse9'"):
        listed_kernels("f32_spmm", ["f32_spmm_9x9__sse9"])
    missing = [k["name"] for k in K.list_kernels()
               if k["family"] == "f32_spmm" and not k["available"]]
    if missing:  # (every build lacks some ISA: x86 has no neon, arm64 no avx)
        with pytest.raises(ValueError, match="which this CPU or build cannot run"):
            listed_kernels("f32_spmm", missing[:1])


def test_bench_kernels_runs_each_listed_kernel_on_its_isa():
    picks = [RUNNABLE_SPMM[0]["name"], RUNNABLE_SPMM[-1]["name"]]
    results = kb.run([kb.Shape(24, 16, 7, 9, 1)], sparsities=(0.5,), threads=1, min_time=0.001,
                     kernels=picks)
    assert [r.kernel for r in results] == picks  # each row ran (and named) its listed kernel
    for r in results:
        listed = next(k for k in RUNNABLE_SPMM if k["name"] == r.kernel)
        assert r.isa == listed["isa"] and r.block == (listed["tile"]["rows"], 1)


def test_bench_kernels_lists_the_kernels(capsys):
    assert kb.main(["--list-kernels"]) == 0
    out = capsys.readouterr().out
    assert all(k["name"] in out for k in K.list_kernels() if k["family"] == "f32_spmm")


@pytest.mark.parametrize("kernel", [RUNNABLE_DW[0]["name"], RUNNABLE_DW[-1]["name"]])
def test_bench_depthwise_runs_a_listed_kernel_over_its_shapes(kernel):
    listed = next(k for k in RUNNABLE_DW if k["name"] == kernel)
    shapes = [(c // 8, h // 4, w // 4, *rest) for c, h, w, *rest in dwb.kernel_shapes(listed)][:2]
    results = dwb.run(shapes, threads=1, isas=(listed["isa"],), min_time=0.001)
    assert results and all(r.kernels == {"dw": kernel} for r in results)
    if listed["tile"]:
        assert all((r.kernel_size, r.stride) == (listed["tile"]["kernel"],
                                                 listed["tile"]["stride"]) for r in results)
    assert "total" in dwb.format_table(results)


def test_bench_depthwise_isa_all_is_every_listed_isa_here(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(dwb, "run", lambda shapes, threads, isas, *a, **k: seen.append(isas) or [])
    assert dwb.main(["--isa", "all", "--threads", "1"]) == 0
    assert seen == [list(dict.fromkeys(k["isa"] for k in RUNNABLE_DW))]


def test_bench_depthwise_zoo_shapes_are_the_networks_depthwise_layers():
    # MobileNetV2's traced layers are the hand-written SHAPES; EfficientNet-B0 adds 5x5 ones
    assert dwb.zoo_shapes(["mobilenetv2"]) == [(c, h, w, s, 3, 1) for c, h, w, s in dwb.SHAPES]
    eff = dwb.zoo_shapes(["efficientnet_b0"])
    assert (672, 14, 14, 2, 5, 1) in eff and (1152, 7, 7, 1, 3, 1) in eff
    assert len(eff) == len(set(eff))


def test_bench_depthwise_models_flag_rejects_an_unknown_model(capsys):
    with pytest.raises(SystemExit):
        dwb.main(["--models", "mobilenetv9", "--threads", "1"])
    assert "mobilenetv9" in capsys.readouterr().err
