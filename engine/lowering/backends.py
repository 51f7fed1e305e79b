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

A conv's padding goes to the kernel when it is a symmetric zero padding (numbers, "valid", or
"same" split evenly), otherwise the module is wrapped in a PaddedConv2d that pads the input
first (F.pad with the layer's padding_mode; engine.graph.padding). Every module built keeps
the torch layer's attributes a forward may read (engine.runtime.views); transformers' Conv1D
runs as the linear of its transposed weight, in a TransposedLinear keeping its (in, out)
`weight`, `bias`, `nf` and `nx`; an nn.Conv1d as the Conv2d of kernel (1, K) on (N, C, 1, L),
in a Conv1dView keeping its own weight shape and attributes. A layer the modules
cannot be built for is an engine.errors.LoweringError naming it and why.
"""
from __future__ import annotations

from torch import nn

from ..errors import LoweringError
from ..graph.padding import ConvPadding, conv_padding
from ..runtime.dense import PackedDenseConv2d, PackedDenseLinear, winograd_fits
from ..runtime.modules import (DenseConv2d, DenseLinear, DepthwiseConv2d, LoweredLayer,
                               SparseConv2d, SparseLinear)
from ..graph.layers import conv2d_of, is_transposed_linear
from ..runtime.views import (Conv1dView, PaddedConv2d, TransposedLinear,
                             copy_layer_attributes)


def _packed_dense(mod: nn.Module, name: str, w, b, act: str, algo: str, isa: str,
                  pad: ConvPadding):
    """The packed dense module for a conv / linear kept dense, or None where it does not
    apply."""
    if _linear(mod):
        return PackedDenseLinear(w, b, act, isa, layer=name) if algo == "gemm" else None
    if (not isinstance(mod, nn.Conv2d) or mod.groups != 1
            or (algo == "winograd" and not winograd_fits(mod))):
        return None
    return PackedDenseConv2d(w, b, mod.stride, pad.kernel, mod.dilation, act, algo, isa,
                             layer=name)


def build_layer(mod: nn.Module, name: str, w, b, act: str, sparse: dict, isa: str) -> nn.Module:
    """The module running layer `name` (the user's `mod`, weight `w`, bias `b`, fused `act`)
    for its backend in `sparse`; see the module docstring."""
    if isinstance(mod, nn.Conv1d):       # the Conv2d of kernel (1, K) on (N, C, 1, L)
        inner = build_layer(conv2d_of(mod), name, w, b, act, sparse, isa)
        return copy_layer_attributes(Conv1dView(inner, layer=name), mod)
    try:
        pad = conv_padding(mod) if isinstance(mod, nn.Conv2d) else ConvPadding()
        new = _build(mod, name, w, b, act, sparse, isa, pad)
    except LoweringError:
        raise
    except (TypeError, ValueError, RuntimeError) as e:  # pybind / kernel checks, named
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise LoweringError(f"layer {name!r} ({_describe(mod)}) cannot run on the engine's "
                            f"modules: {type(e).__name__}: {first}") from e
    if pad.pre is not None:
        new = PaddedConv2d(new, pad.pre, pad.mode, layer=name)
    if is_transposed_linear(mod):
        new = TransposedLinear(new, mod.weight.shape, layer=name)
    return copy_layer_attributes(new, mod)


def _linear(mod: nn.Module) -> bool:
    return isinstance(mod, nn.Linear) or is_transposed_linear(mod)


def _describe(mod: nn.Module) -> str:
    if isinstance(mod, nn.Conv2d):
        return (f"{type(mod).__name__} {tuple(mod.weight.shape)}, stride={mod.stride}, "
                f"padding={mod.padding!r}, padding_mode={mod.padding_mode!r}, "
                f"dilation={mod.dilation}, groups={mod.groups}")
    return f"{type(mod).__name__} {tuple(getattr(mod, 'weight', ()).shape)}"


def _build(mod: nn.Module, name: str, w, b, act: str, sparse: dict, isa: str,
           pad: ConvPadding) -> nn.Module:
    spec = sparse.get(name)
    if isinstance(spec, tuple) and spec[0] == "dense":
        packed = _packed_dense(mod, name, w, b, act, spec[1], isa, pad)
        if packed is not None:
            return packed
        sparse = {k: v for k, v in sparse.items() if k != name}   # torch
        spec = None
    if isinstance(spec, tuple) and spec[0] == "tir":   # a generated kernel (engine.codegen)
        from ..codegen.host import TirConv2d, TirLinear   # lazy: imports tvm
        if isinstance(mod, nn.Conv2d) and mod.groups == 1:
            return TirConv2d(w, b, mod.stride, pad.kernel, mod.dilation, act, spec[1],
                             layer=name)
        if _linear(mod):
            return TirLinear(w, b, act, spec[1], layer=name)
        sparse = {**sparse, name: spec[1]}             # grouped: the native kernel
    if isinstance(mod, nn.Conv2d):
        if name in sparse and DepthwiseConv2d.supports(mod):
            return DepthwiseConv2d(w, b, mod.stride, pad.kernel, mod.dilation, act, isa,
                                   layer=name)
        if name in sparse:
            return SparseConv2d(w, b, mod.stride, pad.kernel, mod.dilation, act, sparse[name],
                                isa, layer=name, groups=mod.groups)
        return DenseConv2d(w, b, mod.stride, pad.kernel, mod.dilation, act, mod.groups,
                           layer=name)
    if name in sparse:
        return SparseLinear(w, b, act, sparse[name], isa, layer=name)
    return DenseLinear(w, b, act, layer=name)


def native_modules(module: nn.Module) -> dict:
    """layer name -> lowered module (native or dense replacement) in a lowered model."""
    out = {}
    for m in module.modules():   # a PaddedConv2d is not one: the conv it wraps is
        if isinstance(m, LoweredLayer) and m.layer:
            out.setdefault(m.layer, m)  # pre-order: a SparseLinear wins over its inner conv
    return out
