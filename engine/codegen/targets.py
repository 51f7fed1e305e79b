"""engine.targets.Target -> what TVM needs: the LLVM target, the SIMD shape, the C++ toolchain.

The registry (engine/targets/registry.py) holds targets as data; this module only resolves them:
`{"mcpu": "native"}` becomes this machine's CPU and triple (LLVM rejects "native" and silently
falls back to a generic CPU without AVX), and the cross compiler is looked up on PATH (or in the
Android NDK) with an error that names the package to install.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Union

from ..errors import ConfigError
from ..targets import Target, get_target
from ._tvm import llvm_info, tvm
from .spmm_tir import VectorISA


def as_target(target: Union[str, Target]) -> Target:
    if isinstance(target, Target):
        return target
    return get_target(target)


def llvm_dict(target: Target) -> dict:
    """The TVM 0.27 JSON target dict for `target`, with "native" resolved for the host."""
    d = dict(target.llvm)
    d.setdefault("kind", "llvm")
    if d.get("mcpu") == "native":
        d["mcpu"] = str(llvm_info.llvm_get_system_cpu())
        d.setdefault("mtriple", str(llvm_info.llvm_get_system_triple()))
    if "num-cores" not in d and target.is_host:
        d["num-cores"] = _host_cores()
    return d


def _host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def tvm_target(target: Target):
    return tvm.target.Target(llvm_dict(target))


def vector_isa(tvm_tgt) -> VectorISA:
    """Lanes and register count of the target's widest float vector unit."""
    bits = int(llvm_info.llvm_get_vector_width(tvm_tgt))
    mtriple = str(tvm_tgt.attrs.get("mtriple", "")) if hasattr(tvm_tgt, "attrs") else ""
    arm = mtriple.startswith(("aarch64", "arm64"))
    if arm:
        return VectorISA("neon", 4, 32)
    if bits >= 512:
        return VectorISA("avx512", 16, 32)
    if bits >= 256:
        return VectorISA("avx2", 8, 16)
    return VectorISA("sse", 4, 16)


def cross_compiler(target: Target) -> Optional[str]:
    """The C++ compiler that links the module for `target` (None: the host's default).
    Raises ConfigError naming the compiler and the package to install when it is missing."""
    if target.cross_compiler is None:
        return None
    found = shutil.which(target.cross_compiler)
    if found is None and "android" in str(target.llvm.get("mtriple", "")):
        found = _ndk_clang()
        if found is None:
            raise ConfigError(
                f"target {target.name!r} needs the Android NDK's clang++ "
                f"({target.cross_compiler}): install the Android NDK (r23 or newer, e.g. "
                f"`sdkmanager 'ndk;26.1.10909125'` or the zip from developer.android.com/ndk) "
                f"and set ANDROID_NDK_HOME to its directory")
    if found is None:
        pkg = target.cross_package
        how = (f"install it with `sudo apt-get install {pkg}`" if pkg and " " not in pkg
               else f"install {pkg or 'a cross toolchain for ' + target.arch}")
        raise ConfigError(f"target {target.name!r} needs the cross compiler "
                          f"{target.cross_compiler!r}, which is not on PATH; {how}")
    return found


def _ndk_clang() -> Optional[str]:
    """aarch64-linux-android<API>-clang++ from $ANDROID_NDK_HOME (lowest API >= $ANDROID_API,
    default 24)."""
    ndk = os.environ.get("ANDROID_NDK_HOME") or os.environ.get("ANDROID_NDK_ROOT")
    if not ndk:
        return None
    want = int(os.environ.get("ANDROID_API", "24"))
    found = []
    for b in sorted(Path(ndk).glob("toolchains/llvm/prebuilt/*/bin")):
        for p in b.glob("aarch64-linux-android*-clang++"):
            api = p.name[len("aarch64-linux-android"):-len("-clang++")]
            if api.isdigit() and int(api) >= want:
                found.append((int(api), str(p)))
    return min(found)[1] if found else None


def describe(target: Target) -> str:
    d = llvm_dict(target)
    return ", ".join(f"{k}={v}" for k, v in d.items())
