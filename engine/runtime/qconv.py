"""int8 conv / linear layers on the C++ kernels (spe.h's spe_qconv, engine._kernels.QConv).

    layer = QuantConv(wq, weight_scale, bias, input=(sx, zx), output=(sy, zy), stride=2,
                      padding=1, act="relu", rows=4)
    y_u8 = layer.run(x_u8)              # (N, C, H, W) uint8 -> (N, O, Ho, Wo) uint8

The weight arrives quantized: int8 (O, C, kh, kw) (a linear layer (O, C)), symmetric with one
scale per output channel; zeros are pruned weights. pack_quads groups rows like packing.pack and
keeps, per group, every column quad (4 consecutive input channels at one tap) non-zero in any of
its rows: exact for any mask, compact for blocks of (rows x 4 channels), the shape the int8
kernels' dot products read (4 channels per instruction lane).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import ConfigError
from . import native
from .packing import group_rows_for

ACTS = ("none", "relu", "relu6")


@dataclass
class PackedQWeight:
    """Row groups of column quads, arrays ready for engine._kernels.QConv."""

    out_channels: int
    in_channels: int
    kernel: tuple
    group_row0: np.ndarray   # int32 [G]
    group_rows: np.ndarray   # int32 [G]
    group_ptr: np.ndarray    # int64 [G+1]
    entry_quad: np.ndarray   # int32 [E]: (channel // 4) * kh * kw + tap
    values: np.ndarray       # int8, per group: entries x rows x 4

    @property
    def stored(self) -> int:
        return int(self.values.size)


def pack_quads(wq: np.ndarray, rows: int) -> PackedQWeight:
    """An int8 weight (O, C, kh, kw) as row groups of `rows` (8 at most: larger blocks are split)
    over column quads."""
    w = np.asarray(wq)
    if w.dtype != np.int8:
        raise ConfigError(f"pack_quads: the weight must be int8, not {w.dtype}")
    if w.ndim == 2:
        w = w[:, :, None, None]
    if w.ndim != 4:
        raise ConfigError(f"pack_quads: weight shape {tuple(wq.shape)} is neither (O, C, kh, kw) "
                          f"nor (O, C)")
    O, C, kh, kw = w.shape
    K, Q = kh * kw, (C + 3) // 4
    # (O, Q, 4, K) with the channels past C zero, then (O, Q*K, 4): column quad j = q*K + k
    padded = np.zeros((O, Q * 4, K), np.int8)
    padded[:, :C] = w.reshape(O, C, K)
    quads = padded.reshape(O, Q, 4, K).transpose(0, 1, 3, 2).reshape(O, Q * K, 4)
    r = group_rows_for(rows)
    row0, grows, ptr, cols, vals = [], [], [0], [], []
    for o0 in range(0, O, r):
        g = quads[o0:o0 + r]                              # (rows, Q*K, 4)
        keep = np.flatnonzero(np.any(g != 0, axis=(0, 2)))
        row0.append(o0)
        grows.append(g.shape[0])
        cols.append(keep.astype(np.int32))
        vals.append(np.ascontiguousarray(g[:, keep].transpose(1, 0, 2)).reshape(-1))
        ptr.append(ptr[-1] + keep.size)
    return PackedQWeight(O, C, (kh, kw), np.asarray(row0, np.int32), np.asarray(grows, np.int32),
                         np.asarray(ptr, np.int64), np.concatenate(cols).astype(np.int32),
                         np.concatenate(vals).astype(np.int8))


def _pair(v) -> tuple:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _qp(q, what: str) -> tuple:
    try:
        scale, zero = float(q[0]), int(q[1])
    except (TypeError, ValueError, IndexError) as e:
        raise ConfigError(f"{what} must be (scale, zero_point), got {q!r}") from e
    return scale, zero


class QuantConv:
    """One int8 conv / linear layer, packed once (see the module docstring)."""

    def __init__(self, wq: np.ndarray, weight_scale, bias=None, *, input, output,
                 residual=None, act: str = "none", stride=1, padding=0, dilation=1,
                 rows: int = 4, isa: str = "auto", name: str = "layer",
                 input_layout: str = "nchw", output_layout: str = "nchw"):
        if act not in ACTS:
            raise ConfigError(f"{name}: the int8 kernels fuse {', '.join(ACTS)}, not {act!r} "
                              f"(keep the layer in fp32, or run the activation after it)")
        packed = pack_quads(wq, rows)
        ws = np.ascontiguousarray(np.asarray(weight_scale, np.float32).reshape(-1))
        b = None if bias is None else np.ascontiguousarray(np.asarray(bias, np.float32).reshape(-1))
        self.name, self.packed, self.weight_scale, self.bias = name, packed, ws, b
        self.act, self.input_layout, self.output_layout = act, input_layout, output_layout
        self.input, self.output = _qp(input, "input"), _qp(output, "output")
        self.residual = None if residual is None else _qp(residual, "residual")
        try:
            self._k = native.lib().QConv(
                packed.out_channels, packed.in_channels, packed.kernel, _pair(stride),
                _pair(padding), _pair(dilation), packed.group_row0, packed.group_rows,
                packed.group_ptr, packed.entry_quad, packed.values, ws, b, input=self.input,
                output=self.output, residual=self.residual, act=act, isa=isa,
                input_layout=input_layout, output_layout=output_layout)
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from e

    def run(self, x: np.ndarray, residual: Optional[np.ndarray] = None) -> np.ndarray:
        """(N, C, H, W) uint8 -> (N, O, Ho, Wo) uint8 (a linear layer: (N, C) -> (N, O)); in
        the layout "nchw4" (N, ceil(C / 4), H, W, 4) (to_nchw4 / from_nchw4)."""
        linear = x.ndim == 2 and self.packed.kernel == (1, 1)
        if x.dtype != np.uint8 or (residual is not None and residual.dtype != np.uint8):
            raise ConfigError(f"{self.name}: int8 layers take uint8 arrays (quantize first), "
                              f"got {x.dtype}")
        xx = np.ascontiguousarray(x[:, :, None, None] if linear else x)
        rr = None if residual is None else np.ascontiguousarray(
            residual[:, :, None, None] if linear else residual)
        try:
            y = self._k.run(xx, rr)
        except ValueError as e:
            raise ConfigError(f"{self.name}: {e}") from e
        return y[:, :, 0, 0] if linear else y

    def run_linear(self, x: np.ndarray) -> np.ndarray:
        """A linear layer (1x1, "nchw4" layouts) on float rows: (rows, C) float32 -> (rows, O)
        float32, quantized on the input grid, run, dequantized, in one kernel call."""
        try:
            return self._k.run_linear(np.ascontiguousarray(x, np.float32))
        except ValueError as e:
            raise ConfigError(f"{self.name}: {e}") from e

    def run_float(self, x: np.ndarray, residual: Optional[np.ndarray] = None,
                  post_act: str = "none") -> np.ndarray:
        """The layer ("nchw4" layouts, no u8 residual) on float NCHW: (N, C, H, W) float32 -> (N,
        O, Ho, Wo) float32, quantized, run, dequantized in one kernel call, then post_act(y +
        residual) in float (residual float32 of y's shape). A linear layer over the pixels of
        (1, C, 1, rows) gives run_linear's numbers transposed, bit for bit."""
        try:
            return self._k.run_float(np.ascontiguousarray(x, np.float32), None if residual is None
                                     else np.ascontiguousarray(residual, np.float32), post_act)
        except ValueError as e:
            raise ConfigError(f"{self.name}: {e}") from e

    @property
    def kernel_name(self) -> str:
        return str(self._k.kernel_name)

    @property
    def nnz(self) -> int:
        return int(self._k.nnz)


class QuantDepthwise:
    """One int8 depthwise conv (groups == channels), NCHW4 uint8 in and out: wq int8 (C, 1, kh,
    kw) or (C, kh, kw), one weight scale per channel."""

    def __init__(self, wq: np.ndarray, weight_scale, bias=None, *, input, output, residual=None,
                 act: str = "none", stride=1, padding=0, dilation=1, isa: str = "auto",
                 name: str = "layer"):
        if act not in ACTS:
            raise ConfigError(f"{name}: the int8 kernels fuse {', '.join(ACTS)}, not {act!r}")
        w = np.asarray(wq)
        if w.dtype != np.int8 or w.ndim not in (3, 4):
            raise ConfigError(f"{name}: the depthwise weight must be int8 (C, 1, kh, kw)")
        w = np.ascontiguousarray(w.reshape(w.shape[0], w.shape[-2], w.shape[-1]))
        self.name, self.channels, self.kernel = name, int(w.shape[0]), (int(w.shape[1]),
                                                                         int(w.shape[2]))
        self.weight = w
        self.weight_scale = np.ascontiguousarray(np.asarray(weight_scale, np.float32).reshape(-1))
        self.bias = None if bias is None else np.ascontiguousarray(
            np.asarray(bias, np.float32).reshape(-1))
        self.act, self.stride, self.padding, self.dilation = act, _pair(stride), _pair(padding), \
            _pair(dilation)
        self.input, self.output = _qp(input, "input"), _qp(output, "output")
        self.residual = None if residual is None else _qp(residual, "residual")
        try:
            self._k = native.lib().QDepthwise(self.channels, self.kernel, self.stride,
                                              self.padding, self.dilation, w.reshape(-1),
                                              self.weight_scale, self.bias, input=self.input,
                                              output=self.output, residual=self.residual,
                                              act=act, isa=isa)
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from e

    def run(self, x: np.ndarray, residual: Optional[np.ndarray] = None) -> np.ndarray:
        try:
            return self._k.run(np.ascontiguousarray(x), None if residual is None
                               else np.ascontiguousarray(residual))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{self.name}: {e}") from e

    @property
    def kernel_name(self) -> str:
        return str(self._k.kernel_name)


def to_nchw4(x: np.ndarray, fill: int = 0) -> np.ndarray:
    """(N, C, H, W) -> (N, ceil(C / 4), H, W, 4), the channels past C set to fill."""
    n, c, h, w = x.shape
    q = (c + 3) // 4
    out = np.full((n, q * 4, h, w), fill, x.dtype)
    out[:, :c] = x
    return np.ascontiguousarray(out.reshape(n, q, 4, h, w).transpose(0, 1, 3, 4, 2))


def from_nchw4(x: np.ndarray, channels: int) -> np.ndarray:
    """(N, Q, H, W, 4) -> (N, channels, H, W)."""
    n, q, h, w, _ = x.shape
    return np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3).reshape(n, q * 4, h, w)[:, :channels])
