"""Helpers for artifact tests: small models, compiled with the plain TVM path.

engine.codegen will hand save_artifact a CompiledModel (a relax Executable with better kernels
plus metadata); these tests build the Executable the plain way, which is the same object:
torch.export -> from_exported_program -> tvm.compile(target dict).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from engine.zoo.init import randomize_bn  # noqa: F401  (re-exported for the tests)

REPO = Path(__file__).resolve().parents[2]
AARCH64_RUNTIME = REPO / ".cache" / "aarch64-runtime"
EXAMPLES_CPP = REPO / "examples" / "cpp"
AARCH64_TOOLCHAIN = REPO / "kernels" / "cmake" / "aarch64-linux-gnu.cmake"
QEMU_SYSROOT = "/usr/aarch64-linux-gnu"


def assert_close(got, ref, rtol=1e-4, what="output"):
    """max |got - ref| <= rtol * max |ref| (ref: torch's output, the independent reference)."""
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    scale = float(np.abs(ref).max())
    err = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
    assert scale > 1e-3, f"{what}: reference is ~0 (max |ref| = {scale}); test model is degenerate"
    assert err <= rtol * scale, f"{what}: max err {err:.3g} > {rtol} x max|ref| {scale:.3g}"




class TinyNet(nn.Module):
    """conv-bn-relu -> depthwise -> pool -> linear: the ops a pruned mobile net has."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.nn.functional.relu6(self.dw(x))
        return self.fc(x.mean(dim=(2, 3)))


def target_dict(name: str) -> dict:
    from engine.targets import get_target
    return get_target(name).llvm


def compile_plain(model: nn.Module, x: torch.Tensor, target: str):
    """The plain TVM path -> tvm.runtime.Executable for the named engine target."""
    import tvm
    from tvm.relax.frontend.torch import from_exported_program

    ep = torch.export.export(model, (x,))
    mod = from_exported_program(ep, keep_params_as_input=False)
    # TVM 0.27's tvm.compile wants a Target object: a bare dict fails inside relax.build
    # ("target.keys" is not iterable); tvm.target.Target(dict) is the accepted JSON form.
    return tvm.compile(mod, target=tvm.target.Target(target_dict(target)))


class Case:
    """A model, its input, torch's output (the reference) and compiled executables by target."""

    def __init__(self, name: str, model: nn.Module, x: torch.Tensor):
        self.name, self.model, self.x = name, model, x
        with torch.no_grad():
            self.ref = model(x)
        self._exe = {}

    def executable(self, target: str):
        if target not in self._exe:
            self._exe[target] = compile_plain(self.model, self.x, target)
        return self._exe[target]

    @property
    def inputs(self):
        return [("x", tuple(self.x.shape), "float32")]

    @property
    def outputs(self):
        return [("logits", tuple(self.ref.shape), "float32")]


# ---- toolchains for the C++ example -------------------------------------------------------------

def require_tool(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not found: install the Debian package {package} "
                    f"(scripts/install.sh does)")
    return path


def require_arm64_toolchain() -> None:
    require_tool("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")
    require_tool("qemu-aarch64", "qemu-user")
    require_tool("cmake", "cmake")


def ensure_aarch64_runtime() -> Path:
    lib = AARCH64_RUNTIME / "lib"
    if not (lib / "libtvm_runtime.so").is_file() or not (lib / "libtvm_ffi.so").is_file():
        r = subprocess.run(["bash", str(REPO / "scripts" / "fetch_aarch64_runtime.sh")],
                           capture_output=True, text=True)
        assert r.returncode == 0, ("the aarch64 TVM runtime is missing and "
                                   "scripts/fetch_aarch64_runtime.sh failed:\n" + r.stderr[-2000:])
    return AARCH64_RUNTIME


def cmake_build(build_dir: Path, *extra: str) -> Path:
    cfg = subprocess.run(["cmake", "-S", str(EXAMPLES_CPP), "-B", str(build_dir),
                          "-DCMAKE_BUILD_TYPE=Release", *extra], capture_output=True, text=True)
    assert cfg.returncode == 0, f"cmake configure failed:\n{cfg.stdout[-3000:]}\n{cfg.stderr[-3000:]}"
    bld = subprocess.run(["cmake", "--build", str(build_dir), "-j2"], capture_output=True, text=True)
    assert bld.returncode == 0, f"cmake build failed:\n{bld.stdout[-3000:]}\n{bld.stderr[-3000:]}"
    exe = build_dir / "run_artifact"
    assert exe.is_file()
    return exe


def qemu_cmd(runner: Path, *args: str) -> list:
    return ["qemu-aarch64", "-L", QEMU_SYSROOT, "-E",
            f"LD_LIBRARY_PATH={AARCH64_RUNTIME / 'lib'}", str(runner), *args]


# ---- damaging and signing artifacts ------------------------------------------------------------

MARKER_ENV = "ENGINE_TEST_MARKER"
_MARKER_SO_C = r"""
#include <stdio.h>
#include <stdlib.h>
/* Runs when the dynamic loader maps this file: proof that a loader dlopened it. */
__attribute__((constructor)) static void mark(void) {
  const char* path = getenv("%s");
  FILE* f = path ? fopen(path, "w") : NULL;
  if (f) { fputs("constructor ran\n", f); fclose(f); }
}
""" % MARKER_ENV


def build_marker_so(out_dir: Path) -> Path:
    """A tiny shared library whose constructor writes the file named by $ENGINE_TEST_MARKER."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc) to build the marker library")
    src, so = Path(out_dir) / "marker.c", Path(out_dir) / "marker.so"
    src.write_text(_MARKER_SO_C)
    r = subprocess.run([cc, "-shared", "-fPIC", "-o", str(so), str(src)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    return so


def edit_manifest(d: Path, fn) -> None:
    p = Path(d) / "manifest.json"
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m, indent=2))


def replace_module(d: Path, so: Path) -> None:
    """Drop `so` in as model.so and update its sha256 and size in the manifest: what an attacker
    who can write the artifact does; only a signature tells this apart from the real thing."""
    data = Path(so).read_bytes()
    (Path(d) / "model.so").write_bytes(data)
    edit_manifest(d, lambda m: m["files"].update(
        {"model.so": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}}))


def new_key():
    """A fresh Ed25519 private key (the cryptography package's object)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    return ed25519.Ed25519PrivateKey.generate()


def write_key_files(key, directory: Path, name: str) -> tuple:
    """(public PEM path, private PEM path) of `key`, written with cryptography directly."""
    from cryptography.hazmat.primitives import serialization as ser
    pub, priv = Path(directory) / f"{name}.pub", Path(directory) / f"{name}.pem"
    pub.write_bytes(key.public_key().public_bytes(ser.Encoding.PEM,
                                                  ser.PublicFormat.SubjectPublicKeyInfo))
    priv.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                       ser.NoEncryption()))
    return pub, priv


def sign_in_place(d: Path, key) -> None:
    """Write manifest.sig for the manifest as it is now, in the documented format
    (docs/artifact-trust.md), with cryptography directly: independent of the engine's signer."""
    from cryptography.hazmat.primitives import serialization as ser
    raw = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    sig = {"format": "engine-artifact-signature", "version": 1, "algorithm": "ed25519",
           "key_id": hashlib.sha256(raw).hexdigest()[:16], "signed_file": "manifest.json",
           "signature": key.sign((Path(d) / "manifest.json").read_bytes()).hex()}
    (Path(d) / "manifest.sig").write_text(json.dumps(sig, indent=2) + "\n")


def elf_machine(path: Path) -> str:
    head = Path(path).read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return {0x3E: "x86_64", 0xB7: "aarch64"}.get(int.from_bytes(head[18:20], "little"), "other")
