"""Compile a lowered model (engine.lowering) with TVM, its native layers as calls into the
engine's C++ kernels linked into the module.

torch.export captures the lowered GraphModule, where every native layer is one
`spe.spe_conv2d` / `spe.spe_depthwise_conv2d` / `spe.spe_dense_conv2d` / `spe.spe_max_pool2d`
custom-op node
(engine/runtime/ops.py); the Relax importer
maps those nodes, through `custom_convert_map`, to `call_dps_packed("spe.v1.*")` with the layer's
packed weight as constants; everything else is imported as usual. export_library links the
bridge object (native_bridge.py) so the module carries the kernels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..runtime import ops
from ..targets.toolchain import cross_compiler
from ._tvm import import_exported_program, relax, tvm
from .import_errors import compile_error
from .targets import as_target, tvm_target, vector_isa

# spe_activation (kernels/include/spe/spe.h) by name
ACT_CODES = {"none": 0, "relu": 1, "relu6": 2, "hardswish": 3, "silu": 4, "gelu": 5,
             "gelu_tanh": 6}


def _conv(node, importer):
    mod, has_residual = ops.lookup(node.args[2]), node.args[1] is not None
    p = mod.packed
    has_bias = mod.bias_np is not None
    meta = np.array([p.out_channels, p.in_channels, *p.kernel, *mod.stride, *mod.padding,
                     *mod.dilation, ACT_CODES[mod.act], int(has_bias), int(has_residual)],
                    np.int32)
    consts = [meta, p.group_row0, p.group_rows, p.group_ptr.astype(np.int32)
              if p.group_ptr[-1] < 2 ** 31 else p.group_ptr, p.entry_col, p.values,
              mod.bias_np if has_bias else np.zeros(1, np.float32)]
    return _emit_layer(node, importer, "spe.v1.sparse_conv2d", consts)


def _depthwise(node, importer):
    mod, has_residual = ops.lookup(node.args[2]), node.args[1] is not None
    c, _, kh, kw = mod.weight_shape
    has_bias = mod.bias_np is not None
    meta = depthwise_meta(c, (kh, kw), mod.stride, mod.padding, mod.dilation, mod.act,
                          has_bias, has_residual)
    consts = [meta, mod.weight_np.reshape(c, kh, kw),
              mod.bias_np if has_bias else np.zeros(1, np.float32)]
    return _emit_layer(node, importer, "spe.v1.depthwise_conv2d", consts)


def _emit_layer(node, importer, func: str, consts: list):
    """call_dps_packed(func, (x, *consts, residual)) for a conv-like node (x, residual, id):
    a layer without a residual gets a 1-element zero tensor in its place."""
    x, res_node = importer.env[node.args[0]], node.args[1]
    res = importer.env[res_node] if res_node is not None else \
        relax.const(np.zeros(1, np.float32))
    return _emit_call(node, importer, func,
                      relax.Tuple([x] + [relax.const(c) for c in consts] + [res]))


def _emit_call(node, importer, func: str, args):
    val = node.meta["val"]
    shape = tuple(int(d) for d in val.shape)
    dtype = str(val.dtype).replace("torch.", "")
    return importer.block_builder.emit(relax.call_dps_packed(
        func, args, out_ty=relax.type.TensorType(shape, dtype)))


def depthwise_meta(channels: int, kernel, stride, padding, dilation, act: str, has_bias: bool,
                   has_residual: bool) -> np.ndarray:
    """meta int32[13] of spe.v1.depthwise_conv2d: the layout of spe.v1.sparse_conv2d's (O = C)."""
    return np.array([channels, channels, *kernel, *stride, *padding, *dilation, ACT_CODES[act],
                     int(has_bias), int(has_residual)], np.int32)


def _dense(node, importer):
    mod, has_residual = ops.lookup(node.args[2]), node.args[1] is not None
    o, c, kh, kw = mod.weight_shape
    has_bias = mod.bias_np is not None
    meta = dense_meta(o, c, (kh, kw), mod.stride, mod.padding, mod.dilation, mod.act, has_bias,
                      has_residual, mod.algo)
    consts = [meta, mod.weight_np, mod.bias_np if has_bias else np.zeros(1, np.float32)]
    return _emit_layer(node, importer, "spe.v1.dense_conv2d", consts)


