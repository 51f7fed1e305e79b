"""The per-layer sparse backend choice (C++ kernel vs generated TIR) through optimize(), the host
runtime, compile() and the saved artifact, against the masked torch model."""
import pytest
import torch

import engine
from engine import zoo
from engine.errors import ConfigError

pytest.importorskip("tvm")


def _close(a, b, rtol=1e-4):
    scale = b.abs().max().item() + 1e-12
    return (a - b).abs().max().item() <= rtol * scale


@pytest.fixture(scope="module")
def model_and_input():
    torch.manual_seed(0)
    return zoo.get("resnet18_cifar").eval(), torch.randn(1, 3, 32, 32)


def test_tir_backend_runs_everywhere_the_plan_says(model_and_input, tmp_path):
    model, x = model_and_input
    # every layer pruned (at least as fast as dense) must run TIR
    opt = engine.optimize(model, (x,), sparsity=0.8, backends="tir", min_speedup=1.0,
                          capture=False)
    pruned = opt.plan.pruned
    assert pruned and all(c.backend == "tir" and c.kernel.startswith("tir_f32_")
                          for c in pruned)
    assert all("tir" in c.reason for c in pruned)
    assert _close(opt(x), opt.pruned_model(x))
    cm = opt.compile()
    kinds = {lk.layer: lk.kind for lk in cm.layers}
    assert all(kinds[c.layer] == "sparse" for c in pruned)
    art = engine.load(opt.save(tmp_path / "art"))
    assert _close(art(x), opt.pruned_model(x))


def test_native_only_never_records_tir(model_and_input):
    model, x = model_and_input
    opt = engine.optimize(model, (x,), sparsity=0.8, backends="native", min_speedup=1.0,
                          capture=False)
    assert {c.backend for c in opt.plan.pruned} == {"native"}
    assert _close(opt(x), opt.pruned_model(x))


def test_auto_measures_both_and_records_the_faster(model_and_input):
    model, x = model_and_input
    opt = engine.optimize(model, (x,), sparsity=0.8, min_speedup=1.0, capture=False)
    for c in opt.plan.pruned:
        assert "native" in c.reason and "tir" in c.reason, c.reason
        assert c.backend in ("native", "tir")
        assert c.latency_us <= c.dense_latency_us
    assert _close(opt(x), opt.pruned_model(x))


def test_compiled_dense_layers_run_the_native_kernel(model_and_input):
    model, x = model_and_input
    opt = engine.optimize(model, (x,), sparsity=0.0, measure=False, capture=False)
    plan = opt.plan
    for c in plan:
        c.backend = "native"
    opt.plan = plan
    cm = opt.compile()
    convs = [lk for lk in cm.layers if lk.op == "conv2d"]
    assert convs and all(lk.kind == "native" and lk.stats["rows"] == 8 for lk in convs)
    assert [lk.kind for lk in cm.layers if lk.op == "linear"] == ["dense"]  # no native linear
    y, = cm.run(x)
    assert _close(torch.from_numpy(y), opt.pruned_model(x))


def test_compiled_grouped_conv_runs_the_native_kernel():
    torch.manual_seed(0)
    model = zoo.get("mobilenetv2_cifar").eval()
    x = torch.randn(1, 3, 32, 32)
    opt = engine.optimize(model, (x,), sparsity=0.0, measure=False, capture=False)
    for c in opt.plan:
        c.backend = "native"
    cm = opt.compile()
    depthwise = {n for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Conv2d) and m.groups > 1}
    grouped = [lk for lk in cm.layers if lk.layer in depthwise]
    assert grouped and all(lk.kind == "native" for lk in grouped)
    # MobileNetV2's grouped convs are all depthwise: the direct depthwise kernel, not the SpMM
    assert len(grouped) == 17 and all(lk.kernel == "spe.v1.depthwise_conv2d" for lk in grouped)
    assert all(lk.kernel == "spe.v1.sparse_conv2d" for lk in cm.layers
               if lk.op == "conv2d" and lk.layer not in depthwise)
    y, = cm.run(x)
    assert _close(torch.from_numpy(y), opt.pruned_model(x))


@pytest.mark.parametrize("bad", ["gpu", ("native", "cuda"), ()])
def test_unknown_backends_are_refused(model_and_input, bad):
    model, x = model_and_input
    with pytest.raises(ConfigError, match="backends"):
        engine.optimize(model, (x,), backends=bad)


def test_replayed_plan_keeps_its_backends_without_measuring(model_and_input):
    model, x = model_and_input
    first = engine.optimize(model, (x,), sparsity=0.8, measure=False, capture=False)
    plan = first.plan
    for i, c in enumerate(plan.pruned):
        c.backend = "tir" if i % 2 else "native"
    again = engine.optimize(model, (x,), plan=plan, measure=False, capture=False)
    assert [c.backend for c in again.plan] == [c.backend for c in plan]
    assert _close(again(x), again.pruned_model(x))
    # the same plan with tir not allowed falls back to the C++ kernels
    native = engine.optimize(model, (x,), plan=plan, measure=False, capture=False,
                             backends="native")
    assert {c.backend for c in native.plan.pruned} == {"native"}


def test_replayed_plan_keeps_the_generated_dense_kernel(model_and_input, tmp_path):
    # a dense plan whose strided / 3x3 convs measured fastest on the generated dense kernel
    # (backend "tir", kernel tir_f32_spmm_4x...): replayed, compiled and saved as such
    model, x = model_and_input
    first = engine.optimize(model, (x,), sparsity=0.0, measure=False, capture=False)
    plan = first.plan
    convs = [c for c in plan if c.layer.endswith("conv1") or c.layer.endswith("conv2")]
    assert convs
    for c in convs:
        c.backend, c.kernel = "tir", "tir_f32_spmm_4x96__avx512"
    again = engine.optimize(model, (x,), plan=plan, measure=False, capture=False)
    got = {c.layer: c for c in again.plan}
    assert all(got[c.layer].backend == "tir" and not got[c.layer].pruned and
               got[c.layer].kernel.startswith("tir_f32_spmm_4") for c in convs)
    assert _close(again(x), model(x))
    cm = again.compile()
    kinds = {lk.layer: lk for lk in cm.layers}
    assert all(kinds[c.layer].kind == "dense" and kinds[c.layer].stats["rows"] == 4
               for c in convs)
    art = engine.load(again.save(tmp_path / "art"))
    assert _close(art(x), model(x))
