"""The backend table of lowering: which module runs a conv / linear layer, given the plan's
backend for it (engine.lowering.host calls it per call site, engine.measure per candidate).

    sparse[name] = rows          -> SparseConv2d / SparseLinear (native kernels, `rows` group
                                    height); depthwise convs: DepthwiseConv2d (direct kernel)
    sparse[name] = ("tir", rows) -> TirConv2d / TirLinear (a kernel generated for the layer;
                                    grouped convs fall back to the native kernel)
    sparse[name] = ("dense", algo) -> PackedDenseConv2d (a conv kept dense on the packed dense
                                    kernels, algo "gemm" or "winograd"), PackedDenseLinear (a
                                    linear, "gemm"); other layers: torch
    name not in sparse           -> DenseConv2d / DenseLinear (torch)
"""
from __future__ import annotations

from torch import nn

from ..runtime.dense import PackedDenseConv2d, PackedDenseLinear, winograd_fits
from ..runtime.modules import (DenseConv2d, DenseLinear, DepthwiseConv2d, LoweredLayer,
                               SparseConv2d, SparseLinear)


def _packed_dense(mod: nn.Module, name: str, w, b, act: str, algo: str, isa: str):
    """The packed dense module for a conv / linear kept dense, or None where it does not
    apply."""
    if isinstance(mod, nn.Linear):
        return PackedDenseLinear(w, b, act, isa, layer=name) if algo == "gemm" else None
    if (not isinstance(mod, nn.Conv2d) or mod.groups != 1 or isinstance(mod.padding, str)
            or (algo == "winograd" and not winograd_fits(mod))):
        return None
    return PackedDenseConv2d(w, b, mod.stride, mod.padding, mod.dilation, act, algo, isa,
                             layer=name)


def build_layer(mod: nn.Module, name: str, w, b, act: str, sparse: dict, isa: str) -> nn.Module:
    spec = sparse.get(name)
    if isinstance(spec, tuple) and spec[0] == "dense":
        packed = _packed_dense(mod, name, w, b, act, spec[1], isa)
        if packed is not None:
            return packed
        sparse = {k: v for k, v in sparse.items() if k != name}   # torch
        spec = None
    if isinstance(spec, tuple) and spec[0] == "tir":   # a generated kernel (engine.codegen)
        from ..codegen.host import TirConv2d, TirLinear   # lazy: imports tvm
        if isinstance(mod, nn.Conv2d) and mod.groups == 1:
            return TirConv2d(w, b, mod.stride, mod.padding, mod.dilation, act, spec[1],
                             layer=name)
        if isinstance(mod, nn.Linear):
            return TirLinear(w, b, act, spec[1], layer=name)
        sparse = {**sparse, name: spec[1]}             # grouped: the native kernel
    if isinstance(mod, nn.Conv2d):
        if name in sparse and DepthwiseConv2d.supports(mod):
            return DepthwiseConv2d(w, b, mod.stride, mod.padding, mod.dilation, act, isa,
                                   layer=name)
        if name in sparse:
            return SparseConv2d(w, b, mod.stride, mod.padding, mod.dilation, act, sparse[name],
                                isa, layer=name, groups=mod.groups)
        return DenseConv2d(w, b, mod.stride, mod.padding, mod.dilation, act, mod.groups,
                           layer=name)
    if name in sparse:
        return SparseLinear(w, b, act, sparse[name], isa, layer=name)
    return DenseLinear(w, b, act, layer=name)


def native_modules(module: nn.Module) -> dict:
    """layer name -> lowered module (native or dense replacement) in a lowered model."""
    out = {}
    for m in module.modules():
        if isinstance(m, LoweredLayer) and m.layer:
            out.setdefault(m.layer, m)  # pre-order: a SparseLinear wins over its inner conv
    return out
