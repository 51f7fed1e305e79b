"""Targets: host resolution, the arm64 export (an aarch64 ELF), missing toolchains."""
import shutil
import struct
from dataclasses import replace

import pytest
import torch

from codegen_helpers import TinyNet, randomize_bn
from engine.codegen import compile_model
from engine.codegen.targets import as_target, llvm_dict, tvm_target, vector_isa
from engine.targets.toolchain import cross_compiler
from engine.errors import ConfigError
from engine.targets import get_target

EM_AARCH64 = 183


def _elf_machine(path) -> int:
    with open(path, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF", "not an ELF file"
    return struct.unpack("<H", head[18:20])[0]


def test_host_native_is_resolved_to_this_cpu():
    d = llvm_dict(get_target("host"))
    assert d["mcpu"] != "native" and d["mcpu"]
    assert d["kind"] == "llvm" and "mtriple" in d
    assert vector_isa(tvm_target(get_target("host"))).lanes >= 4


def test_arm64_uses_neon_tiles():
    isa = vector_isa(tvm_target(get_target("arm64")))
    assert (isa.name, isa.lanes) == ("neon", 4)


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None,
                    reason="needs g++-aarch64-linux-gnu")
def test_arm64_export_is_an_aarch64_shared_object(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(TinyNet())
    cm = compile_model(model, (torch.randn(1, 3, 16, 16),), None, "arm64")
    assert cm.target.name == "arm64" and not cm.runs_here
    assert all(lk.kernel.endswith("__neon") for lk in cm.layers)
    path = cm.export_library(tmp_path / "model.so")
    assert _elf_machine(path) == EM_AARCH64
    with pytest.raises(ConfigError, match="does not run on this"):
        cm.run(torch.randn(1, 3, 16, 16))


def test_missing_cross_compiler_names_the_package(tmp_path):
    fake = replace(get_target("arm64"), name="arm64-fake",
                   cross_compiler="aarch64-nowhere-g++", cross_package="g++-aarch64-nowhere")
    with pytest.raises(ConfigError, match="apt-get install g\\+\\+-aarch64-nowhere"):
        cross_compiler(fake)
    with pytest.raises(ConfigError, match="aarch64-nowhere-g\\+\\+"):
        compile_model(TinyNet(), (torch.randn(1, 3, 8, 8),), None, fake)


def test_android_without_ndk_says_what_to_install(monkeypatch):
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    monkeypatch.delenv("ANDROID_NDK_ROOT", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="ANDROID_NDK_HOME"):
        cross_compiler(get_target("android-arm64"))


def test_android_ndk_clang_is_found(monkeypatch, tmp_path):
    bin_dir = tmp_path / "toolchains" / "llvm" / "prebuilt" / "linux-x86_64" / "bin"
    bin_dir.mkdir(parents=True)
    for api in (21, 24, 29):
        p = bin_dir / f"aarch64-linux-android{api}-clang++"
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)
    monkeypatch.setenv("ANDROID_NDK_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("ANDROID_API", raising=False)
    assert cross_compiler(get_target("android-arm64")).endswith("android24-clang++")


def test_host_needs_no_cross_compiler():
    assert cross_compiler(as_target("host")) is None


def test_host_export_loads_and_runs(tmp_path):
    from engine.codegen._tvm import relax, tvm
    torch.manual_seed(0)
    model = randomize_bn(TinyNet())
    x = torch.randn(1, 3, 16, 16)
    cm = compile_model(model, (x,), None, "host")
    path = cm.export_library(tmp_path / "model.so")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy()))
    y = (out[0] if not isinstance(out, tvm.runtime.Tensor) else out).numpy()
    with torch.no_grad():
        ref = model(x).numpy()
    assert float(abs(y - ref).max()) <= 1e-4 * float(abs(ref).max())
