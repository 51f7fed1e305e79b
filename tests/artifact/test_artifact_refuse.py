"""load_artifact refuses damaged, foreign or misused artifacts with an ArtifactError that names
the problem (and the loaded artifact refuses wrong inputs)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from engine.artifact import load_artifact, verify_artifact
from engine.errors import ArtifactError, EngineError


def _edit_manifest(d, fn):
    p = d / "manifest.json"
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m, indent=2))


def test_error_class():
    assert issubclass(ArtifactError, EngineError)


def test_tampered_module(tiny_copy):
    so = tiny_copy / "model.so"
    data = bytearray(so.read_bytes())
    data[len(data) // 2] ^= 0x01                           # flip one bit, same size
    so.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.so does not match manifest\.json.*sha256.*modified"):
        load_artifact(tiny_copy)


def test_truncated_module(tiny_copy):
    so = tiny_copy / "model.so"
    data = so.read_bytes()
    so.write_bytes(data[: len(data) - 4096])
    with pytest.raises(ArtifactError, match=rf"model\.so is truncated: {len(data) - 4096} bytes, "
                                            rf"manifest\.json says {len(data)}"):
        load_artifact(tiny_copy)


def test_truncated_plan_file(tiny_copy):
    p = tiny_copy / "plan.json"
    p.write_bytes(p.read_bytes()[:10])
    with pytest.raises(ArtifactError, match=r"plan\.json is truncated"):
        load_artifact(tiny_copy)


def test_missing_manifest(tiny_copy):
    (tiny_copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="has no manifest.json"):
        load_artifact(tiny_copy)


def test_missing_directory(tmp_path):
    with pytest.raises(ArtifactError, match="not an artifact directory"):
        load_artifact(tmp_path / "nope")


def test_missing_module(tiny_copy):
    (tiny_copy / "model.so").unlink()
    with pytest.raises(ArtifactError, match=r"model\.so is missing"):
        load_artifact(tiny_copy)


def test_edited_manifest_sha(tiny_copy):
    _edit_manifest(tiny_copy, lambda m: m["files"]["model.so"].update(sha256="0" * 64))
    with pytest.raises(ArtifactError, match=r"model\.so does not match manifest\.json"):
        load_artifact(tiny_copy)


def test_manifest_without_module_checksum(tiny_copy):
    _edit_manifest(tiny_copy, lambda m: m["files"].pop("model.so"))
    with pytest.raises(ArtifactError, match="lists no sha256 for the module"):
        load_artifact(tiny_copy)


def test_manifest_path_escape(tiny_copy):
    _edit_manifest(tiny_copy, lambda m: m["files"].update({"../x": {"sha256": "0", "size": 1}}))
    with pytest.raises(ArtifactError, match=r"field 'files\[\"\.\./x\"\]' is not a file inside"):
        load_artifact(tiny_copy)


def test_damaged_manifest_json(tiny_copy):
    (tiny_copy / "manifest.json").write_text('{"format": "engine-artifact", ')
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(tiny_copy)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(format_version=99), "unknown artifact format version 99.*upgrade"),
    (lambda m: m.update(format="onnx"), "unknown manifest format 'onnx'"),
    (lambda m: m.pop("inputs"), "required field 'inputs' is missing"),
])
def test_unknown_manifest_format(tiny_copy, edit, match):
    _edit_manifest(tiny_copy, edit)
    with pytest.raises(ArtifactError, match=match):
        load_artifact(tiny_copy)


def test_wrong_arch_manifest(tiny_copy):
    """An artifact whose target is another arch (manifest edited; the real cross-compiled arm64
    artifact is refused in test_artifact_arm64.py)."""
    _edit_manifest(tiny_copy, lambda m: m["target"].update(name="riscv", arch="riscv64"))
    with pytest.raises(ArtifactError, match=r"riscv64 but this machine is .*must be run on an "
                                            r"riscv64 device.*qemu-riscv64.*examples/"):
        load_artifact(tiny_copy)
    verify_artifact(tiny_copy)                             # integrity alone is fine


def test_android_artifact_on_linux(tiny_copy):
    _edit_manifest(tiny_copy, lambda m: m["target"].update(name="android-x", os="android"))
    with pytest.raises(ArtifactError, match="linked for an Android app"):
        load_artifact(tiny_copy)


def test_missing_cpu_features(tiny_copy):
    _edit_manifest(tiny_copy, lambda m: m["target"].update(required_cpu_flags=["avx9000"]))
    with pytest.raises(ArtifactError, match=r"CPU features this CPU lacks: \['avx9000'\]"):
        load_artifact(tiny_copy)


def test_wrong_inputs_at_call_time(tiny_case, tiny_artifact):
    loaded = load_artifact(tiny_artifact)
    with pytest.raises(ArtifactError, match=r"input 0 'x' is float32\[1, 3, 16, 16\], but the "
                                            r"artifact was compiled for float32\[1, 3, 8, 8\]"):
        loaded(torch.randn(1, 3, 16, 16))
    with pytest.raises(ArtifactError, match=r"float64\[1, 3, 8, 8\].*float32\[1, 3, 8, 8\]"):
        loaded(np.zeros((1, 3, 8, 8)))
    with pytest.raises(ArtifactError, match=r"takes 1 input\(s\).*got 2"):
        loaded(tiny_case.x, tiny_case.x)
    with pytest.raises(ArtifactError, match="unknown input name"):
        loaded(y=tiny_case.x)
    # still usable after refusals
    out = loaded(tiny_case.x)
    with torch.no_grad():
        ref = tiny_case.model(tiny_case.x)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_verify_false_still_checks_presence(tiny_copy):
    shutil.move(tiny_copy / "model.so", tiny_copy / "other.so")
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(tiny_copy, verify=False)
