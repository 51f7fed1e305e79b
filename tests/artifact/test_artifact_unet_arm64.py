"""A U-Net's arm64 artifact (its ConvTranspose2d up-sampling as pruned phase convs on the
native kernels, interleaved by the compiled glue), run by examples/cpp/run_artifact built for
aarch64 under qemu-aarch64, matches torch's own transposed convs with the masked weights."""
from __future__ import annotations

import subprocess

import numpy as np
import torch

import engine
from artifact_helpers import assert_close, elf_machine, qemu_cmd, require_arm64_toolchain
from engine.graph.transposed import fold_phase_convs
from unet_net import UNet


def test_unet_arm64_artifact_under_qemu(tmp_path, arm64_runner):
    require_arm64_toolchain()
    torch.manual_seed(0)
    model, x = UNet(3, 2, (8, 16, 32), up_kernel=4).eval(), torch.randn(1, 3, 16, 16)
    opt = engine.optimize(model, (x,), target="arm64", sparsity=0.5, measure=False,
                          progress=False)
    assert {"ups.0.p2x2", "ups.1.p2x2"} <= {c.layer for c in opt.plan.pruned}
    with torch.no_grad():
        ref = fold_phase_convs(opt.pruned_model)(x)     # torch's ConvTranspose2d, masked
    path = opt.save(tmp_path / "art")
    assert elf_machine(path / "model.so") == "aarch64"
    x.numpy().astype("<f4").tofile(tmp_path / "in.f32")
    r = subprocess.run(qemu_cmd(arm64_runner, str(path), "--input", str(tmp_path / "in.f32"),
                                "--output", str(tmp_path / "out.f32")),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.fromfile(tmp_path / "out.f32", dtype="<f4").reshape(tuple(ref.shape))
    assert_close(got, ref, what="U-Net arm64 artifact under qemu vs torch's transposed convs")
