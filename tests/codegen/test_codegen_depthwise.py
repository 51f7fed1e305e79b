"""compile_model with backend "native": depthwise convs call spe.v1.depthwise_conv2d (the direct
depthwise kernel linked into the module), other grouped convs keep spe.v1.sparse_conv2d on a
block-diagonal pack, and the compiled module matches torch."""
import pytest
import torch

from codegen_helpers import assert_close, randomize_bn
from depthwise_net import DwNet
from engine.codegen import compile_model
from engine.graph.layers import list_layers
from mapping import Choice, Plan

DEPTHWISE = "spe.v1.depthwise_conv2d"


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return randomize_bn(DwNet()).eval(), torch.randn(2, 3, 17, 19)


def _plan(model, x, backend="native", **per_layer):
    layers = list_layers(model, (x,))
    return Plan("host", [Choice(l.name, backend=per_layer.get(l.name, backend))
                         for l in layers])


def test_depthwise_convs_call_the_depthwise_kernel(net):
    model, x = net
    cm = compile_model(model, (x,), _plan(model, x), "host", backends="plan")
    by = {lk.layer: lk for lk in cm.layers}
    for name in ("dw1", "dw2", "dw3"):
        lk = by[name]
        assert lk.kind == "native" and lk.kernel == DEPTHWISE and lk.function == DEPTHWISE
        assert lk.stats == {"depthwise": True, "density": 1.0, "pruned": False}
    assert by["dw1"].fused == ("batch_norm", "relu6")
    assert by["dw2"].fused == ("bias", "residual", "relu")
    for name in ("stem", "grouped", "multiplier"):   # not depthwise: the SpMM bridge function
        assert by[name].kind == "native" and by[name].kernel == "spe.v1.sparse_conv2d"
    with torch.no_grad():
        ref = model(x)
    assert_close(cm.run(x)[0], ref, 1e-4, what="compiled DwNet (native) vs torch")


def test_depthwise_not_native_in_the_plan_stays_generated_tir(net):
    model, x = net
    cm = compile_model(model, (x,), _plan(model, x, dw2="torch"), "host", backends="plan")
    by = {lk.layer: lk for lk in cm.layers}
    assert by["dw2"].kind == "grouped" and by["dw2"].kernel.startswith("tir_")
    assert by["dw1"].kernel == DEPTHWISE
    with torch.no_grad():
        assert_close(cm.run(x)[0], model(x), 1e-4, what="mixed depthwise backends vs torch")


def test_backends_tir_never_calls_the_bridge(net):
    model, x = net
    cm = compile_model(model, (x,), _plan(model, x), "host", backends="tir")
    assert not cm.uses_native_kernels
    assert all(lk.kernel != DEPTHWISE for lk in cm.layers)
