"""A calibrated conv / linear layer on the int8 kernels (engine.runtime.qconv).

    cal = engine.quant.calibrate(model, batches)
    layer = engine.quant.qconv_of(model.layer1[0].conv1, cal.layer("layer1.0.conv1"), rows=4)
    y_u8 = layer.run(engine.quant.quantize(x, cal.layer(...).input).to(torch.uint8).numpy())

The layer computes what simulate() simulates for it (its BN-folded weight quantized per output
channel, the input and the fused chain's output on their u8 grids), with exact integer sums
where the simulation sums in fp32: outputs agree to the last unit except where the fp32
rounding of the simulation lands on the other side of a rounding boundary.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..graph.layers import is_transposed_linear
from ..runtime.qconv import QuantConv, QuantDepthwise
from .calibrate import LayerQuant
from .fake import quantize
from .qparams import QParams


def int8_weight(lq: LayerQuant) -> tuple:
    """(int8 weight as numpy, its per-output-channel scales as float32 numpy) of a layer."""
    q = quantize(lq.weight.detach().float(), lq.weight_qparams)
    return q.to(torch.int8).numpy(), lq.weight_qparams.scale.detach().float().numpy()


def _per_tensor(qp: QParams, what: str, name: str) -> tuple:
    if qp.per_channel:
        raise ConfigError(f"{name}: the {what} must be quantized per tensor for the int8 kernels")
    return float(qp.scale), int(qp.zero_point)


def qconv_of(module: nn.Module, lq: LayerQuant, *, rows: int = 4, isa: str = "auto",
             residual: Optional[QParams] = None, input_layout: str = "nchw",
             output_layout: str = "nchw") -> QuantConv:
    """The int8 kernel layer of a calibrated nn.Conv2d (groups 1) or nn.Linear; residual: the
    QParams of a u8 tensor the layer adds before its activation; layouts "nchw" or "nchw4"."""
    name = lq.name
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise ConfigError(f"{name}: grouped / depthwise convs have no int8 kernel yet "
                              f"(groups={module.groups})")
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ConfigError(f"{name}: int8 convs take explicit zero padding, not "
                              f"{module.padding_mode!r} / {module.padding!r}")
        geom = dict(stride=module.stride, padding=module.padding, dilation=module.dilation)
    elif isinstance(module, nn.Linear) or is_transposed_linear(module):   # lq.weight: (O, I)
        geom = {}
    else:
        raise ConfigError(f"{name}: no int8 kernel for {type(module).__name__}")
    wq, ws = int8_weight(lq)
    bias = None if lq.bias is None else lq.bias.detach().float().numpy()
    res = None if residual is None else _per_tensor(residual, "residual", name)
    return QuantConv(wq, ws, bias, input=_per_tensor(lq.input, "input", name),
                     output=_per_tensor(lq.output, "output", name), residual=res,
                     act=lq.act or "none", rows=rows, isa=isa, name=name,
                     input_layout=input_layout, output_layout=output_layout, **geom)


def qdepthwise_of(module: nn.Conv2d, lq: LayerQuant, *, isa: str = "auto",
                  residual: Optional[QParams] = None) -> QuantDepthwise:
    """The int8 kernel layer of a calibrated depthwise nn.Conv2d (groups == channels), NCHW4."""
    name = lq.name
    if not (isinstance(module, nn.Conv2d) and module.groups == module.in_channels ==
            module.out_channels) or module.padding_mode != "zeros" or \
            isinstance(module.padding, str):
        raise ConfigError(f"{name}: not a zero-padded depthwise conv")
    wq, ws = int8_weight(lq)
    bias = None if lq.bias is None else lq.bias.detach().float().numpy()
    res = None if residual is None else _per_tensor(residual, "residual", name)
    return QuantDepthwise(wq, ws, bias, input=_per_tensor(lq.input, "input", name),
                          output=_per_tensor(lq.output, "output", name), residual=res,
                          act=lq.act or "none", stride=module.stride, padding=module.padding,
                          dilation=module.dilation, isa=isa, name=name)
