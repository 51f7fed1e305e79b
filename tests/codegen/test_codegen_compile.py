"""compile_model end to end on the host: outputs match the masked torch model (the reference),
pruned layers get sparse kernels, dense / depthwise / glue are compiled too."""
import copy
import shutil

import pytest
import torch

import engine
from codegen_helpers import TinyNet, assert_close, randomize_bn
from engine import zoo
from engine.codegen import CompiledModel, compile_model
from engine.errors import CaptureError, ConfigError


def _pruned(name: str, block=(4, 1), sparsity=0.8):
    torch.manual_seed(0)
    model = randomize_bn(zoo.get(name))
    x = torch.randn(zoo.input_shape(name))
    opt = engine.optimize(model, (x,), target="host", scheme="block", block=block,
                          sparsity=sparsity, measure=False)
    return opt, x


@pytest.fixture(scope="module")
def resnet():
    opt, x = _pruned("resnet18_cifar")
    return opt, x, compile_model(opt.pruned_model, (x,), opt.plan, "host")


@pytest.fixture(scope="module")
def mobilenet():
    opt, x = _pruned("mobilenetv2_cifar", block=(8, 1))
    return opt, x, compile_model(opt.pruned_model, (x,), opt.plan, "host")


def test_pruned_resnet18_cifar_matches_pruned_model(resnet):
    opt, x, cm = resnet
    with torch.no_grad():
        ref = opt.pruned_model(x)
    (y,) = cm.run(x)
    assert_close(y, ref, 1e-4)


def test_every_pruned_layer_runs_a_sparse_kernel(resnet):
    opt, _, cm = resnet
    pruned = {c.layer for c in opt.plan if c.pruned}
    assert pruned, "the plan prunes nothing: the test is degenerate"
    sparse = {lk.layer for lk in cm.layers if lk.kind == "sparse"}
    assert sparse == pruned
    for lk in cm.layers:
        if lk.kind == "sparse":
            assert lk.density < 0.3 and lk.stats["rows"] == 4
            assert lk.kernel.startswith("tir_f32_")
    fused = {lk.layer: lk.fused for lk in cm.layers}
    assert fused["layer1.0.conv2"] == ("batch_norm", "residual", "relu")


def test_pruned_mobilenetv2_cifar_matches_pruned_model(mobilenet):
    opt, x, cm = mobilenet
    with torch.no_grad():
        ref = opt.pruned_model(x)
    (y,) = cm.run(torch.from_numpy(x.numpy()))
    assert_close(y, ref, 1e-4)
    kinds = {lk.kind for lk in cm.layers}
    assert kinds == {"sparse", "grouped"}     # 1x1 / first convs pruned, depthwise grouped
    assert any(lk.stats["rows"] == 8 for lk in cm.layers if lk.kind == "sparse")
    assert any("relu6" in lk.fused for lk in cm.layers)


def test_io_specs_and_summary(resnet):
    _, x, cm = resnet
    assert isinstance(cm, CompiledModel)
    assert cm.inputs == [("x", (1, 3, 32, 32), "float32")]
    assert cm.outputs == [("output", (1, 10), "float32")]
    assert "layer4.1.conv2" in cm.summary()
    assert "def " in cm.layer("conv1").source


def test_dense_model_and_glue_ops():
    torch.manual_seed(0)
    model = randomize_bn(TinyNet())
    x = torch.randn(2, 3, 16, 16)
    cm = compile_model(model, (x,), None, "host")
    with torch.no_grad():
        ref = model(x)
    assert_close(cm.run(x)[0], ref, 1e-4)
    assert {lk.kind for lk in cm.layers} == {"dense", "grouped"}


class _LastStep(torch.nn.Module):
    """out[:, -1] and out[-1]: torch's select with a negative index (a classifier reading a
    recurrent layer's last step)."""

    def forward(self, x):
        s = torch.stack([torch.tanh(x[:, t]) for t in range(x.shape[1])], 0)
        return s.transpose(0, 1)[:, -1] + s[-1] + x[:, -2]


def test_negative_select_index():
    """TVM's importer made select(x, dim, -1) a take(-1, mode="fast") that read before the
    tensor (outputs of 1e31); the engine names the index from the front."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 16)
    cm = compile_model(_LastStep(), (x,), None, "host")
    assert_close(cm.run(x)[0], _LastStep()(x), 1e-5)


def test_dense_left_to_tvm_still_correct():
    torch.manual_seed(1)
    model = randomize_bn(TinyNet())
    x = torch.randn(1, 3, 16, 16)
    cm = compile_model(model, (x,), None, "host", dense="tvm")
    assert cm.layers == []
    with torch.no_grad():
        assert_close(cm.run(x)[0], model(x), 1e-4)


def test_run_checks_inputs(resnet):
    _, x, cm = resnet
    with pytest.raises(ConfigError, match="expected float32"):
        cm.run(torch.randn(1, 3, 16, 16))
    with pytest.raises(ConfigError, match="takes 1 input"):
        cm.run(x, x)


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="dense must be"):
        compile_model(TinyNet(), (torch.randn(1, 3, 8, 8),), dense="fast")
    with pytest.raises(ConfigError, match="unknown target"):
        compile_model(TinyNet(), (torch.randn(1, 3, 8, 8),), target="riscv")
    with pytest.raises(ConfigError, match="float64"):     # the kernels compute in float32
        compile_model(TinyNet(), (torch.zeros(1, 3, 8, 8, dtype=torch.float64),))
    # integer inputs are accepted (token ids); one a conv cannot take is the model's own error
    with pytest.raises(CaptureError, match="could not capture.*Input type"):
        compile_model(TinyNet(), (torch.zeros(1, 3, 8, 8, dtype=torch.int64),))


@pytest.mark.skipif(shutil.which("cmake") is None, reason="the C++ bridge is built with cmake")
def test_plan_backends_mix_native_and_tir_layers(resnet):
    opt, x, _ = resnet
    plan = copy.deepcopy(opt.plan)
    pruned = [c for c in plan if c.pruned]
    for i, c in enumerate(pruned):
        c.backend = "native" if i % 2 == 0 else "tir"
    cm = compile_model(opt.pruned_model, (x,), plan, "host", backends="plan")
    kinds = {lk.layer: lk.kind for lk in cm.layers}
    for c in pruned:
        want = "native" if c.backend == "native" and c.layer != "fc" else "sparse"
        assert kinds[c.layer] == want, c.layer
    assert cm.uses_native_kernels
    with torch.no_grad():
        assert_close(cm.run(x)[0], opt.pruned_model(x), 1e-4)
