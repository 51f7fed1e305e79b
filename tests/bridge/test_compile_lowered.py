"""Whole pruned models compiled by TVM with their native layers calling the linked kernels.

Reference: the masked torch model (opt.pruned_model). Small CIFAR-size inputs keep this fast.
"""
import shutil

import numpy as np
import pytest
import torch

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402

import engine  # noqa: E402
from engine import zoo  # noqa: E402
from engine.codegen.native_lowering import export_library, import_lowered  # noqa: E402
from engine.codegen.targets import tvm_target  # noqa: E402
from engine.targets import get_target  # noqa: E402


def _first(out):
    return out if hasattr(out, "numpy") else out[0]


@pytest.mark.parametrize("name", ["resnet18_cifar", "mobilenetv2_cifar"])
def test_compiled_host_module_matches_masked_model(tmp_path, name):
    model = zoo.get(name).eval()
    x = torch.randn(zoo.input_shape(name))
    opt = engine.optimize(model, (x,), sparsity=0.8, measure=False, capture=False)
    mod = import_lowered(opt.runtime, (x,))
    text = mod.script()
    assert "spe.v1.sparse_conv2d" in text and "R.nn.conv2d" not in text  # every conv native
    # depthwise convs call the direct depthwise kernel (MobileNetV2: 17 of them), not the SpMM
    assert text.count('"spe.v1.depthwise_conv2d"') == (17 if name == "mobilenetv2_cifar" else 0)
    host = get_target("host")
    ex = tvm.compile(mod, target=tvm_target(host))
    path = export_library(ex, tmp_path / "model.so", host)
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
    for batch_x in (x, torch.randn(zoo.input_shape(name))):
        got = _first(vm["main"](tvm.runtime.tensor(batch_x.numpy()))).numpy()
        ref = opt.pruned_model(batch_x).detach().numpy()
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_arm64_export_is_an_aarch64_library(tmp_path):
    if shutil.which("aarch64-linux-gnu-g++") is None:
        pytest.skip("aarch64-linux-gnu-g++ missing (Debian package g++-aarch64-linux-gnu)")
    model = zoo.get("resnet18_cifar").eval()
    x = torch.randn(zoo.input_shape("resnet18_cifar"))
    opt = engine.optimize(model, (x,), target="arm64", sparsity=0.8, measure=False,
                          capture=False)
    arm = get_target("arm64")
    ex = tvm.compile(import_lowered(opt.runtime, (x,)), target=tvm_target(arm))
    path = export_library(ex, tmp_path / "model.so", arm)
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # aarch64


def test_missing_cross_compiler_names_the_package(tmp_path):
    from dataclasses import replace
    from engine.errors import ConfigError
    arm = replace(get_target("arm64"), cross_compiler="no-such-g++", cross_package="g++-nope")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)).eval()
    x = torch.randn(1, 3, 8, 8)
    opt = engine.optimize(model, (x,), sparsity=0.5, block=(4, 1), measure=False)
    ex = tvm.compile(import_lowered(opt.runtime, (x,)), target=tvm_target(get_target("arm64")))
    with pytest.raises(ConfigError, match="g\\+\\+-nope"):
        export_library(ex, tmp_path / "m.so", arm)
