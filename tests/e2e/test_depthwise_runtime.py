"""Depthwise convs in the host runtime: the DepthwiseConv2d module (direct depthwise kernel), the
lowering that picks it for depthwise convs kept dense (BN folded, ReLU / ReLU6 / residual fused)
and leaves other grouped convs on the block-diagonal SpMM pack, and optimize(), whose "native
dense" candidate for a depthwise layer is that module. References: torch on the same weights.
"""
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

import engine
from engine import zoo
from engine.lowering import lower, native_modules
from engine.runtime.modules import DenseConv2d, DepthwiseConv2d, SparseConv2d
from engine.zoo.init import randomize_bn
from depthwise_net import DwNet


def _close(a, b, rtol=1e-4):
    scale = b.abs().max().item()
    assert scale > 1e-3, "reference is ~0: the test is degenerate"
    return (a - b).abs().max().item() <= rtol * scale


@pytest.fixture(scope="module")
def dwnet():
    torch.manual_seed(0)
    return randomize_bn(DwNet()).eval(), torch.randn(2, 3, 17, 19)


def test_module_matches_torch_with_fused_epilogue():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(12, 1, 3, 3, generator=g)
    b = torch.randn(12, generator=g)
    x = torch.randn(3, 12, 15, 21, generator=g)
    for stride, act in [((1, 1), "relu6"), ((2, 2), "relu"), ((2, 1), "none")]:
        mod = DepthwiseConv2d(w, b, stride, (1, 1), (1, 1), act, layer="dw")
        ref = F.conv2d(x, w, b, stride, 1, 1, 12)
        res = torch.randn(ref.shape, generator=g)
        act_fn = {"relu6": F.relu6, "relu": F.relu, "none": lambda t: t}[act]
        assert _close(mod(x), act_fn(ref))
        assert _close(mod(x, res), act_fn(ref + res))
        assert _close(mod.dense_equivalent()(x, res), act_fn(ref + res))
        assert mod.kernel_name.startswith(
            "f32_dwconv_generic__" if stride == (2, 1) else f"f32_dwconv_3x3s{stride[0]}__")


def test_module_accepts_non_contiguous_and_double_tensors():
    """The binding refuses such arrays; the module converts torch tensors itself."""
    w = torch.randn(4, 1, 3, 3)
    mod = DepthwiseConv2d(w, None, padding=(1, 1))
    x = torch.randn(1, 4, 9, 18)[..., ::2]
    assert not x.is_contiguous()
    assert _close(mod(x), F.conv2d(x, w, None, 1, 1, 1, 4))
    assert _close(mod(x.double()), F.conv2d(x, w, None, 1, 1, 1, 4))


def test_module_copies_are_layers_of_their_own():
    w = torch.randn(6, 1, 3, 3)
    mod = DepthwiseConv2d(w, torch.randn(6), padding=(1, 1), act="relu6")
    x = torch.randn(1, 6, 8, 8)
    for other in (copy.deepcopy(mod), pickle.loads(pickle.dumps(mod))):
        assert other.op_id != mod.op_id
        assert torch.equal(other(x), mod(x))


def test_module_rejects_a_non_depthwise_weight():
    with pytest.raises(ValueError, match=r"weight must be \(C, 1, kh, kw\), got shape \(6, 2, 3, 3\)"):
        DepthwiseConv2d(torch.randn(6, 2, 3, 3), None)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        DepthwiseConv2d(torch.randn(6, 1, 3, 3), None, act="gelu")


def test_lowering_runs_depthwise_on_the_direct_kernel(dwnet):
    model, x = dwnet
    names = ["stem", "dw1", "dw2", "dw3", "grouped", "multiplier"]
    low = lower(model, {n: 1 for n in names})
    mods = native_modules(low.module)
    for n in ("dw1", "dw2", "dw3"):
        assert isinstance(mods[n], DepthwiseConv2d), (n, type(mods[n]))
        assert mods[n].kernel_name.startswith("f32_dwconv_")
    assert mods["dw1"].kernel_name.startswith("f32_dwconv_3x3s2__")
    assert mods["dw2"].kernel_name.startswith("f32_dwconv_5x5s1__")
    assert mods["dw3"].kernel_name.startswith("f32_dwconv_generic__")  # dilation 2, stride 1x2
    for n in ("grouped", "multiplier"):                  # not depthwise: the SpMM pack
        assert isinstance(mods[n], SparseConv2d) and mods[n].groups == 16 // (4 if n == "grouped" else 1)
    assert low.fused["dw1"] == {"bn": "bn1", "act": "relu6", "residual": False}
    assert low.fused["dw2"] == {"bn": None, "act": "relu", "residual": True}
    with torch.no_grad():
        assert _close(low.module(x), model(x))
    # kept in torch when the layer is not named
    kept = native_modules(lower(model, {"stem": 8}).module)
    assert isinstance(kept["dw1"], DenseConv2d)


def test_lowered_depthwise_exports_as_one_custom_op(dwnet):
    model, x = dwnet
    low = lower(model, {n: 1 for n in ("dw1", "dw2", "dw3")}).module
    with torch.no_grad():
        ep = torch.export.export(low, (x,), strict=False)
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert sum("spe_depthwise_conv2d" in t for t in targets) == 3
    assert not any("spe_conv2d" in t for t in targets)
    with torch.no_grad():
        assert _close(ep.module()(x), model(x))


def test_optimize_measures_the_depthwise_kernel_as_native_dense():
    """A depthwise layer's two dense candidates are torch and the direct depthwise kernel;
    whichever measured faster runs, and the plan names it."""
    torch.manual_seed(0)
    model = randomize_bn(zoo.get("mobilenetv2_cifar")).eval()
    x = torch.randn(1, 3, 32, 32)
    opt = engine.optimize(model, (x,), sparsity=0.8, capture=False, backends="native")
    dw = [c for c in opt.plan if "groups=" in c.reason]
    assert len(dw) == 17
    mods = native_modules(opt.runtime)
    for c in dw:
        assert not c.pruned and "native dense" in c.reason and "torch" in c.reason, c.reason
        if c.backend == "native":
            assert c.kernel.startswith("f32_dwconv_3x3s"), c.kernel
            assert isinstance(mods[c.layer], DepthwiseConv2d)
        else:
            assert c.backend == "torch" and isinstance(mods[c.layer], DenseConv2d)
    with torch.no_grad():
        assert _close(opt(x), opt.pruned_model(x))


def test_optimize_without_measuring_runs_depthwise_natively():
    torch.manual_seed(0)
    model = randomize_bn(zoo.get("mobilenetv2_cifar")).eval()
    x = torch.randn(2, 3, 32, 32)
    opt = engine.optimize(model, (x,), sparsity=0.8, measure=False, capture=False)
    dw = [c for c in opt.plan if "groups=" in c.reason]
    assert dw and all(c.backend == "native" and c.kernel.startswith("f32_dwconv_3x3s")
                      for c in dw)
    mods = native_modules(opt.runtime)
    assert all(isinstance(mods[c.layer], DepthwiseConv2d) for c in dw)
    with torch.no_grad():
        assert _close(opt(x), opt.pruned_model(x))
