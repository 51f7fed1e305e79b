"""int8 artifacts (engine.quant.compile_int8): the int8-lowered model compiled into model.so,
its int8 layers calls into the same kernels. Reference: the host's int8-lowered model
(engine.quant.lower_int8), itself tested against integer references and the simulation; the
int8 parts are bit-exact on every ISA, so host and arm64 artifacts must match it to the float
rounding of the fp32 classifier. The manifest records the quantization."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

import engine  # noqa: E402
from engine.artifact import save_artifact  # noqa: E402
from engine.quant import calibrate, compile_int8, int8_manifest, lower_int8  # noqa: E402

from artifact_helpers import assert_close, elf_machine, qemu_cmd, require_arm64_toolchain  # noqa: E402


def _int8(case):
    torch.manual_seed(3)
    cal = calibrate(case.model, [torch.randn(case.x.shape) for _ in range(2)])
    qm = lower_int8(case.model, cal)
    with torch.no_grad():
        return qm, qm(case.x)


def test_int8_host_artifact_is_the_lowered_model(resnet_case, tmp_path):
    qm, ref = _int8(resnet_case)
    cm = compile_int8(qm, (resnet_case.x,), "host")
    assert sum(lk.kernel.startswith("qs8_spmm") for lk in cm.layers) >= 19
    path = save_artifact(tmp_path / "art", cm, extra={"int8": int8_manifest(qm)})
    manifest = json.loads((path / "manifest.json").read_text())
    layers = manifest["extra"]["int8"]["layers"]
    assert "layer1.0.conv1" in layers and layers["layer1.0.conv1"]["act"] == "relu"
    assert layers["layer1.0.conv2"]["residual"] is not None        # the fused residual add
    got = engine.load(path)(resnet_case.x)
    got = got[0] if isinstance(got, (tuple, list)) else got
    assert_close(np.asarray(got), ref.numpy(), rtol=1e-5, what="int8 host artifact vs lowered model")


@pytest.mark.parametrize("case_name", ["resnet_case", "mobilenet_case"])
def test_int8_arm64_artifact_under_qemu(case_name, request, tmp_path, arm64_runner):
    """ResNet-18 and MobileNetV2 (its depthwise convs on the int8 depthwise kernel) on the NEON
    int8 kernels."""
    require_arm64_toolchain()
    case = request.getfixturevalue(case_name)
    qm, ref = _int8(case)
    assert float(ref.abs().max()) > 1e-3                   # a live network, not a vanished one
    path = save_artifact(tmp_path / "art", compile_int8(qm, (case.x,), "arm64"),
                         extra={"int8": int8_manifest(qm)})
    assert elf_machine(path / "model.so") == "aarch64"
    case.x.numpy().astype("<f4").tofile(tmp_path / "in.f32")
    import subprocess
    proc = subprocess.run(qemu_cmd(arm64_runner, str(path), "--input", str(tmp_path / "in.f32"),
                                   "--output", str(tmp_path / "out.f32")),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = np.fromfile(tmp_path / "out.f32", dtype="<f4").reshape(tuple(ref.shape))
    assert_close(got, ref.numpy(), rtol=1e-5,
                 what=f"{case.name}: int8 arm64 artifact (NEON int8 kernels) under qemu vs the "
                      f"lowered model")


def test_int8_linear_layers_in_an_arm64_artifact_under_qemu(tmp_path, arm64_runner):
    """A transformer FFN over 16 tokens: its int8 linear layers (QLinear: quantize, the 1x1 int8
    kernel over the tokens, dequantize) on the NEON kernels match the host's lowered model."""
    require_arm64_toolchain()
    import subprocess
    from linear_nets import Block
    torch.manual_seed(0)
    model, x = Block().eval(), torch.randn(1, 16, 32)
    qm = lower_int8(model, calibrate(model, [torch.randn(2, 16, 32) for _ in range(2)]))
    assert qm.int8_report["up"].startswith("int8") and qm.int8_report["down"].startswith("int8")
    with torch.no_grad():
        ref = qm(x)
    cm = compile_int8(qm, (x,), "arm64")
    assert sum(lk.op == "linear" and lk.kernel.startswith("qs8_spmm") for lk in cm.layers) == 2
    path = save_artifact(tmp_path / "art", cm, extra={"int8": int8_manifest(qm)})
    x.numpy().astype("<f4").tofile(tmp_path / "in.f32")
    proc = subprocess.run(qemu_cmd(arm64_runner, str(path), "--input", str(tmp_path / "in.f32"),
                                   "--output", str(tmp_path / "out.f32")),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = np.fromfile(tmp_path / "out.f32", dtype="<f4").reshape(tuple(ref.shape))
    assert_close(got, ref.numpy(), rtol=1e-5, what="int8 linear layers: arm64 artifact under "
                                                   "qemu vs the lowered model")