def dense_meta(out_channels: int, in_channels: int, kernel, stride, padding, dilation, act: str,
               has_bias: bool, has_residual: bool, algo: str) -> np.ndarray:
    """meta int32[14] of spe.v1.dense_conv2d: sparse_conv2d's 13, then 0 gemm / 1 winograd."""
    return np.array([out_channels, in_channels, *kernel, *stride, *padding, *dilation, ACT_CODES[act],
                     int(has_bias), int(has_residual), int(algo == "winograd")], np.int32)


def _pool(node, importer):
    x = importer.env[node.args[0]]
    mod = ops.lookup(node.args[1])
    meta = np.array([*mod.kernel, *mod.stride, *mod.padding], np.int32)
    return _emit_call(node, importer, "spe.v1.max_pool2d", relax.Tuple([x, relax.const(meta)]))


_LAYOUTS = {"nchw": 0, "nchw4": 1}   # SPE_QLAYOUT_*


def qconv_args(mod, has_residual: bool) -> list:
    """spe.v1.qconv2d's constant arguments of a QConv2d module: meta int32[18] (sparse_conv2d's
    13, layouts, zero points), the packed int8 arrays, weight scales, bias (or a placeholder),
    qscale [input, output, residual]."""
    q, p, g = mod.layer, mod.layer.packed, mod.geometry
    res = q.residual or (1.0, 0)
    meta = np.array([p.out_channels, p.in_channels, *p.kernel, *g["stride"], *g["padding"],
                     *g["dilation"], ACT_CODES[q.act], int(q.bias is not None),
                     int(has_residual), _LAYOUTS[q.input_layout],
                     _LAYOUTS[q.output_layout], q.input[1], q.output[1], res[1]], np.int32)
    return [meta, p.group_row0, p.group_rows, p.group_ptr.astype(np.int32)
            if p.group_ptr[-1] < 2 ** 31 else p.group_ptr, p.entry_quad, p.values,
            q.weight_scale, q.bias if q.bias is not None else np.zeros(1, np.float32),
            np.array([q.input[0], q.output[0], res[0]], np.float32)]


def qdepthwise_args(mod, has_residual: bool) -> list:
    """spe.v1.qdepthwise2d's constant arguments of a QDepthwiseConv2d module: meta int32[15],
    the int8 (C, kh, kw) weight, its scales, bias (or a placeholder), qscale [input, output,
    residual]."""
    q = mod.layer
    res = q.residual or (1.0, 0)
    meta = np.array([q.channels, *q.kernel, *q.stride, *q.padding, *q.dilation, ACT_CODES[q.act],
                     int(q.bias is not None), int(has_residual), q.input[1], q.output[1],
                     res[1]], np.int32)
    return [meta, q.weight, q.weight_scale,
            q.bias if q.bias is not None else np.zeros(1, np.float32),
            np.array([q.input[0], q.output[0], res[0]], np.float32)]


def quantize_args(mod) -> list:
    """spe.v1.quantize's constant arguments of a Quantize module (NCHW4 out)."""
    return [np.array([mod.zero_point, 1], np.int32), np.array([mod.scale], np.float32)]


def dequantize_args(mod) -> list:
    """spe.v1.dequantize's constant arguments of a Dequantize module (NCHW4 in)."""
    return [np.array([mod.channels, mod.zero_point, 1], np.int32),
            np.array([mod.scale], np.float32)]


def _int8_layer(func: str, args_of):
    def convert(node, importer):
        mod, res_node = ops.lookup(node.args[2]), node.args[1]
        consts = args_of(mod, res_node is not None)
        x = importer.env[node.args[0]]
        r = importer.env[res_node] if res_node is not None else \
            relax.const(np.zeros(1, np.uint8))
        return _emit_call(node, importer, func,
                          relax.Tuple([x] + [relax.const(c) for c in consts] + [r]))
    return convert


def _conversion(func: str, args_of):
    def convert(node, importer):
        consts = args_of(ops.lookup(node.args[1]))
        return _emit_call(node, importer, func, relax.Tuple(
            [importer.env[node.args[0]]] + [relax.const(c) for c in consts]))
    return convert


