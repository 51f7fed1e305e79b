"""The kernels the library lists (engine._kernels.list_kernels(), read from
kernels/src/<family>/<family>_list.h), as the kernel tests parametrize them.

Tests take their ISAs and kernel ids from here, never from hand-written lists: a kernel added to
a family's list is tested by the next run, and one the CPU (or build) cannot run is skipped at
run time, not left out.
"""
from __future__ import annotations

import zlib

import pytest

from engine import _kernels as K

KERNELS = K.list_kernels()
BY_NAME = {k["name"]: k for k in KERNELS}
# every ISA a kernel is written for, in list order (scalar first)
ISAS = list(dict.fromkeys(k["isa"] for k in KERNELS))
# every fused epilogue activation (spe_activation)
ACTS = ("none", "relu", "relu6", "hardswish", "silu")


def family(name: str) -> list[str]:
    """The ids (kernel names) of one family's kernels, in list order."""
    return [k["name"] for k in KERNELS if k["family"] == name]


SPMM = family("f32_spmm")
DWCONV = family("f32_dwconv")
GEMM = family("f32_gemm")
CONV = family("f32_conv")


def need(isa: str) -> str:
    """isa, or skip the test: this CPU or build cannot run it."""
    if not K.isa_available(isa):
        pytest.skip(f"ISA {isa} not available on this CPU/build")
    return isa


def need_kernel(name: str) -> dict:
    """The listed kernel `name`, or skip the test if this CPU or build cannot run it."""
    kernel = BY_NAME[name]
    need(kernel["isa"])
    assert kernel["available"]
    return kernel


def dwconv_kernel(isa: str, k: tuple, s: tuple, d: tuple) -> str:
    """The kernel a depthwise layer of this geometry runs on isa: the listed specialised kernel
    for a square kernel and stride at dilation 1, else isa's generic kernel."""
    square = k[0] == k[1] and s[0] == s[1] and d == (1, 1)
    generic = None
    for name in DWCONV:
        kernel = BY_NAME[name]
        if kernel["isa"] != isa:
            continue
        tile = kernel["tile"]
        if not tile:
            generic = name
        elif square and (tile["kernel"], tile["stride"]) == (k[0], s[0]):
            return name
    return generic


def seed_of(name: str) -> int:
    """A case's seed, from its name: every ISA sees the same numbers."""
    return zlib.crc32(name.encode())
