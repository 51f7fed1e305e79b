"""optimize() end to end on every zoo model and every scheme, against the masked torch model.

The reference is `opt.pruned_model`, a dense torch copy of the user's model with the plan's masks
multiplied in: computed by torch, not by our kernels. Inputs are kept small (64x64 for the
ImageNet models) so the whole file fits a CI budget.
"""
import copy

import pytest
import torch
from torch import nn

import engine
from engine import zoo
from engine.graph.layers import list_layers
from engine.schemes.block import block_structure_holds
from mapping import Plan

SMALL = {name: (1, 3, 64, 64) for name in ("resnet18", "resnet50", "vgg16", "mobilenetv2",
                                           "mobilenetv3_large", "efficientnet_b0", "ghostnet")}


def _input(name, batch=1):
    shape = list(SMALL.get(name, zoo.input_shape(name)))
    shape[0] = batch
    return torch.randn(shape)


def _close(a, b, rtol=1e-4):
    scale = b.abs().max().item() + 1e-12
    return (a - b).abs().max().item() <= rtol * scale


def _unit_mask(w, rows):
    """Keep-mask at the granularity of `rows` x 1 units (rows consecutive output channels)."""
    o = w.shape[0]
    g = -(-o // rows)  # the last unit may be shorter than `rows`: pad with zeros, then crop
    nz = torch.zeros((g * rows, *w.shape[1:]), dtype=torch.bool)
    nz[:o] = w != 0
    nz = nz.reshape(g, rows, *w.shape[1:]).any(dim=1, keepdim=True)
    return nz.expand(g, rows, *w.shape[1:]).reshape(g * rows, *w.shape[1:])[:o].to(w.dtype)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_zoo_model_block_4x1(name):
    model = zoo.get(name).eval()
    before = _state(model)
    x = _input(name)
    opt = engine.optimize(model, (x,), scheme="block", block=(4, 1), sparsity=0.8,
                          measure=False, capture=name.endswith("_cifar"))
    # output matches the masked torch reference
    assert _close(opt(x), opt.pruned_model(x))
    # the user's model is untouched
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # every conv/linear is in the plan; pruned ones hold the block structure and the sparsity
    layers = list_layers(model, (x,))
    assert [c.layer for c in opt.plan] == [l.name for l in layers]
    pruned = opt.plan.pruned
    assert pruned, "no layer pruned"
    for c in pruned:
        w = opt.pruned_model.get_submodule(c.layer).weight
        w0 = model.get_submodule(c.layer).weight
        keep = _unit_mask(w, rows=4)  # a 4x1 unit is kept iff any of its weights survived
        assert torch.equal(w, w0 * keep), c.layer  # kept units intact, pruned units zero
        assert block_structure_holds(keep.bool(), (4, 1))
        assert abs(1 - keep.mean().item() - 0.8) < 0.02, (c.layer, keep.mean().item())
        # a layer whose rows are not a multiple of 4 (EfficientNet's 6-channel SE squeeze)
        # ends in a shorter group, and may name that group's kernel
        rows4 = w.shape[0] % 4 == 0
        assert c.kernel.startswith("f32_spmm_4x" if rows4 else "f32_spmm_"), (c.layer, c.kernel)
    for c in opt.plan:
        if not c.pruned:
            assert c.reason
            w0 = model.get_submodule(c.layer).weight
            assert torch.equal(opt.pruned_model.get_submodule(c.layer).weight, w0)


def test_depthwise_stays_dense_with_reason():
    model = zoo.get("mobilenetv2_cifar").eval()
    x = _input("mobilenetv2_cifar")
    opt = engine.optimize(model, (x,), sparsity=0.8, measure=False, capture=False)
    dw = [c for c in opt.plan if "groups=" in c.reason]
    assert dw and all(not c.pruned for c in dw)


@pytest.mark.parametrize("scheme,kw,expect", [
    ("unstructured", {}, 0.8),
    ("pattern", {}, 0.8),
    ("nm", {"n": 2, "m": 4}, 0.5),
    ("block", {"block": (8, 4)}, 0.8),
    ("block", {"block": (16, 1)}, 0.8),
])
def test_mask_schemes_end_to_end(scheme, kw, expect):
    model = zoo.get("resnet18_cifar").eval()
    x = _input("resnet18_cifar")
    opt = engine.optimize(model, (x,), scheme=scheme, sparsity=0.8, measure=False,
                          capture=False, **kw)
    assert _close(opt(x), opt.pruned_model(x))
    pruned = opt.plan.pruned
    assert pruned
    for c in pruned:
        assert abs(c.sparsity - expect) < 0.03, (c.layer, c.sparsity)


@pytest.mark.parametrize("scheme", ["filter", "channel"])
def test_channel_schemes_shrink_and_run_natively(scheme):
    model = zoo.get("resnet18_cifar").eval()
    x = _input("resnet18_cifar")
    opt = engine.optimize(model, (x,), scheme=scheme, sparsity=0.5, measure=False,
                          capture=False)
    n_before = sum(p.numel() for p in model.parameters())
    n_after = sum(p.numel() for p in opt.pruned_model.parameters())
    assert n_after < 0.6 * n_before
    assert _close(opt(x), opt.pruned_model(x))
    assert opt(x).shape == model(x).shape


def test_batch_sizes_other_than_the_example():
    model = zoo.get("resnet18_cifar").eval()
    opt = engine.optimize(model, (_input("resnet18_cifar", 3),), sparsity=0.8, measure=False,
                          capture=False)
    for b in (1, 2, 5):
        x = _input("resnet18_cifar", b)
        assert _close(opt(x), opt.pruned_model(x))


def test_thread_counts_agree():
    from engine import _kernels
    model = zoo.get("resnet18_cifar").eval()
    x = _input("resnet18_cifar")
    opt = engine.optimize(model, (x,), sparsity=0.8, measure=False, capture=False)
    prev = _kernels.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            _kernels.set_num_threads(t)
            outs.append(opt(x))
        assert torch.allclose(outs[0], outs[1], atol=1e-5) and torch.allclose(outs[0], outs[2], atol=1e-5)
    finally:
        _kernels.set_num_threads(prev)


def test_measured_plan_never_keeps_a_slower_layer():
    model = zoo.get("resnet18_cifar").eval()
    x = _input("resnet18_cifar")
    # the per-layer decisions: the whole-model guard (tested in tests/pipeline) off
    opt = engine.optimize(model, (x,), sparsity=0.8, min_speedup=1.1, capture=False,
                          guard="off")
    runs_on = {"torch": ("runs in torch",), "tir": ("generated dense kernel",),
               "native": ("native dense kernel", "packed dense kernel")}
    for c in opt.plan:
        if c.pruned:
            assert c.latency_us and c.dense_latency_us
            assert c.speedup >= 1.1, c
        else:  # kept dense, on whichever dense backend measured faster, and says which
            assert c.backend in runs_on and c.reason
            assert any(t in c.reason for t in runs_on[c.backend]), c


def test_plan_round_trip_and_replay():
    model = zoo.get("resnet18_cifar").eval()
    x = _input("resnet18_cifar")
    opt = engine.optimize(model, (x,), sparsity=0.8, measure=False, capture=False)
    plan = Plan.from_json(opt.plan.to_json())
    assert plan.to_dict() == opt.plan.to_dict()
    # keep one pruned layer dense by editing the plan, then replay it
    first = plan.pruned[0].layer
    plan[first].scheme, plan[first].sparsity = "dense", 0.0
    opt2 = engine.optimize(copy.deepcopy(model), (x,), plan=plan, measure=False, capture=False)
    assert not opt2.plan[first].pruned
    assert {c.layer for c in opt2.plan.pruned} == {c.layer for c in opt.plan.pruned} - {first}
    assert _close(opt2(x), opt2.pruned_model(x))


def test_fused_residual_and_unfused_fallback_agree():
    """A model torch.fx cannot trace still runs (no fusion), matching the reference."""
    class Untraceable(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(8, 16, 3, padding=1)
            self.b = nn.Conv2d(16, 16, 1)

        def forward(self, x):
            y = torch.relu(self.a(x))
            for _ in range(int(y.shape[1] // 8)):  # shape-driven loop: fx cannot trace int()
                y = y + self.b(y)
            return y

    m = Untraceable().eval()
    x = torch.randn(1, 8, 12, 12)
    opt = engine.optimize(m, (x,), sparsity=0.5, block=(4, 1), measure=False, capture=False)
    assert any("torch.fx could not trace" in n for n in opt.notes)
    assert _close(opt(x), opt.pruned_model(x))
