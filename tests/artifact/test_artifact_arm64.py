"""The C++ embedding example (examples/cpp) against real artifacts.

Key test of the issue: the arm64 artifact, cross-compiled here with aarch64-linux-gnu-g++ and run
under qemu-aarch64 with the aarch64 TVM runtime by examples/cpp/run_artifact built for aarch64,
matches PyTorch. Also: the same runner built for the host runs the host artifact; both runners
refuse a tampered artifact; Python refuses to load the arm64 artifact on this x86 host.
"""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import torch

from artifact_helpers import (AARCH64_RUNTIME, QEMU_SYSROOT, assert_close, elf_machine,
                              qemu_cmd, require_arm64_toolchain)
from engine.artifact import deterministic_input, host_arch, load_artifact, save_artifact
from engine.errors import ArtifactError

QEMU_TIMEOUT = 120


def _run(cmd, timeout=QEMU_TIMEOUT):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return r


def _checked(cmd, timeout=QEMU_TIMEOUT):
    r = _run(cmd, timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _save_arm64(case, tmp_path_factory):
    require_arm64_toolchain()
    d = tmp_path_factory.mktemp("arm64") / f"{case.name}-arm64"
    return save_artifact(d, case.executable("arm64"), "arm64", case.inputs, case.outputs,
                         extra={"model": case.name})


@pytest.fixture(scope="session")
def arm64_artifact(mobilenet_case, tmp_path_factory):
    return _save_arm64(mobilenet_case, tmp_path_factory)


@pytest.fixture(scope="session")
def host_artifact(mobilenet_case, tmp_path_factory):
    d = tmp_path_factory.mktemp("host") / "mobilenetv2-host"
    return save_artifact(d, mobilenet_case.executable("host"), "host", mobilenet_case.inputs,
                         mobilenet_case.outputs)


def _input_file(tmp_path, x: torch.Tensor):
    p = tmp_path / "input.f32"
    x.numpy().astype("<f4").tofile(p)
    return p


def _read_output(path, shape):
    return np.fromfile(path, dtype="<f4").reshape(shape)


@pytest.mark.parametrize("case_name", ["mobilenet_case", "resnet_case"])
def test_arm64_artifact_under_qemu_matches_torch(case_name, request, arm64_runner,
                                                 tmp_path_factory, tmp_path):
    """The key test: cross-compiled arm64 artifact, run by the aarch64 C++ runner under qemu with
    the aarch64 TVM runtime, matches PyTorch within 1e-4 relative."""
    case = request.getfixturevalue(case_name)
    artifact = (request.getfixturevalue("arm64_artifact") if case_name == "mobilenet_case"
                else _save_arm64(case, tmp_path_factory))
    assert elf_machine(artifact / "model.so") == "aarch64"
    assert elf_machine(arm64_runner) == "aarch64"
    out = tmp_path / "out.f32"
    stdout = _checked(qemu_cmd(arm64_runner, str(artifact),
                               "--input", str(_input_file(tmp_path, case.x)),
                               "--output", str(out)))
    assert "target arm64, aarch64" in stdout
    assert re.search(r"output 0 'logits' shape \(1, 10\) float32 checksum sum=", stdout)
    assert_close(_read_output(out, tuple(case.ref.shape)), case.ref,
                 what=f"{case.name}: arm64 artifact under qemu vs torch")


def test_arm64_deterministic_input(mobilenet_case, arm64_artifact, arm64_runner, tmp_path):
    """Without --input the runner uses deterministic_input(); compare to torch on the same x."""
    out = tmp_path / "out.f32"
    _checked(qemu_cmd(arm64_runner, str(arm64_artifact), "--output", str(out)))
    x = torch.from_numpy(deterministic_input(mobilenet_case.x.shape))
    with torch.no_grad():
        ref = mobilenet_case.model(x)
    assert_close(_read_output(out, tuple(ref.shape)), ref, what="arm64 deterministic input")


def test_arm64_runner_refuses_tampered(arm64_artifact, arm64_runner, tmp_path):
    import shutil
    d = tmp_path / "tampered"
    shutil.copytree(arm64_artifact, d)
    so = d / "model.so"
    data = bytearray(so.read_bytes())
    data[1000] ^= 0xFF
    so.write_bytes(bytes(data))
    r = _run(qemu_cmd(arm64_runner, str(d)))
    assert r.returncode == 3, r.stderr
    assert "model.so does not match manifest.json" in r.stderr


def test_arm64_runner_checks_signatures(arm64_artifact, arm64_runner, release_key, tmp_path):
    """The aarch64 build of the runner's own Ed25519 / SHA-512 code (under qemu): RFC 8032's
    first test vector, then a signed arm64 artifact accepted with --trusted-key and refused once
    its manifest is edited after signing."""
    import shutil
    from artifact_helpers import sign_in_place
    from engine.artifact import key_id, write_public_key
    from test_artifact_cpp_trust import RFC8032_VECTORS, _verify_line
    crypto = arm64_runner.parent / "crypto_check"
    assert elf_machine(crypto) == "aarch64"
    _, pub, msg, sig = RFC8032_VECTORS[2]
    lines = ["selftest", _verify_line(bytes.fromhex(pub), bytes.fromhex(sig), bytes.fromhex(msg)),
             _verify_line(bytes.fromhex(pub), bytes.fromhex(sig), b"other")]
    r = subprocess.run(qemu_cmd(crypto), input="\n".join(lines) + "\n", capture_output=True,
                       text=True, timeout=QEMU_TIMEOUT)
    assert r.stdout.split() == ["ok", "valid", "invalid"], r.stderr
    d = tmp_path / "signed"
    shutil.copytree(arm64_artifact, d)
    sign_in_place(d, release_key)
    pem = write_public_key(release_key, tmp_path / "k.pub")
    out = _checked(qemu_cmd(arm64_runner, str(d), "--trusted-key", str(pem), "--check-only"))
    assert f"signed by trusted key {key_id(release_key)}" in out and "check: ok" in out
    m = d / "manifest.json"
    m.write_bytes(m.read_bytes().replace(b'"extra": {', b'"extra": {"x": 1, ', 1))
    r = _run(qemu_cmd(arm64_runner, str(d), "--trusted-key", str(pem), "--check-only"))
    assert r.returncode == 3 and "signature does not verify" in r.stderr, r.stderr


def test_python_refuses_arm64_artifact_on_this_host(arm64_artifact):
    if host_arch() == "aarch64":
        pytest.skip("this host is aarch64: the arm64 artifact is loadable here")
    with pytest.raises(ArtifactError, match=r"is aarch64 but this machine is x86_64: it must be "
                                            r"run on an aarch64 device \(or under qemu-aarch64.*"
                                            r"examples/README.md"):
        load_artifact(arm64_artifact)


def test_host_example_matches_torch(mobilenet_case, host_artifact, host_runner, tmp_path):
    assert elf_machine(host_runner) == host_arch()
    out = tmp_path / "out.f32"
    stdout = _checked([str(host_runner), str(host_artifact), "--input",
                       str(_input_file(tmp_path, mobilenet_case.x)), "--output", str(out),
                       "--repeat", "3"], timeout=60)
    assert "latency median" in stdout
    host_out = _read_output(out, tuple(mobilenet_case.ref.shape))
    assert_close(host_out, mobilenet_case.ref, what="host C++ runner vs torch")
    # --threads sizes the one pool every layer runs on; the result does not depend on it
    out1 = tmp_path / "out1.f32"
    _checked([str(host_runner), str(host_artifact), "--input",
              str(_input_file(tmp_path, mobilenet_case.x)), "--output", str(out1),
              "--threads", "1"], timeout=60)
    assert_close(_read_output(out1, tuple(mobilenet_case.ref.shape)), mobilenet_case.ref,
                 what="host C++ runner at --threads 1 vs torch")
    # and the Python loader agrees with the C++ runner on the same artifact
    assert_close(load_artifact(host_artifact)(mobilenet_case.x), mobilenet_case.ref)


def test_host_runner_usage_errors(mobilenet_case, host_artifact, host_runner, tmp_path):
    bad = tmp_path / "short.f32"
    bad.write_bytes(b"\0" * 12)
    r = _run([str(host_runner), str(host_artifact), "--input", str(bad)], timeout=60)
    assert r.returncode == 2 and "needs 12288" in r.stderr
    r = _run([str(host_runner), str(host_artifact / "model.so")], timeout=60)
    assert r.returncode == 2 and "give --shape" in r.stderr
    for bad in ("0", "1025", "two"):
        r = _run([str(host_runner), str(host_artifact), "--threads", bad], timeout=60)
        assert r.returncode == 2 and "--threads must be" in r.stderr, (bad, r.stderr)
    # a bare model.so with --shape runs (no manifest: no checksum, specs from the command line)
    out = tmp_path / "out.f32"
    r = _run([str(host_runner), str(host_artifact / "model.so"), "--shape", "1,3,32,32",
              "--output", str(out)], timeout=60)
    assert r.returncode == 0, r.stderr
    assert "output 0 'output0' shape (1, 10)" in r.stdout
    x = torch.from_numpy(deterministic_input((1, 3, 32, 32)))
    with torch.no_grad():
        ref = mobilenet_case.model(x)
    assert_close(_read_output(out, (1, 10)), ref, what="bare model.so, deterministic input")


def test_qemu_sysroot_and_runtime_present():
    """The pieces the arm64 tests rely on (installed by scripts/install.sh)."""
    require_arm64_toolchain()
    from pathlib import Path
    assert Path(QEMU_SYSROOT, "lib", "ld-linux-aarch64.so.1").exists()
    for lib in ("libtvm_runtime.so", "libtvm_ffi.so"):
        assert elf_machine(AARCH64_RUNTIME / "lib" / lib) == "aarch64"
