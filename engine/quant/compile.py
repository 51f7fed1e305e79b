"""An int8-lowered model (lower_int8) compiled into an artifact an app embeds.

    qm = engine.quant.lower_int8(model, cal)
    cm = engine.quant.compile_int8(qm, (x,), target="arm64")     # engine.codegen.CompiledModel
    engine.artifact.save_artifact("art", cm, extra={"int8": engine.quant.int8_manifest(qm)})

Every int8 layer, quantize, dequantize and int8 max pool is a call into the kernels linked into
model.so (spe.v1.qconv2d, ...: the same kernels, bit for bit, as the host's lowered model); the
fp32 rest (the classifier, pools, layers without an int8 kernel) is compiled by TVM.
int8_manifest: what the manifest records of the quantization (per layer: the input, output and
residual (scale, zero point), the activation, the weight scales' range, the kernel).
"""
from __future__ import annotations

from typing import Union

from torch import nn

from ..codegen.compile import LayerKernel
from ..codegen.host import TirConv2d, TirLinear
from ..codegen.lowered import compile_lowered
from ..runtime.qmodules import (
    Dequantize,
    QConv2d,
    QDepthwiseConv2d,
    QLinear,
    QMaxPool2d,
    Quantize,
)


def _layers(qm: nn.Module) -> list:
    out = []
    for name, m in qm.named_modules():
        if isinstance(m, (QConv2d, QLinear)):
            p = m.layer.packed
            op, func = ("linear", "spe.v1.qlinear") if isinstance(m, QLinear) else \
                ("conv2d", "spe.v1.qconv2d")
            dense = max(1, p.out_channels * p.in_channels * p.kernel[0] * p.kernel[1])
            out.append(LayerKernel(m.layer.name, op, "native", m.layer.kernel_name, func,
                                   ("int8",), {"density": m.layer.nnz / dense}))
        elif isinstance(m, QDepthwiseConv2d):
            out.append(LayerKernel(m.layer.name, "conv2d", "native", m.layer.kernel_name,
                                   "spe.v1.qdepthwise2d", ("int8",), {"density": 1.0}))
        elif isinstance(m, (TirConv2d, TirLinear)):
            out.append(LayerKernel(m.layer, "conv2d" if isinstance(m, TirConv2d) else "linear",
                                   "sparse", m.kernel_name, "", (), {"density": m.density}))
        elif isinstance(m, (Quantize, Dequantize, QMaxPool2d)):
            out.append(LayerKernel(name, type(m).__name__.lower(), "native",
                                            f"spe.v1.{type(m).__name__.lower()}", "", (), {}))
    return out


def compile_int8(qm: nn.Module, example_inputs: tuple, target: Union[str, object] = "host"):
    """qm (lower_int8's GraphModule) compiled for `target` (see the module doc)."""
    return compile_lowered(qm, example_inputs, target, _layers(qm))


def int8_manifest(qm: nn.Module) -> dict:
    """The quantization parameters an artifact's manifest records (JSON-serialisable)."""
    layers = {}
    for m in qm.modules():
        if isinstance(m, QDepthwiseConv2d):
            q = m.layer
            layers[q.name] = {"input": list(q.input), "output": list(q.output), "act": q.act,
                              "weight_scale_min": float(q.weight_scale.min()),
                              "weight_scale_max": float(q.weight_scale.max()),
                              "kernel": q.kernel_name, "weights": "int8 per channel (depthwise)",
                              "activations": "uint8 per tensor, NCHW4"}
        if isinstance(m, (QConv2d, QLinear)):
            q = m.layer
            ws = q.weight_scale
            float_io = isinstance(m, QLinear)
            layers[q.name] = {"input": list(q.input), "output": list(q.output),
                              "residual": list(q.residual) if q.residual else None,
                              "act": q.act, "weight_scale_min": float(ws.min()),
                              "weight_scale_max": float(ws.max()), "kernel": q.kernel_name,
                              "weights": "int8 symmetric per output channel",
                              "activations": "uint8 per tensor, NCHW4" + (
                                  " (float in and out: a linear layer)" if float_io else "")}
    return {"layers": layers, "fp32_layers": {k: v for k, v in
                                              getattr(qm, "int8_report", {}).items()
                                              if v.startswith("fp32")}}
