"""torch custom ops standing for native layers, so torch.export can capture a lowered model.

In eager mode native modules call the kernels directly; under torch.export they emit
`torch.ops.spe.spe_conv2d(x, residual, layer_id)` / `spe_depthwise_conv2d(x, residual, layer_id)`
/ `spe_dense_conv2d(x, residual, layer_id)` / `torch.ops.spe.spe_max_pool2d(x, layer_id)`, and
for int8 models (engine.quant.lower_int8; uint8 NCHW4 tensors) `spe_qconv2d(x, residual,
layer_id)`, `spe_qdepthwise2d(x, residual, layer_id)`, `spe_quantize(x, layer_id)`, `spe_dequantize(x, layer_id)`, `spe_max_pool2d_u8(x,
layer_id)`, and `spe_tir_layer(x, residual, layer_id)` for a layer on a generated kernel
(engine.codegen.host): single graph nodes that the compiler path (engine/codegen) maps to calls into the
kernels linked into the compiled module. `layer_id` finds the module (its packed weight and geometry) in a
process-wide weak registry. The names carry an `spe_` prefix because the TVM importer keys ops by
their bare name, where `conv2d.default` would collide with aten's.
"""
from __future__ import annotations

import itertools
import weakref
from typing import Optional

import torch

_LAYERS: "weakref.WeakValueDictionary[int, torch.nn.Module]" = weakref.WeakValueDictionary()
_IDS = itertools.count(1)


def register(module: torch.nn.Module) -> int:
    """A process-unique id for a native module (held weakly)."""
    i = next(_IDS)
    _LAYERS[i] = module
    return i


def lookup(layer_id: int) -> torch.nn.Module:
    try:
        return _LAYERS[layer_id]
    except KeyError:
        raise KeyError(f"native layer {layer_id} is gone (its module was garbage collected)") \
            from None


@torch.library.custom_op("spe::spe_conv2d", mutates_args=())
def spe_conv2d(x: torch.Tensor, residual: Optional[torch.Tensor], layer_id: int) -> torch.Tensor:
    return lookup(layer_id).run_kernel(x, residual)


@spe_conv2d.register_fake
def _(x, residual, layer_id):
    n, _, h, w = x.shape
    ho, wo = lookup(layer_id).output_size(h, w)
    return x.new_empty((n, lookup(layer_id).packed.out_channels, ho, wo))


@torch.library.custom_op("spe::spe_depthwise_conv2d", mutates_args=())
def spe_depthwise_conv2d(x: torch.Tensor, residual: Optional[torch.Tensor],
                         layer_id: int) -> torch.Tensor:
    return lookup(layer_id).run_kernel(x, residual)


@spe_depthwise_conv2d.register_fake
def _(x, residual, layer_id):
    n, c, h, w = x.shape
    ho, wo = lookup(layer_id).output_size(h, w)
    return x.new_empty((n, c, ho, wo))


def _run_dense(x: torch.Tensor, residual: Optional[torch.Tensor], layer_id: int) -> torch.Tensor:
    return lookup(layer_id).run_kernel(x, residual)


def _dense_shape(x, layer_id: int) -> tuple:
    mod = lookup(layer_id)   # an engine.runtime.dense.PackedDenseConv2d
    return (x.shape[0], mod.weight_shape[0], *mod.output_size(*x.shape[2:]))


# a conv kept dense on the packed dense kernels (engine/runtime/dense.py)
spe_dense_conv2d = torch.library.custom_op("spe::spe_dense_conv2d", _run_dense, mutates_args=())
spe_dense_conv2d.register_fake(lambda x, residual, layer_id: x.new_empty(_dense_shape(x, layer_id)))


@torch.library.custom_op("spe::spe_max_pool2d", mutates_args=())
def spe_max_pool2d(x: torch.Tensor, layer_id: int) -> torch.Tensor:
    return lookup(layer_id).run_kernel(x)


