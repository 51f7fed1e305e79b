"""rewrite.find_layers / rewrite_layers on small exported graphs: which chains are matched,
what is folded and fused, and that the rewritten module has one call_tir per layer."""
import numpy as np
import pytest
import torch
from torch import nn

from codegen_helpers import randomize_bn
from engine.codegen.compile import _import
from engine.codegen.rewrite import Replacement, find_layers, rewrite_layers
from engine.lowering import fold_bn


class ConvBnRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(8)
        self.down = nn.Conv2d(4, 8, 1, stride=1, bias=False)
        self.down_bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        y = self.bn(self.conv(x)) + self.down_bn(self.down(x))
        y = torch.relu(y)
        z = nn.functional.relu6(self.head(y))
        return self.fc(z.mean((2, 3))), y


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(0)
    model = randomize_bn(ConvBnRelu())
    x = torch.randn(1, 4, 6, 6)
    mod, params, names, _ = _import(model, (x,))
    return model, x, mod, params, names


def test_chains_are_found_and_named(graph):
    model, _, mod, params, names = graph
    found = {m.layer: m for m in find_layers(mod["main"], params, names)}
    assert set(found) == {"conv", "down", "head", "fc"}
    # the residual add joins the first branch matched; the other keeps its BatchNorm only
    assert found["conv"].fused == ["bias", "batch_norm", "residual", "relu"]
    assert found["down"].fused == ["batch_norm"]
    assert found["head"].fused == ["bias", "relu6"]
    assert found["fc"].fused == ["bias"] and found["fc"].op == "linear"
    assert found["fc"].weight.shape == (3, 8)


def test_batchnorm_and_bias_are_folded_like_torch(graph):
    model, _, mod, params, names = graph
    m = next(m for m in find_layers(mod["main"], params, names) if m.layer == "conv")
    w, b = fold_bn(model.conv.weight, model.conv.bias, model.bn)
    np.testing.assert_allclose(m.weight, w.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(m.bias, b.numpy(), rtol=1e-5, atol=1e-6)
    assert m.stride == (1, 1) and m.padding == (1, 1, 1, 1) and m.groups == 1


def test_a_var_used_twice_ends_the_chain(graph):
    # y (after the residual add + relu) is returned AND feeds head: conv's chain ends at the
    # relu, and head's chain starts from that very value
    model, _, mod, params, names = graph
    found = {m.layer: m for m in find_layers(mod["main"], params, names)}
    assert found["conv"].act == "relu"
    assert found["head"].x.same_as(found["conv"].anchor)


def test_rewrite_replaces_each_chain_by_one_call_tir(graph):
    from engine.codegen.compile import kernel_for
    from engine.codegen.targets import as_target, tvm_target, vector_isa
    model, _, mod, params, names = graph
    isa = vector_isa(tvm_target(as_target("host")))
    matches = find_layers(mod["main"], params, names)

    def choose(m):
        k = kernel_for(m, isa, False, None, 0)
        return Replacement(k.prim_func(), k.tables, k.has_residual, k.structure_key)

    new, done = rewrite_layers(mod, matches, choose)
    text = new["main"].script()
    assert text.count("R.call_tir(") == 4
    assert "R.nn.conv2d" not in text and "R.nn.batch_norm" not in text
    assert "R.matmul" not in text and len(done) == 4


class MobileActs(nn.Module):
    """MobileNetV3's conv-bn-hardswish and hard-sigmoid gate, EfficientNet's conv-silu, a linear
    with hardswish, and a silu whose input has a third use (not fusable)."""

    def __init__(self):
        super().__init__()
        self.hs = nn.Conv2d(4, 8, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.gate = nn.Conv2d(8, 8, 1)
        self.si = nn.Conv2d(8, 8, 3, padding=1)
        self.si1 = nn.Conv2d(8, 8, 1)
        self.other = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 6)

    def forward(self, x):
        y = nn.functional.hardswish(self.bn(self.hs(x)))
        y = y * nn.functional.hardsigmoid(self.gate(y.mean((2, 3), keepdim=True)))
        y = nn.functional.silu(self.si1(nn.functional.silu(self.si(y))))
        z = self.other(y)
        z = nn.functional.silu(z) + z
        return nn.functional.hardswish(self.fc(z.mean((2, 3))))


def test_hardswish_and_silu_are_fused_where_their_input_has_no_other_use():
    torch.manual_seed(0)
    model, x = randomize_bn(MobileActs()), torch.randn(1, 4, 6, 6)
    mod, params, names, _ = _import(model, (x,))
    found = {m.layer: m for m in find_layers(mod["main"], params, names)}
    assert found["hs"].fused == ["batch_norm", "hardswish"]
    assert found["gate"].fused == ["bias", "bias"]      # hard-sigmoid's +3 folds into the bias
    assert found["si"].fused == ["bias", "silu"]         # 3x3 too: the crop is vectorized
    assert found["si1"].fused == ["bias", "silu"]
    assert found["other"].fused == ["bias"] and found["other"].act == "none"
    assert found["fc"].fused == ["bias", "hardswish"] and found["fc"].act == "hardswish"
