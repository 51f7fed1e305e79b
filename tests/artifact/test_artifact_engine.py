"""engine.optimize -> opt.save -> the artifact, on this host (engine.load, the C++ runner) and on
arm64 (cross-compiled, the aarch64 C++ runner under qemu-aarch64 with the aarch64 TVM runtime).

The artifacts carry the engine's own kernels (NEON on arm64) linked into model.so, every conv /
linear calling them; the reference is the masked torch model (opt.pruned_model).
"""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

import engine
from artifact_helpers import (assert_close, elf_machine, qemu_cmd, randomize_bn,
                              require_arm64_toolchain)
from engine import zoo
from engine.artifact import read_manifest

MODELS = ["resnet18_cifar", "mobilenetv2_cifar"]
# hardswish / squeeze-excitation, SiLU / sigmoid SE, ghost modules (concat + slice): ImageNet
# layouts at 32x32 (the same layers, kernels and glue as at 224x224; qemu is slow)
MOBILE = ["mobilenetv3_large", "efficientnet_b0", "ghostnet"]
SMALL = {name: (1, 3, 32, 32) for name in MOBILE}
DEPTHWISE = "spe.v1.depthwise_conv2d"
DEPTHWISE_LAYERS = {"resnet18_cifar": 0, "mobilenetv2_cifar": 17, "mobilenetv3_large": 15,
                    "efficientnet_b0": 16, "ghostnet": 41}


def _optimized(name, target):
    model = randomize_bn(zoo.get(name).eval())  # realistic activations, not ~0 logits
    x = torch.randn(SMALL.get(name, zoo.input_shape(name)),
                    generator=torch.Generator().manual_seed(1))
    opt = engine.optimize(model, (x,), target=target, sparsity=0.8, block=(4, 1),
                          measure=False, capture=False)
    with torch.no_grad():
        ref = opt.pruned_model(x)
    return opt, x, ref


def _save(opt, directory):
    """opt.save(directory) and the CompiledModel it wrote: its layer list names the kernel each
    conv / linear calls in model.so."""
    compiled = []
    compile_ = opt.compile
    opt.compile = lambda target=None: compiled.append(compile_(target)) or compiled[-1]
    try:
        path = opt.save(directory)
    finally:
        del opt.compile
    assert len(compiled) == 1
    return path, compiled[0]


def _assert_depthwise_kernel(name, cm):
    """Every depthwise conv calls the direct depthwise kernel through the bridge (spe.v1
    depthwise_conv2d, BN and the activation fused: ReLU6 in MobileNetV2), not the
    block-diagonal SpMM pack."""
    dw = [lk for lk in cm.layers if lk.kernel == DEPTHWISE]
    assert len(dw) == DEPTHWISE_LAYERS[name], [(lk.layer, lk.kernel) for lk in cm.layers]
    assert all(lk.kind == "native" and lk.fused[0] == "batch_norm" for lk in dw)
    if name == "mobilenetv2_cifar":
        assert all(lk.fused == ("batch_norm", "relu6") for lk in dw)


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"{cmd}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.mark.parametrize("name", MODELS + MOBILE)
def test_host_artifact_from_optimize(name, tmp_path, host_runner):
    opt, x, ref = _optimized(name, "host")
    path, cm = _save(opt, tmp_path / "art")
    _assert_depthwise_kernel(name, cm)
    manifest = read_manifest(path)
    assert manifest["target"]["name"] == "host"
    assert [c["layer"] for c in manifest["plan"]["choices"]] == [c.layer for c in opt.plan]
    assert_close(engine.load(path)(x), ref, what=f"{name}: engine.load vs masked torch")
    x.numpy().astype("<f4").tofile(tmp_path / "in.f32")
    _run([str(host_runner), str(path), "--input", str(tmp_path / "in.f32"),
          "--output", str(tmp_path / "out.f32")])
    got = np.fromfile(tmp_path / "out.f32", dtype="<f4").reshape(tuple(ref.shape))
    assert_close(got, ref, what=f"{name}: host C++ runner vs masked torch")


def _mixed_backends(name, target):
    """Every other pruned layer on a generated TIR kernel, the rest on the C++ kernels: a plan
    edited by hand and replayed without measuring."""
    opt, x, _ = _optimized(name, target)
    plan = opt.plan
    for i, c in enumerate(plan.pruned):
        c.backend = "tir" if i % 2 == 0 else "native"
    model = randomize_bn(zoo.get(name).eval())
    opt = engine.optimize(model, (x,), target=target, plan=plan, measure=False, capture=False)
    assert {c.backend for c in opt.plan.pruned} == {"tir", "native"}
    with torch.no_grad():
        ref = opt.pruned_model(x)
    return opt, x, ref


@pytest.mark.parametrize("name,backends", [(m, "native") for m in MODELS + MOBILE] +
                         [("resnet18_cifar", "mixed")])
def test_arm64_artifact_from_optimize_under_qemu(name, backends, tmp_path, arm64_runner):
    require_arm64_toolchain()
    opt, x, ref = (_optimized if backends == "native" else _mixed_backends)(name, "arm64")
    path, cm = _save(opt, tmp_path / "art")
    assert elf_machine(path / "model.so") == "aarch64"
    _assert_depthwise_kernel(name, cm)
    x.numpy().astype("<f4").tofile(tmp_path / "in.f32")
    out = _run(qemu_cmd(arm64_runner, str(path), "--input", str(tmp_path / "in.f32"),
                        "--output", str(tmp_path / "out.f32")))
    assert "target arm64, aarch64" in out
    got = np.fromfile(tmp_path / "out.f32", dtype="<f4").reshape(tuple(ref.shape))
    assert_close(got, ref, what=f"{name}: arm64 artifact (NEON kernels) under qemu vs torch")
