"""The target registry: one named entry per target, data not code.

A new board is a new entry. `host` runs through the native kernels from Python; the others are
compile targets for the TVM path (engine/codegen).
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Optional

from ..errors import ConfigError


@dataclass(frozen=True)
class Target:
    name: str
    arch: str                          # "x86_64" | "aarch64"
    llvm: dict = field(default_factory=dict)   # TVM 0.27 JSON target dict
    cross_compiler: Optional[str] = None       # e.g. "aarch64-linux-gnu-g++"
    cross_package: Optional[str] = None        # Debian package providing it
    runner: Optional[str] = None               # how outputs are checked off-host ("qemu-aarch64")
    isa: str = "auto"                          # native kernel variant
    description: str = ""

    @property
    def is_host(self) -> bool:
        return self.arch == platform.machine() and self.cross_compiler is None


TARGETS: dict = {}


def register_target(t: Target) -> Target:
    if t.name in TARGETS:
        raise RuntimeError(f"target {t.name!r} registered twice")
    TARGETS[t.name] = t
    return t


register_target(Target("host", platform.machine(), {"kind": "llvm", "mcpu": "native"},
                       description="this machine, native kernels picked from CPU features"))
register_target(Target("x86_64", "x86_64", {"kind": "llvm", "mtriple": "x86_64-linux-gnu",
                                             "mattr": ["+avx2", "+fma"]}, isa="avx2",
                       description="generic x86-64 with AVX2 + FMA"))
register_target(Target("x86_64-avx512", "x86_64",
                       {"kind": "llvm", "mtriple": "x86_64-linux-gnu",
                        "mattr": ["+avx512f", "+avx512bw", "+avx512vl", "+avx512dq"]},
                       isa="avx512", description="x86-64 with AVX-512"))
register_target(Target("arm64", "aarch64", {"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                                            "mattr": ["+neon"]},
                       cross_compiler="aarch64-linux-gnu-g++",
                       cross_package="g++-aarch64-linux-gnu", runner="qemu-aarch64", isa="neon",
                       description="64-bit ARM Linux (phones, Raspberry Pi), NEON"))
register_target(Target("arm64-dotprod", "aarch64",
                       {"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                        "mattr": ["+neon", "+dotprod"]},
                       cross_compiler="aarch64-linux-gnu-g++",
                       cross_package="g++-aarch64-linux-gnu", runner="qemu-aarch64", isa="neon",
                       description="ARMv8.2+ with dot-product instructions"))
register_target(Target("android-arm64", "aarch64",
                       {"kind": "llvm", "mtriple": "aarch64-linux-android", "mattr": ["+neon"]},
                       cross_compiler="aarch64-linux-android-clang++",
                       cross_package="the Android NDK (set ANDROID_NDK_HOME)", isa="neon",
                       description="Android arm64-v8a via the NDK's clang"))


def get_target(name: str) -> Target:
    if not isinstance(name, str) or name not in TARGETS:
        raise ConfigError(f"unknown target {name!r}; known targets: {sorted(TARGETS)}")
    return TARGETS[name]