@spe_max_pool2d.register_fake
def _(x, layer_id):
    n, c, h, w = x.shape
    ho, wo = lookup(layer_id).output_size(h, w)
    return x.new_empty((n, c, ho, wo))


# ---- int8 (engine/runtime/qmodules.py): uint8 tensors in the kernels' NCHW4 layout

def _nchw4(n: int, channels: int, h: int, w: int) -> tuple:
    return (n, (channels + 3) // 4, h, w, 4)


@torch.library.custom_op("spe::spe_qconv2d", mutates_args=())
def spe_qconv2d(x: torch.Tensor, residual: Optional[torch.Tensor],
                layer_id: int) -> torch.Tensor:
    return lookup(layer_id).run_kernel(x, residual)


@spe_qconv2d.register_fake
def _(x, residual, layer_id):
    mod = lookup(layer_id)
    ho, wo = mod.output_size(x.shape[2], x.shape[3])
    return x.new_empty(_nchw4(x.shape[0], mod.layer.packed.out_channels, ho, wo))


@torch.library.custom_op("spe::spe_qlinear", mutates_args=())
def spe_qlinear(x: torch.Tensor, layer_id: int) -> torch.Tensor:
    return lookup(layer_id).run_kernel(x)


@spe_qlinear.register_fake
def _(x, layer_id):
    return x.new_empty((x.shape[0], lookup(layer_id).out_features), dtype=torch.float32)


@torch.library.custom_op("spe::spe_quantize", mutates_args=())
def spe_quantize(x: torch.Tensor, layer_id: int) -> torch.Tensor:
    return lookup(layer_id).run_kernel(x)


@spe_quantize.register_fake
def _(x, layer_id):
    n, c, h, w = x.shape
    return x.new_empty(_nchw4(n, c, h, w), dtype=torch.uint8)


@torch.library.custom_op("spe::spe_dequantize", mutates_args=())
def spe_dequantize(x: torch.Tensor, layer_id: int) -> torch.Tensor:
    return lookup(layer_id).run_kernel(x)


@spe_dequantize.register_fake
def _(x, layer_id):
    return x.new_empty((x.shape[0], lookup(layer_id).channels, x.shape[2], x.shape[3]),
                       dtype=torch.float32)


@torch.library.custom_op("spe::spe_max_pool2d_u8", mutates_args=())
def spe_max_pool2d_u8(x: torch.Tensor, layer_id: int) -> torch.Tensor:
    return lookup(layer_id).run_kernel(x)


@spe_max_pool2d_u8.register_fake
def _(x, layer_id):
    mod = lookup(layer_id)
    ho, wo = mod.output_size(x.shape[2], x.shape[3])
    return x.new_empty(_nchw4(x.shape[0], mod.channels, ho, wo))


@torch.library.custom_op("spe::spe_qdepthwise2d", mutates_args=())
def spe_qdepthwise2d(x: torch.Tensor, residual: Optional[torch.Tensor],
                     layer_id: int) -> torch.Tensor:
    return lookup(layer_id).run_kernel(x, residual)


@spe_qdepthwise2d.register_fake
def _(x, residual, layer_id):
    mod = lookup(layer_id)
    ho, wo = mod.output_size(x.shape[2], x.shape[3])
    return x.new_empty(_nchw4(x.shape[0], mod.layer.channels, ho, wo))


@torch.library.custom_op("spe::spe_tir_layer", mutates_args=())
def spe_tir_layer(x: torch.Tensor, residual: Optional[torch.Tensor],
                  layer_id: int) -> torch.Tensor:
    """A layer on a kernel generated for it (engine.codegen.host TirConv2d / TirLinear on its
    2-D input): the compiler generates that kernel for the artifact's target."""
    return lookup(layer_id).run_kernel(x, residual)


@spe_tir_layer.register_fake
def _(x, residual, layer_id):
    return x.new_empty(lookup(layer_id).out_shape(tuple(x.shape)))
