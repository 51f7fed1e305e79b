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
"""
from __future__ import annotations

import os
import shutil
import subprocess
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
    build = ROOT / ".cache" / f"bridge-{arch}"
    build.mkdir(parents=True, exist_ok=True)
    args = ["cmake", str(ROOT), "-DCMAKE_BUILD_TYPE=Release", "-DSPE_BUILD_PYTHON=OFF",
            "-DSPE_BUILD_TVM_BRIDGE=ON", f"-DTVM_FFI_INCLUDE_DIR={tvm_ffi_include_dir()}"]
    cross = bridge_compilers(arch)
    if cross is not None:
        args += ["-DCMAKE_SYSTEM_NAME=Linux", f"-DCMAKE_SYSTEM_PROCESSOR={arch}",
                 f"-DCMAKE_CXX_COMPILER={cross[0]}", f"-DCMAKE_C_COMPILER={cross[1]}"]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    if not (build / "CMakeCache.txt").exists():
        _run(args, build)
    _run(["cmake", "--build", ".", "--target", "spe_tvm_bridge", "-j", str(os.cpu_count() or 2)],
         build)
    out = build / "spe_tvm_bridge.o"
    if not out.exists():
        raise ConfigError(f"building the native bridge for {arch} produced no {out}")
    return out


def _run(cmd: list, cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise ConfigError(f"native bridge build failed ({' '.join(cmd[:3])} ...):\n"
                          f"{(r.stdout + r.stderr)[-3000:]}")
