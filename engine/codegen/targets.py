"""engine.targets.Target -> what TVM needs: the LLVM target, the SIMD shape, the C++ toolchain.

The registry (engine/targets/registry.py) holds targets as data; this module only resolves them:
`{"mcpu": "native"}` becomes this machine's CPU and triple (LLVM rejects "native" and silently
falls back to a generic CPU without AVX), and the cross compiler is looked up on PATH (or in the
Android NDK) with an error that names the package to install.
"""
from __future__ import annotations

import os

from ..targets import Target
from ..targets.toolchain import as_target, cross_compiler  # noqa: F401  (re-exported)
from ._tvm import llvm_info, tvm
from .spmm_tir import VectorISA


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


def describe(target: Target) -> str:
    d = llvm_dict(target)
    return ", ".join(f"{k}={v}" for k, v in d.items())
