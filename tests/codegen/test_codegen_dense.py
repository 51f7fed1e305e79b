"""A conv kept dense on the packed dense kernels (plan Choice backend "native", kernel
"gemm:<tile>" or "winograd:<tile>", as engine/pipeline/decide.py records it): the host runtime
runs engine.runtime.dense.PackedDenseConv2d, compile_model(backends="plan") calls
spe.v1.dense_conv2d, torch.export of the lowered model maps its custom op to the same bridge
function, and all of them match torch (BN folded, ReLU and the residual add fused). A linear
layer kept dense runs as a 1x1 PackedDenseConv2d (PackedDenseLinear): the GEMV at batch 1."""
import pytest
import torch
from torch import nn

from codegen_helpers import assert_close, randomize_bn
from engine.codegen import compile_model
from engine.graph.layers import list_layers
from engine.lowering import lower, native_modules
from engine.runtime.dense import PackedDenseConv2d, PackedDenseLinear
from mapping import Choice, Plan

DENSE = "spe.v1.dense_conv2d"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.c3 = nn.Conv2d(16, 24, 1, stride=2)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = torch.relu(self.bn2(self.c2(y)) + y)
        return self.c3(y)


KERNELS = {"c1": "gemm:f32_gemm_8x48__avx512", "c2": "winograd:f32_gemm_16x16__avx512",
           "c3": "gemm:f32_gemm_4x4__scalar"}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return randomize_bn(Net()).eval(), torch.randn(2, 3, 17, 19)


def test_host_runtime_runs_the_packed_dense_kernels(net):
    model, x = net
    low = lower(model, {"c1": ("dense", "gemm"), "c2": ("dense", "winograd"),
                        "c3": ("dense", "winograd")})   # c3 is 1x1: Winograd does not apply
    mods = native_modules(low.module)
    assert isinstance(mods["c1"], PackedDenseConv2d) and mods["c1"].algo == "gemm"
    assert isinstance(mods["c2"], PackedDenseConv2d) and mods["c2"].algo == "winograd"
    assert not isinstance(mods.get("c3"), PackedDenseConv2d)
    with torch.no_grad():
        assert_close(low.module(x), model(x), 1e-4, what="lowered Net vs torch")
    assert mods["c2"].kernel_name.startswith("winograd:f32_gemm_")


def test_compiled_module_calls_the_dense_bridge(net):
    model, x = net
    plan = Plan("host", [Choice(l.name, backend="native", kernel=KERNELS[l.name])
                         for l in list_layers(model, (x,))])
    cm = compile_model(model, (x,), plan, "host", backends="plan")
    by = {lk.layer: lk for lk in cm.layers}
    assert by["c1"].kernel == DENSE and by["c1"].stats["dense"] == "gemm"
    assert by["c2"].kernel == DENSE and by["c2"].stats["dense"] == "winograd"
    assert by["c2"].fused == ("batch_norm", "residual", "relu")
    assert by["c3"].kernel == DENSE and by["c3"].stats["dense"] == "gemm"
    with torch.no_grad():
        ref = model(x)
    assert_close(cm.run(x)[0], ref, 1e-4, what="compiled Net (packed dense) vs torch")


def test_exported_lowered_model_calls_the_dense_bridge(net, tmp_path):
    from engine.codegen._tvm import relax, tvm
    from engine.codegen.native_lowering import export_library, import_lowered
    from engine.codegen.targets import tvm_target
    from engine.targets import get_target
    model, x = net
    low = lower(model, {"c1": ("dense", "gemm"), "c2": ("dense", "winograd"),
                        "c3": ("dense", "gemm")})
    mod = import_lowered(low.module, (x,))
    assert mod.script().count(f'"{DENSE}"') == 3
    host = get_target("host")
    path = export_library(tvm.compile(mod, target=tvm_target(host)), tmp_path / "model.so", host)
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x.numpy()))
    got = got if hasattr(got, "numpy") else got[0]
    with torch.no_grad():
        assert_close(got.numpy(), model(x), 1e-4, what="exported lowered Net vs torch")


def test_a_replayed_plan_keeps_the_packed_dense_kernel_it_names(net):
    """optimize(plan=..., measure=False) runs each layer kept dense on the packed algorithm
    its Choice.kernel names (it ran every such layer on the SpMM pack before)."""
    import engine
    model, x = net
    plan = Plan("host", [Choice(l.name, backend="native", kernel=KERNELS[l.name])
                         for l in list_layers(model, (x,))])
    opt = engine.optimize(model, (x,), plan=plan, measure=False, capture=False)
    got = {c.layer: c.kernel for c in opt.plan.choices}
    assert got["c1"].startswith("gemm:") and got["c2"].startswith("winograd:")
    assert got["c3"].startswith("gemm:")
    with torch.no_grad():
        assert_close(opt(x), model(x), 1e-4, what="replayed packed-dense Net vs torch")


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 40, 3, padding=1)
        self.fc = nn.Linear(40, 70)

    def forward(self, x):
        return self.fc(torch.relu(self.c1(x)).mean((2, 3)))


def test_a_dense_linear_runs_the_gemv_on_the_host_and_in_the_compiled_module():
    torch.manual_seed(0)
    model, x = Classifier().eval(), torch.randn(1, 3, 9, 11)
    low = lower(model, {"c1": ("dense", "gemm"), "fc": ("dense", "gemm")})
    fc = native_modules(low.module)["fc"]
    assert isinstance(fc, PackedDenseLinear)
    with torch.no_grad():
        ref = model(x)
        assert_close(low.module(x), ref, 1e-4, what="lowered Classifier vs torch")
        assert fc.kernel_name.startswith("gemm:f32_gemv_")   # batch 1: the last size run
        rows = torch.randn(3, 2, 40)   # more rows than one: the pointwise path, not the GEMV
        assert_close(fc(rows), model.fc(rows), 1e-4, what="PackedDenseLinear on 6 rows")
        assert not fc.kernel_name.startswith("gemm:f32_gemv_")
    kernel = "gemm:f32_gemv_16__avx512"   # as a plan records it (replayed on any ISA)
    plan = Plan("host", [Choice("c1", backend="native", kernel="gemm:f32_gemm_8x48__avx512"),
                         Choice("fc", backend="native", kernel=kernel)])
    cm = compile_model(model, (x,), plan, "host", backends="plan")
    by = {lk.layer: lk for lk in cm.layers}
    assert by["fc"].kernel == DENSE and by["fc"].stats["dense"] == "gemm"
    assert_close(cm.run(x)[0], ref, 1e-4, what="compiled Classifier (dense GEMV) vs torch")
