"""Build the native-kernel bridge (kernels/tvm/spe_tvm_bridge.cc + the kernels) as one
relocatable object per architecture, for `export_library(addons=[...])`.

The object registers tvm_ffi global functions (`spe.v1.sparse_conv2d`,
`spe.v1.depthwise_conv2d`, `spe.v1.max_pool2d`) when the exported model.so is loaded, so Relax
`call_dps_packed("spe.v1.sparse_conv2d", ...)` calls reach our kernels on any target, with no
extra library for the app to ship. The kernel sources are CMakeLists.txt's SPE_SOURCES (every
family: SpMM, direct depthwise, max pool, with the ISA variants of the architecture: AVX2 +
AVX-512 on x86_64, NEON on aarch64), so a new family added there is linked in here too. Built
with CMake into .cache/bridge-<arch>/ on first use; later calls are incremental (a changed
source is rebuilt).

The first build of an architecture compiles every kernel family and ISA variant: 2-2.5 min on
2 busy cores, which a fresh checkout or worktree paid inside its first opt.save() (a U-Net's
"110 s save" was this, not TVM). So each built object is also kept in a cache shared by every
checkout on the machine ($ENGINE_CACHE_DIR/bridge, default ~/.cache/engine/bridge), keyed by
the sha256 of the kernel sources, CMakeLists.txt, the compiler's identity and the tvm_ffi
headers: a checkout whose sources match takes it without building, and a build says on stderr
that it is happening and why it takes a while.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import ConfigError
from ..targets.toolchain import bridge_compilers

ROOT = Path(__file__).resolve().parents[2]

def tvm_ffi_include_dir() -> Path:
    from ._tvm import tvm_ffi
    inc = Path(tvm_ffi.__file__).resolve().parent / "include"
    if not (inc / "tvm" / "ffi" / "function.h").exists():
        raise ConfigError(f"tvm_ffi headers not found under {inc} (pip install "
                          f"apache-tvm-ffi, which apache-tvm==0.27.0.post1 requires)")
    return inc


def bridge_object(arch: str) -> Path:
    """Path of spe_tvm_bridge.o for `arch` ("x86_64" or "aarch64"), building it if needed."""
    if not (ROOT / "kernels" / "tvm" / "spe_tvm_bridge.cc").exists():
        raise ConfigError(f"kernel sources not found under {ROOT / 'kernels'}: the native "
                          f"bridge is built from a source checkout (pip install -e .)")
    cross = bridge_compilers(arch)
    shared = shared_object_path(arch, cross)
    if shared is not None and shared.is_file():
        return shared
    build = ROOT / ".cache" / f"bridge-{arch}"
    build.mkdir(parents=True, exist_ok=True)
    args = ["cmake", str(ROOT), "-DCMAKE_BUILD_TYPE=Release", "-DSPE_BUILD_PYTHON=OFF",
            "-DSPE_BUILD_TVM_BRIDGE=ON", f"-DTVM_FFI_INCLUDE_DIR={tvm_ffi_include_dir()}"]
    if cross is not None:
        args += ["-DCMAKE_SYSTEM_NAME=Linux", f"-DCMAKE_SYSTEM_PROCESSOR={arch}",
                 f"-DCMAKE_CXX_COMPILER={cross[0]}", f"-DCMAKE_C_COMPILER={cross[1]}"]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    if not (build / "spe_tvm_bridge.o").exists():
        print(f"engine: building the native kernels for {arch} (first use of these kernel "
              f"sources on this machine: every kernel family and ISA variant, 1-3 min; cached "
              f"in {shared.parent if shared is not None else build})", file=sys.stderr,
              flush=True)
    if not (build / "CMakeCache.txt").exists():
        _run(args, build)
    _run(["cmake", "--build", ".", "--target", "spe_tvm_bridge", "-j", str(os.cpu_count() or 2)],
         build)
    out = build / "spe_tvm_bridge.o"
    if not out.exists():
        raise ConfigError(f"building the native bridge for {arch} produced no {out}")
    if shared is not None:
        _publish(out, shared)
    return out


def shared_object_path(arch: str, cross) -> "Path | None":
    """Where the machine-wide cache keeps the object built from these sources with this
    compiler (None when the cache directory cannot be created)."""
    h = hashlib.sha256(arch.encode())
    files = sorted(p for p in (ROOT / "kernels").rglob("*") if p.is_file())
    for p in files + [ROOT / "CMakeLists.txt"]:
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    h.update(_compiler_identity(cross).encode())
    h.update(str(tvm_ffi_include_dir()).encode())
    ffi = tvm_ffi_include_dir() / "tvm" / "ffi" / "c_api.h"
    if ffi.is_file():
        h.update(ffi.read_bytes())
    env = os.environ.get("ENGINE_CACHE_DIR")
    root = (Path(env).expanduser() if env else Path.home() / ".cache" / "engine") / "bridge"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return root / f"spe_tvm_bridge-{arch}-{h.hexdigest()[:20]}.o"


def _compiler_identity(cross) -> str:
    cxx = cross[0] if cross is not None else (os.environ.get("CXX") or shutil.which("c++") or
                                              "c++")
    try:
        r = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
        return f"{cxx}\n{r.stdout}"
    except (OSError, subprocess.SubprocessError):
        return cxx


def _publish(built: Path, shared: Path) -> None:
    """Copy the built object into the shared cache atomically (another process may read it)."""
    tmp = shared.with_name(f"{shared.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(built, tmp)
        os.replace(tmp, shared)
    except OSError:
        tmp.unlink(missing_ok=True)


def _run(cmd: list, cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise ConfigError(f"native bridge build failed ({' '.join(cmd[:3])} ...):\n"
                          f"{(r.stdout + r.stderr)[-3000:]}")