def _qlinear(node, importer):
    """spe_qlinear nodes -> spe.v1.qlinear (float rows in and out), qconv2d's constants."""
    consts = qconv_args(ops.lookup(node.args[1]), False)
    return _emit_call(node, importer, "spe.v1.qlinear", relax.Tuple(
        [importer.env[node.args[0]]] + [relax.const(c) for c in consts]))


def _pool_u8(node, importer):
    mod = ops.lookup(node.args[1])
    meta = np.array([*mod.kernel, *mod.stride, *mod.padding, mod.channels, 1], np.int32)
    return _emit_call(node, importer, "spe.v1.max_pool2d_u8",
                      relax.Tuple([importer.env[node.args[0]], relax.const(meta)]))


CONVERT_MAP = {"spe_conv2d.default": _conv, "spe_depthwise_conv2d.default": _depthwise,
               "spe_max_pool2d.default": _pool, "spe_dense_conv2d.default": _dense,
               "spe_qconv2d.default": _int8_layer("spe.v1.qconv2d", qconv_args),
               "spe_qdepthwise2d.default": _int8_layer("spe.v1.qdepthwise2d", qdepthwise_args),
               "spe_qlinear.default": _qlinear,
               "spe_quantize.default": _conversion("spe.v1.quantize", quantize_args),
               "spe_dequantize.default": _conversion("spe.v1.dequantize", dequantize_args),
               "spe_max_pool2d_u8.default": _pool_u8}


def _tir_layer(isa):
    """spe_tir_layer nodes -> call_tir to the layer's kernel generated for `isa` (the target's;
    each call site its own PrimFunc: kernels are specialised to the input shape)."""
    def convert(node, importer):
        mod, res_node = ops.lookup(node.args[2]), node.args[1]
        shape = tuple(int(d) for d in node.args[0].meta["val"].shape)
        k = mod.kernel(shape, res_node is not None, isa)
        bb = importer.block_builder
        name = f"{k.prim_func().attrs['global_symbol']}_{len(bb.get().functions)}"
        gvar = bb.add_func(k.prim_func().with_attr("global_symbol", name), name)
        args = [importer.env[node.args[0]]] + [relax.const(t) for t in k.tables]
        if res_node is not None:
            args.append(importer.env[res_node])
        return bb.emit(relax.call_tir(gvar, relax.Tuple(args), relax.TensorType(
            relax.ShapeExpr([int(d) for d in k.out_shape]), "float32")))
    return convert


def import_lowered(lowered: torch.nn.Module, example_inputs: tuple, isa=None):
    """Relax IRModule of a lowered model, native layers as call_dps_packed into the bridge,
    layers on generated kernels as call_tir to theirs (generated for `isa`, a
    tir_text.VectorISA: the target's; the host's by default)."""
    from ..graph.export_inputs import TensorInputs, has_settings
    from ..graph.inputs import ModelInputs
    isa = isa or vector_isa(tvm_target(as_target("host")))
    # settings among the inputs (None, use_cache=False) bound as in compile._import
    root = TensorInputs(lowered, example_inputs) if has_settings(example_inputs) else lowered
    with torch.no_grad():
        ep = torch.export.export(root, tuple(ModelInputs(example_inputs).tensors), strict=False)
    # as compile._import: the export fixes applied, a failing op named
    mod, failure = import_exported_program(ep, False, {**CONVERT_MAP,
                                                       "spe_tir_layer.default": _tir_layer(isa)})
    if failure is not None:
        raise compile_error(*failure) from failure[0]
    return mod


def export_library(executable, path, target) -> Path:
    """Write model.so for `target`, linking the native bridge (cross-compiling when needed)."""
    from .native_bridge import bridge_object
    path = Path(path)
    addons = [str(bridge_object(target.arch))]
    cc_name = cross_compiler(target)
    if cc_name is None:
        executable.export_library(str(path), addons=addons)
        return path
    triple = target.llvm.get("mtriple", "")
    # the triple must be explicit, or the packed-imports object is built for the host
    fcompile = tvm.support.cc.cross_compiler(cc_name, get_target_triple=lambda: triple)
    executable.export_library(str(path), fcompile=fcompile, addons=addons)
    return path
