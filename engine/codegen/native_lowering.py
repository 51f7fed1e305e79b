"""Compile a lowered model (engine.runtime.lower) with TVM, its native layers as calls into the
engine's C++ kernels linked into the module.

torch.export captures the lowered GraphModule, where every native layer is one
`spe.spe_conv2d` / `spe.spe_depthwise_conv2d` / `spe.spe_max_pool2d` custom-op node
(engine/runtime/ops.py); the Relax importer
maps those nodes, through `custom_convert_map`, to `call_dps_packed("spe.v1.*")` with the layer's
packed weight as constants; everything else is imported as usual. export_library links the
bridge object (native_bridge.py) so the module carries the kernels.
"""
from __future__ import annotations

import platform
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..runtime import ops

_ACT = {"none": 0, "relu": 1, "relu6": 2}


def _relax():
    from tvm import relax
    return relax


def _conv(node, importer):
    relax = _relax()
    x = importer.env[node.args[0]]
    res_node, layer_id = node.args[1], node.args[2]
    mod = ops.lookup(layer_id)
    p = mod.packed
    has_bias = mod.bias_np is not None
    meta = np.array([p.out_channels, p.in_channels, *p.kernel, *mod.stride, *mod.padding,
                     *mod.dilation, _ACT[mod.act], int(has_bias), int(res_node is not None)],
                    np.int32)
    consts = [meta, p.group_row0, p.group_rows, p.group_ptr.astype(np.int32)
              if p.group_ptr[-1] < 2 ** 31 else p.group_ptr, p.entry_col, p.values,
              mod.bias_np if has_bias else np.zeros(1, np.float32)]
    res = importer.env[res_node] if res_node is not None else \
        relax.const(np.zeros(1, np.float32))
    args = relax.Tuple([x] + [relax.const(c) for c in consts] + [res])
    shape = tuple(int(d) for d in node.meta["val"].shape)
    return importer.block_builder.emit(relax.call_dps_packed(
        "spe.v1.sparse_conv2d", args, out_ty=relax.type.TensorType(shape, "float32")))


def _depthwise(node, importer):
    relax = _relax()
    x = importer.env[node.args[0]]
    res_node, layer_id = node.args[1], node.args[2]
    mod = ops.lookup(layer_id)
    c, _, kh, kw = mod.weight_shape
    has_bias = mod.bias_np is not None
    meta = depthwise_meta(c, (kh, kw), mod.stride, mod.padding, mod.dilation, mod.act,
                          has_bias, res_node is not None)
    consts = [meta, mod.weight_np.reshape(c, kh, kw),
              mod.bias_np if has_bias else np.zeros(1, np.float32)]
    res = importer.env[res_node] if res_node is not None else \
        relax.const(np.zeros(1, np.float32))
    args = relax.Tuple([x] + [relax.const(t) for t in consts] + [res])
    shape = tuple(int(d) for d in node.meta["val"].shape)
    return importer.block_builder.emit(relax.call_dps_packed(
        "spe.v1.depthwise_conv2d", args, out_ty=relax.type.TensorType(shape, "float32")))


def depthwise_meta(channels: int, kernel, stride, padding, dilation, act: str, has_bias: bool,
                   has_residual: bool) -> np.ndarray:
    """meta int32[13] of spe.v1.depthwise_conv2d: the layout of spe.v1.sparse_conv2d's (O = C)."""
    return np.array([channels, channels, *kernel, *stride, *padding, *dilation, _ACT[act],
                     int(has_bias), int(has_residual)], np.int32)


def _pool(node, importer):
    relax = _relax()
    x = importer.env[node.args[0]]
    mod = ops.lookup(node.args[1])
    meta = np.array([*mod.kernel, *mod.stride, *mod.padding], np.int32)
    shape = tuple(int(d) for d in node.meta["val"].shape)
    return importer.block_builder.emit(relax.call_dps_packed(
        "spe.v1.max_pool2d", relax.Tuple([x, relax.const(meta)]),
        out_ty=relax.type.TensorType(shape, "float32")))


CONVERT_MAP = {"spe_conv2d.default": _conv, "spe_depthwise_conv2d.default": _depthwise,
               "spe_max_pool2d.default": _pool}


def import_lowered(lowered: torch.nn.Module, example_inputs: tuple):
    """Relax IRModule of a lowered model, native layers as call_dps_packed into the bridge."""
    from tvm.relax.frontend.torch import from_exported_program
    with torch.no_grad():
        ep = torch.export.export(lowered, tuple(example_inputs), strict=False)
    return from_exported_program(ep, custom_convert_map=CONVERT_MAP)


def tvm_target(target):
    """tvm.target.Target for an engine Target (host: this CPU's features)."""
    import tvm
    d = dict(target.llvm)
    if d.get("mcpu") == "native":
        d["mcpu"] = tvm.target.codegen.llvm_get_system_cpu() \
            if hasattr(tvm.target, "codegen") else "native"
    return tvm.target.Target(d)


def export_library(executable, path, target) -> Path:
    """Write model.so for `target`, linking the native bridge (cross-compiling when needed)."""
    from .native_bridge import bridge_object
    path = Path(path)
    addons = [str(bridge_object(target.arch))]
    if target.cross_compiler is None and target.arch == platform.machine():
        executable.export_library(str(path), addons=addons)
        return path
    cc_name = target.cross_compiler
    if cc_name is None or shutil.which(cc_name) is None:
        raise ConfigError(f"target {target.name!r} needs the cross compiler {cc_name!r}: "
                          f"install {target.cross_package}")
    from tvm.support import cc
    triple = target.llvm.get("mtriple", "")
    # the triple must be explicit, or the packed-imports object is built for the host
    fcompile = cc.cross_compiler(cc_name, get_target_triple=lambda: triple)
    executable.export_library(str(path), fcompile=fcompile, addons=addons)
    return path


def compile_optimized(pruned_model: torch.nn.Module, layers: list, plan, example_inputs: tuple,
                      target):
    """Relax executable of a pruned model for `target`: every conv / linear runs on the native
    kernels (pruned layers sparse with their plan's block rows, the rest dense; depthwise convs
    on the direct depthwise kernel), so no layer is left to TVM's unscheduled default loops;
    glue ops go through TVM's default pipeline.

    Returns (executable, lowered torch module used for the import)."""
    import tvm

    from ..runtime.lower import lower
    from ..runtime.packing import group_rows_for
    native = {}
    for info in layers:
        choice = plan[info.name] if info.name in plan else None
        if info.groups != 1:
            native[info.name] = 1
        elif choice is not None and choice.pruned and choice.block:
            native[info.name] = group_rows_for(int(choice.block[0]))
        elif choice is not None and choice.pruned:
            native[info.name] = 1
        else:
            native[info.name] = 8
    lowered = lower(pruned_model, native).module
    ex = tvm.compile(import_lowered(lowered, example_inputs), target=tvm_target(target))
    return ex, lowered


class NativeCompiled:
    """A compiled model whose export links the native bridge (what engine.artifact saves)."""

    def __init__(self, executable, target, inputs: list, outputs: list):
        self.executable, self.target = executable, target
        self.inputs, self.outputs = inputs, outputs

    def export_library(self, path) -> None:
        export_library(self.executable, path, self.target)
