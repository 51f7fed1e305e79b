"""Where an artifact can be built and run: arch names, cross compilers (Debian, Android NDK),
the CPU features a target's code needs, and the check that this machine can run an artifact."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from ..errors import ArtifactError
from ..targets.registry import Target
from ..targets.toolchain import as_target as _as_target, cross_compiler as _cross_compiler
from ..targets.toolchain import host_arch, host_is_android, norm_arch
from .layout import EXAMPLES_HINT

# LLVM feature -> /proc/cpuinfo flag (Linux). Features not listed are not checked.
_CPUINFO_FLAG = {
    "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "bmi": "bmi1", "bmi2": "bmi2",
    "sse4.1": "sse4_1", "sse4.2": "sse4_2", "avx512f": "avx512f", "avx512bw": "avx512bw",
    "avx512vl": "avx512vl", "avx512dq": "avx512dq", "avx512cd": "avx512cd",
    "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16", "avxvnni": "avx_vnni",
    "neon": "asimd", "dotprod": "asimddp", "fullfp16": "asimdhp", "i8mm": "i8mm",
    "sve": "sve", "bf16": "bf16",
}
# For `mcpu: native` targets the code uses whatever the build machine has; these are the flags
# recorded at save time and checked at load time.
_NATIVE_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "avx512f",
                 "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni", "avx512_bf16",
                 "avx512_fp16", "avx_vnni", "asimd", "asimddp", "asimdhp", "i8mm", "sve")


def as_target(target: Union[Target, str, None]) -> Target:
    if isinstance(target, (Target, str)):
        return _as_target(target)
    raise ArtifactError(f"target must be an engine Target or a target name, got {target!r}")


def cross_compiler(target: Union[Target, str]) -> Optional[str]:
    """The C++ compiler that links model.so for `target` (None: TVM's default host compiler);
    ArtifactError naming the compiler and its package when it is missing."""
    return _cross_compiler(as_target(target), error=ArtifactError)


def _cpu_flags() -> Optional[set]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags: set = set()
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(val.split())
    return flags or None


def _required_cpu_flags(t: Target) -> list:
    """CPU flags (as /proc/cpuinfo spells them) the compiled code may use."""
    if t.llvm.get("mcpu") == "native":
        have = _cpu_flags() or set()
        return sorted(f for f in _NATIVE_FLAGS if f in have)
    out = set()
    for feat in t.llvm.get("mattr", []) or []:
        if isinstance(feat, str) and feat.startswith("+"):
            flag = _CPUINFO_FLAG.get(feat[1:])
            if flag:
                out.add(flag)
    return sorted(out)


def target_dict(t: Target) -> dict:
    return {"name": t.name, "arch": norm_arch(t.arch), "llvm": dict(t.llvm),
            "os": "android" if "android" in str(t.llvm.get("mtriple", "")) else "linux",
            "isa": t.isa, "cross_compiler": t.cross_compiler,
            "required_cpu_flags": _required_cpu_flags(t), "description": t.description}


def check_runnable_here(manifest: dict) -> None:
    """Refuse an artifact this machine cannot run: arch, OS (Android vs glibc), CPU features."""
    t = manifest["target"]
    arch, here = norm_arch(str(t["arch"])), host_arch()
    name = t.get("name", "?")
    if arch != here:
        raise ArtifactError(
            f"artifact target {name!r} is {arch} but this machine is {here}: it must be run on an "
            f"{arch} device (or under qemu-{arch} with the {arch} TVM runtime), through the C++ "
            f"runner, see {EXAMPLES_HINT}")
    is_android = t.get("os") == "android" or "android" in str(t["llvm"].get("mtriple", ""))
    if is_android != host_is_android():
        where = "an Android app" if is_android else "Linux (glibc)"
        raise ArtifactError(f"artifact target {name!r} was linked for {where}, not for this "
                            f"system; see {EXAMPLES_HINT}")
    need = t.get("required_cpu_flags") or []
    have = _cpu_flags()
    if need and have is not None:
        missing = [f for f in need if f not in have]
        if missing:
            raise ArtifactError(f"artifact target {name!r} uses CPU features this CPU lacks: "
                                f"{missing}; re-export for a target without them (e.g. "
                                f"'x86_64' instead of 'x86_64-avx512' or 'host')")
