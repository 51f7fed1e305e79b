"""Every zoo model through optimize(target="arm64") -> opt.save() -> the aarch64 C++ runner under
qemu-aarch64, against the masked torch model (issue P2's done-when, opt-in: it takes minutes).

    ENGINE_TEST_ALL_ZOO=1 python -m pytest tests/artifact/test_artifact_zoo.py -q

ImageNet models run at 64x64 (qemu is slow; the layers, kernels and packing are the same as at
224x224), CIFAR models at 32x32. CI runs two small models in test_artifact_engine.py.
"""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch

import engine
from artifact_helpers import (assert_close, elf_machine, qemu_cmd, randomize_bn,
                              require_arm64_toolchain)
from engine import zoo

pytestmark = pytest.mark.skipif(os.environ.get("ENGINE_TEST_ALL_ZOO") != "1",
                                reason="opt-in (minutes under qemu): ENGINE_TEST_ALL_ZOO=1")


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_zoo_model_arm64_artifact_under_qemu(name, tmp_path, arm64_runner):
    require_arm64_toolchain()
    model = randomize_bn(zoo.get(name).eval())
    shape = zoo.input_shape(name)
    if shape[-1] > 64:
        shape = (*shape[:-2], 64, 64)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    opt = engine.optimize(model, (x,), target="arm64", sparsity=0.8, block=(4, 1),
                          measure=False, capture=False)
    with torch.no_grad():
        ref = opt.pruned_model(x)
    path = opt.save(tmp_path / "art")
    assert elf_machine(path / "model.so") == "aarch64"
    x.numpy().astype("<f4").tofile(tmp_path / "in.f32")
    r = subprocess.run(qemu_cmd(arm64_runner, str(path), "--input", str(tmp_path / "in.f32"),
                                "--output", str(tmp_path / "out.f32")),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.fromfile(tmp_path / "out.f32", dtype="<f4").reshape(tuple(ref.shape))
    err = float(np.abs(got - ref.numpy()).max() / (ref.abs().max().item() + 1e-12))
    print(f"{name} {tuple(shape)}: max rel err {err:.2e}")
    assert_close(got, ref, what=f"{name}: arm64 artifact under qemu vs masked torch")
