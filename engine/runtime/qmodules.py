"""torch modules over the int8 kernels: what an int8-lowered model (engine.quant.lower_int8) is
made of. Between them flow uint8 tensors in the kernels' NCHW4 layout, (N, ceil(C / 4), H, W, 4),
4 channels a 32-bit word: no relayout between int8 layers; Quantize and Dequantize are the only
places a tensor changes domain. Under torch.export each forward is one torch custom op
(engine.runtime.ops), so engine.codegen compiles the model into an artifact whose int8 layers
call the same kernels (spe.v1.qconv2d, ...); in eager mode the kernels are called directly, as
the fp32 native modules call theirs (the custom op's dispatch cost 15-45 us a call, which the
in-place measurement charged to int8 layers alone: a 192x32 1x1 at 28x28, 80%, measured 146 us
against 30 us as the artifact runs it).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from . import native, ops
from .qconv import QuantConv, QuantDepthwise


def _out_size(h, w, kernel, stride, padding, dilation) -> tuple:
    """torch's conv / pool output size (floor), for the custom ops' shape functions."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip((h, w), kernel, stride, padding, dilation))


def _u8(t: torch.Tensor, what: str) -> np.ndarray:
    if t.dtype != torch.uint8:
        raise ConfigError(f"{what}: expects a uint8 tensor (NCHW4), got {t.dtype}")
    return t.detach().contiguous().numpy()


