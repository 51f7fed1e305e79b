"""An int8 candidate of one layer shape as the profilers time it: the layer's torch module on
the int8 kernels (engine.runtime.qmodules: QConv2d for groups 1, QDepthwiseConv2d for
depthwise), called the way the lowered model calls it (its kernel directly, like the fp32
layers the profiler times next to it: the same per-call overhead on both sides), its masked
weight quantized per output channel, uint8 NCHW4 in and out (as between int8 layers of
engine.quant.lower_int8's model), the spec's fused activation and residual. The kernels' speed
does not depend on the quantization parameters, so fixed ones stand in for a calibration; the
domain changes around int8 layers are measured apart (engine.measure.domains). A linear layer
is timed as lower_int8 runs it (QLinear): float in and out, its rows quantized, run and
dequantized in one kernel call, its residual added in float after it."""
from __future__ import annotations

import numpy as np
import torch

from mapping import LayerSpec

from ..runtime.qconv import QuantConv, QuantDepthwise, to_nchw4
from ..runtime.qmodules import QConv2d, QDepthwiseConv2d, QLinear
from .specs import input_shape, output_shape, parse_epilogue

# the int8 SpMM's group height for an unpruned layer (dense+int8)
INT8_DENSE_ROWS = 4
# stand-in quantization parameters: (scale, zero point) of a post-ReLU-like activation
_IN, _OUT, _RES = (0.02, 0), (0.03, 0), (0.03, 0)


class Int8Timed:
    """A callable for engine.runtime.measure: runs the int8 layer's module on its own uint8
    input (the float arguments the other candidates share are ignored)."""

    def __init__(self, module, x: torch.Tensor, residual):
        self.module, self.x, self.residual = module, x, residual
        self.kernel_name = module.layer.kernel_name

    def __call__(self, *_args):
        with torch.no_grad():
            if isinstance(self.module, QLinear):     # float in and out; its add stays float
                y = self.module(self.x)
                return y if self.residual is None else y + self.residual
            return self.module(self.x, self.residual)


def _codes(shape: tuple, g: torch.Generator) -> torch.Tensor:
    return torch.from_numpy(to_nchw4(torch.randint(0, 256, shape, generator=g,
                                                   dtype=torch.uint8).numpy()))


def int8_timed(spec: LayerSpec, weight: torch.Tensor, bias: torch.Tensor, rows: int,
               isa: str = "auto", seed: int = 0) -> Int8Timed:
    """The int8 layer of `spec` with the (masked) float `weight`, ready to time."""
    act, residual = parse_epilogue(spec.epilogue)
    w = weight.detach().float()
    amax = w.abs().reshape(w.shape[0], -1).amax(dim=1).clamp_min(1e-8)
    scale = (amax / 127.0).numpy().astype(np.float32)
    wq = torch.round(w / torch.from_numpy(scale).reshape(-1, *([1] * (w.dim() - 1))))
    wq = wq.clamp(-127, 127).to(torch.int8).numpy()
    b = bias.detach().float().numpy()
    g = torch.Generator().manual_seed(seed)
    if spec.op == "linear":      # float (rows, C) in and out, as lower_int8 runs it
        layer = QuantConv(wq, scale, b, rows=rows, input=_IN, output=_OUT, act=act, isa=isa,
                          name=spec.name, input_layout="nchw4", output_layout="nchw4")
        return Int8Timed(QLinear(layer), torch.randn(input_shape(spec), generator=g),
                         torch.randn(output_shape(spec), generator=g) if residual else None)
    x = _codes(input_shape(spec), g)
    res = _codes(output_shape(spec), g) if residual else None
    common = dict(input=_IN, output=_OUT, residual=_RES if residual else None, act=act,
                  stride=spec.stride, padding=spec.padding, dilation=spec.dilation, isa=isa,
                  name=spec.name)
    if spec.is_depthwise:
        module = QDepthwiseConv2d(QuantDepthwise(wq, scale, b, **common))
    else:
        module = QConv2d(QuantConv(wq, scale, b, rows=rows, input_layout="nchw4",
                                   output_layout="nchw4", **common),
                         {k: tuple(getattr(spec, k)) for k in ("stride", "padding", "dilation")})
    return Int8Timed(module, x, res)
