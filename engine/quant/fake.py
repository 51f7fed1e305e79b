"""Quantize, dequantize and fake-quantize (quantize then dequantize) with QParams.

fake_quant's gradient is the straight-through estimator used by quantization-aware training
(Bengio et al. 2013; Jacob et al. 2018): the incoming gradient passes where x quantized inside
the integer range and is zero where it clipped. x is scaled by the float32 reciprocal of the
scale and rounded half to even, as torch's fake_quantize_* and the int8 kernels' requantization
(a multiply, never a divide, in the store) do.
"""
from __future__ import annotations

import torch

from .qparams import QParams


def _bcast(t: torch.Tensor, x: torch.Tensor, qp: QParams) -> torch.Tensor:
    if not qp.per_channel:
        return t
    shape = [1] * x.dim()
    shape[qp.axis] = -1
    return t.reshape(shape)


def quantize(x: torch.Tensor, qp: QParams) -> torch.Tensor:
    """round(x / scale) + zero_point, clamped to the range (int64: callers narrow)."""
    inv = _bcast(1.0 / qp.scale, x, qp).to(x.dtype)
    z = _bcast(qp.zero_point, x, qp)
    q = torch.round(x * inv).to(torch.int64) + z
    return torch.clamp(q, qp.qrange.qmin, qp.qrange.qmax)


def dequantize(q: torch.Tensor, qp: QParams) -> torch.Tensor:
    s = _bcast(qp.scale, q, qp)
    z = _bcast(qp.zero_point, q, qp)
    return (q - z).to(torch.float32) * s


class _FakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, inv_scale, zero_point, qmin, qmax):
        q = torch.round(x * inv_scale) + zero_point
        inside = (q >= qmin) & (q <= qmax)
        ctx.save_for_backward(inside)
        return (torch.clamp(q, qmin, qmax) - zero_point) * scale

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None, None


def fake_quant(x: torch.Tensor, qp: QParams) -> torch.Tensor:
    """dequantize(quantize(x)) in x's float dtype, differentiable with the straight-through
    estimator (gradient 1 inside the range, 0 where x clipped)."""
    s = _bcast(qp.scale, x, qp).to(x.dtype)
    inv = _bcast(1.0 / qp.scale, x, qp).to(x.dtype)
    z = _bcast(qp.zero_point, x, qp).to(x.dtype)
    return _FakeQuant.apply(x, s, inv, z, qp.qrange.qmin, qp.qrange.qmax)