class Quantize(nn.Module):
    """float32 (N, C, H, W) -> uint8 NCHW4 with (scale, zero_point)."""

    def __init__(self, scale: float, zero_point: int, name: str = "quantize"):
        super().__init__()
        self.scale, self.zero_point, self.name = float(scale), int(zero_point), name
        self.layer_id = ops.register(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting():  # one graph node for the compiler path
            return ops.spe_quantize(x.to(torch.float32), self.layer_id)
        return self.run_kernel(x)

    def run_kernel(self, x: torch.Tensor) -> torch.Tensor:
        a = x.detach().to(torch.float32).contiguous().numpy()
        try:
            return torch.from_numpy(native.lib().quantize(a, self.scale, self.zero_point, "nchw4"))
        except ValueError as e:
            raise ConfigError(f"{self.name}: {e}") from e

    def extra_repr(self) -> str:
        return f"scale={self.scale:.6g}, zero_point={self.zero_point}"


class Dequantize(nn.Module):
    """uint8 NCHW4 -> float32 (N, channels, H, W)."""

    def __init__(self, channels: int, scale: float, zero_point: int, name: str = "dequantize"):
        super().__init__()
        self.channels, self.scale, self.zero_point, self.name = int(channels), float(scale), \
            int(zero_point), name
        self.layer_id = ops.register(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting():
            return ops.spe_dequantize(x, self.layer_id)
        return self.run_kernel(x)

    def run_kernel(self, x: torch.Tensor) -> torch.Tensor:
        y = native.lib().dequantize(_u8(x, self.name), self.channels, self.scale,
                                    self.zero_point, "nchw4")
        return torch.from_numpy(y)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, scale={self.scale:.6g}, zero_point={self.zero_point}"


class QConv2d(nn.Module):
    """An int8 conv / linear layer (QuantConv, NCHW4 in and out), residual optional."""

    def __init__(self, layer: QuantConv, geometry: dict):
        super().__init__()
        self.layer = layer
        self.geometry = dict(geometry)   # stride, padding, dilation (pairs)
        self.layer_id = ops.register(self)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if torch.compiler.is_exporting():
            return ops.spe_qconv2d(x, residual, self.layer_id)
        return self.run_kernel(x, residual)

    def run_kernel(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        r = None if residual is None else _u8(residual, self.layer.name)
        return torch.from_numpy(self.layer.run(_u8(x, self.layer.name), r))

    def output_size(self, h: int, w: int) -> tuple:
        return _out_size(h, w, self.layer.packed.kernel, self.geometry["stride"],
                         self.geometry["padding"], self.geometry["dilation"])

    def extra_repr(self) -> str:
        p = self.layer.packed
        return (f"{p.in_channels}, {p.out_channels}, kernel={p.kernel}, "
                f"kernel_name={self.layer.kernel_name}, nnz={self.layer.nnz}")


class QLinear(nn.Module):
    """An int8 linear layer, float in and float out: x (..., C) -> y (..., O). Its rows are the
    pixels of the 1x1 int8 kernel: one kernel call (spe_qconv_run_linear; spe.v1.qlinear in
    artifacts) quantizes the rows on the layer's input grid into the (1, C, 1, rows) image the
    kernel reads, runs it (the activation fused, the output requantized) and dequantizes the
    output back into rows. Float at both ends because what reads and feeds a linear layer (GELU,
    softmax, layer norm, a flatten after average pooling) runs fp32."""

    geometry = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1)}   # spe.v1.qlinear's

    def __init__(self, layer: QuantConv):
        super().__init__()
        p = layer.packed
        if p.kernel != (1, 1) or layer.input_layout != "nchw4" or layer.output_layout != "nchw4" \
                or layer.residual is not None:
            raise ConfigError(f"{layer.name}: an int8 linear layer is 1x1, nchw4 in and out, "
                              f"without a residual")
        self.layer = layer
        self.in_features, self.out_features = p.in_channels, p.out_channels
        self.layer_id = ops.register(self)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) float -> the (1, C, 1, rows) image the kernel computes on (its check)."""
        x2 = x.reshape(-1, self.in_features)
        return x2.t().contiguous().reshape(1, self.in_features, 1, x2.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ConfigError(f"{self.layer.name}: input must be (..., {self.in_features}), got "
                              f"shape {tuple(x.shape)}")
        lead = tuple(x.shape[:-1])
        x2 = x.reshape(-1, self.in_features).to(torch.float32)
        if torch.compiler.is_exporting():
            y = ops.spe_qlinear(x2.contiguous(), self.layer_id)
        else:
            y = self.run_kernel(x2)
        return y.reshape(*lead, self.out_features)

    def run_kernel(self, x2: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.layer.run_linear(x2.detach().contiguous().numpy()))

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, kernel_name={self.layer.kernel_name}, "
                f"nnz={self.layer.nnz}")


class QDepthwiseConv2d(nn.Module):
    """An int8 depthwise conv (QuantDepthwise, NCHW4 in and out), residual optional."""

    def __init__(self, layer: QuantDepthwise):
        super().__init__()
        self.layer = layer
        self.layer_id = ops.register(self)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if torch.compiler.is_exporting():
            return ops.spe_qdepthwise2d(x, residual, self.layer_id)
        return self.run_kernel(x, residual)

    def run_kernel(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        r = None if residual is None else _u8(residual, self.layer.name)
        return torch.from_numpy(self.layer.run(_u8(x, self.layer.name), r))

    def output_size(self, h: int, w: int) -> tuple:
        q = self.layer
        return _out_size(h, w, q.kernel, q.stride, q.padding, q.dilation)

    def extra_repr(self) -> str:
        return f"{self.layer.channels}, kernel={self.layer.kernel}, stride={self.layer.stride}"


class QMaxPool2d(nn.Module):
    """Max pooling of uint8 NCHW4 codes (torch's max_pool2d rules; the codes' qparams kept)."""

    def __init__(self, channels: int, kernel, stride, padding, name: str = "maxpool"):
        super().__init__()
        pair = lambda v: (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))
        self.channels, self.kernel, self.stride, self.padding = int(channels), pair(kernel), \
            pair(stride), pair(padding)
        self.name = name
        self.layer_id = ops.register(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting():
            return ops.spe_max_pool2d_u8(x, self.layer_id)
        return self.run_kernel(x)

    def output_size(self, h: int, w: int) -> tuple:
        return _out_size(h, w, self.kernel, self.stride, self.padding, (1, 1))

    def run_kernel(self, x: torch.Tensor) -> torch.Tensor:
        try:
            y = native.lib().max_pool2d_u8(_u8(x, self.name), self.channels, self.kernel,
                                           self.stride, self.padding, "nchw4")
        except ValueError as e:
            raise ConfigError(f"{self.name}: {e}") from e
        return torch.from_numpy(y)
