"""The one resolver of build tools for a target: arch names, the C/C++ cross compilers that
link a target's module and the native bridge (Debian cross packages, the Android NDK's clang).

Every caller (codegen's export, the native bridge build, the artifact writer, the RPC
profiler) asks here, so a missing toolchain reads the same everywhere: the compiler, and the
package or the NDK setting that provides it. Errors are ConfigError unless the caller passes
its own error class (the artifact writer raises ArtifactError)."""
from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Optional, Union

from ..errors import ConfigError
from .registry import Target, get_target

_ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}

# arch -> (C++ compiler, C compiler, Debian package) for cross builds of the native bridge
_DEBIAN_CROSS = {
    "aarch64": ("aarch64-linux-gnu-g++", "aarch64-linux-gnu-gcc", "g++-aarch64-linux-gnu"),
}


def norm_arch(arch: str) -> str:
    return _ARCH_ALIASES.get(arch.lower(), arch.lower())


def host_arch() -> str:
    return norm_arch(platform.machine())


def host_is_android() -> bool:
    return hasattr(sys, "getandroidapilevel") or "ANDROID_ROOT" in os.environ


def as_target(target: Union[Target, str]) -> Target:
    return target if isinstance(target, Target) else get_target(target)


def is_android(target: Target) -> bool:
    return "android" in str(target.llvm.get("mtriple", ""))


def cross_compiler(target: Union[Target, str], error=ConfigError) -> Optional[str]:
    """The C++ compiler that links a module for `target` (None: the host's default compiler).
    Raises `error` naming the compiler and what provides it when it is missing."""
    t = as_target(target)
    if t.cross_compiler is None:
        if norm_arch(t.arch) != host_arch():
            raise error(f"target {t.name!r} is {t.arch} but names no cross compiler in the "
                        f"target registry, and this machine is {host_arch()}")
        return None
    found = shutil.which(t.cross_compiler)
    if found is None and is_android(t):
        found = ndk_clang()
        if found is None:
            raise error(f"target {t.name!r} needs the Android NDK's clang++ "
                        f"({t.cross_compiler}): install the Android NDK (r23 or newer, e.g. "
                        f"`sdkmanager 'ndk;26.1.10909125'` or the zip from "
                        f"developer.android.com/ndk) and set ANDROID_NDK_HOME to its directory")
    if found is None:
        raise error(f"target {t.name!r} needs the cross compiler {t.cross_compiler!r}, which "
                    f"is not on PATH; {_install_hint(t.cross_package, t.arch)}")
    return found


def _install_hint(package: Optional[str], arch: str) -> str:
    if package and " " not in package:
        return f"install it with `sudo apt-get install {package}`"
    return f"install {package or 'a cross toolchain for ' + arch}"


def ndk_clang() -> Optional[str]:
    """aarch64-linux-android<API>-clang++ from $ANDROID_NDK_HOME (the lowest API >=
    $ANDROID_API, default 24)."""
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


def bridge_compilers(arch: str) -> Optional[tuple]:
    """(C++ compiler, C compiler) that build the native bridge for `arch`; None on the host.
    ConfigError naming the package when the cross compiler is missing."""
    arch = norm_arch(arch)
    if arch == host_arch():
        return None
    entry = _DEBIAN_CROSS.get(arch)
    if entry is None:
        raise ConfigError(f"no cross toolchain known for architecture {arch!r}")
    cxx, cc, package = entry
    if shutil.which(cxx) is None:
        raise ConfigError(f"cross compiler {cxx} not found: {_install_hint(package, arch)}")
    return cxx, cc
