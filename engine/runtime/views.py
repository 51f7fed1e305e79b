"""What a module put in place of a user's nn.Conv2d / nn.Linear keeps of the torch layer, so a
model whose forward reads its layers (ViT's `projection.weight.dtype`, MobileNet's TF padding
reading `kernel_size`, T5's `wo.weight`) runs the same with the engine's modules in place.

    WeightView      weight / bias as read-only tensors: the dense (masked, BN-folded where the
                    lowering folded one) weight the module computes with, float32, the torch
                    layer's shape; built from the packed form on first read
    PaddedConv2d    F.pad(x, pre, mode), then the engine's conv (padding the kernel cannot do
                    itself: "same" split unevenly, reflect / replicate / circular;
                    engine.graph.padding)
    Conv1dView      the engine's conv in place of an nn.Conv1d (the Conv2d of kernel (1, K) on
                    (N, C, 1, L)): weight (O, I/g, K), the Conv1d's attributes
    TransposedLinear   the engine's linear in place of transformers' Conv1D (y = x @ W + b, W
                    stored (in, out)): weight as the (in, out) view, bias, nf, nx
    copy_layer_attributes   kernel_size, stride, padding, dilation, groups, in/out_channels,
                    padding_mode (conv); in/out_features (linear), from the user's layer
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LayerAttributeError


class WeightView:
    """Read-only `weight` and `bias` of a module computing with a packed weight; the class
    provides dense_weight() and bias_np (a numpy array or None)."""

    @property
    def weight(self) -> torch.Tensor:
        w = self.__dict__.get("_weight_view")
        if w is None:
            w = self.dense_weight().detach().to(torch.float32)
            object.__setattr__(self, "_weight_view", w)
        return w

    @property
    def bias(self) -> Optional[torch.Tensor]:
        b = self.bias_np
        return None if b is None else torch.from_numpy(b)


def missing_attribute(module: nn.Module, name: str) -> LayerAttributeError:
    """The error for a model reading an attribute the engine's module lacks."""
    layer = module.__dict__.get("layer", type(module).__dict__.get("layer", "")) or "?"
    return LayerAttributeError(
        f"layer {layer!r} runs on the engine's {type(module).__name__}, which has no "
        f"attribute {name!r} (the model's forward reads it; the engine's modules keep weight, "
        f"bias, kernel_size, stride, padding, dilation, groups, in/out_channels, padding_mode, "
        f"in/out_features); exclude=[{layer!r}] keeps that layer as the model's own module")


class _Wraps(nn.Module):
    """An engine module wrapping another (its attribute `_inner`): `bias` and `kernel_name` are
    the inner module's; an attribute neither has is the named LayerAttributeError."""

    _inner = "conv"

    @property
    def bias(self) -> Optional[torch.Tensor]:
        return getattr(self, self._inner).bias

    @property
    def kernel_name(self) -> str:
        return getattr(self, self._inner).kernel_name

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            raise missing_attribute(self, name) from None


class PaddedConv2d(_Wraps):
    """conv(F.pad(x, pre, mode) [, residual]): a conv whose padding its kernel cannot do itself;
    `conv` is the engine's module for the unpadded (or symmetrically padded) conv."""

    def __init__(self, conv: nn.Module, pre: tuple, mode: str, layer: str = ""):
        super().__init__()
        self.conv, self.pre, self.mode, self.layer = conv, tuple(pre), mode, layer

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = F.pad(x, self.pre, mode=self.mode)
        return self.conv(x) if residual is None else self.conv(x, residual)

    @property
    def weight(self) -> torch.Tensor:
        return self.conv.weight

    def extra_repr(self) -> str:
        return f"{self.layer} pad={self.pre}, mode={self.mode}"


class Conv1dView(_Wraps):
    """nn.Conv1d run by `conv`, the engine's module for the Conv2d of kernel (1, K) on the
    (N, C, 1, L) input; `weight` is (O, I/g, K) as torch's, the conv attributes the Conv1d's."""

    def __init__(self, conv: nn.Module, layer: str = ""):
        super().__init__()
        self.conv, self.layer = conv, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.unsqueeze(-2)).squeeze(-2)

    @property
    def weight(self) -> torch.Tensor:
        return self.conv.weight.squeeze(2)

    def extra_repr(self) -> str:
        return f"{self.layer} as a (1, K) Conv2d"


class TransposedLinear(_Wraps):
    """transformers' Conv1D run by `linear`, the engine's module for the linear of its
    transposed weight; keeps what a forward reads of Conv1D: `weight` (in, out), `bias`, `nf`
    (out features), `nx` (in features)."""

    _inner = "linear"

    def __init__(self, linear: nn.Module, weight_shape: tuple, layer: str = ""):
        super().__init__()
        self.linear, self.layer = linear, layer
        self.nx, self.nf = (int(d) for d in weight_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight.t()

    def extra_repr(self) -> str:
        return f"{self.layer} nf={self.nf}, nx={self.nx}"


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def copy_layer_attributes(new: nn.Module, mod: nn.Module) -> nn.Module:
    """Give `new` the attributes of the torch layer `mod` a forward may read. The engine's
    modules keep their own stride / padding / dilation / groups (what their kernel runs, the
    same values for a symmetric zero padding); a PaddedConv2d takes the user's (padding "same",
    "valid" or numbers, as given)."""
    if isinstance(mod, nn.Conv2d):
        attrs = {"in_channels": mod.in_channels, "out_channels": mod.out_channels,
                 "kernel_size": _pair(mod.kernel_size), "padding_mode": mod.padding_mode}
        if isinstance(new, PaddedConv2d) or not hasattr(new, "stride"):
            attrs.update(stride=_pair(mod.stride), dilation=_pair(mod.dilation),
                         groups=mod.groups,
                         padding=mod.padding if isinstance(mod.padding, str)
                         else _pair(mod.padding))
    elif isinstance(mod, nn.Conv1d):
        attrs = {k: getattr(mod, k) for k in ("in_channels", "out_channels", "kernel_size",
                                              "stride", "padding", "dilation", "groups",
                                              "padding_mode")}
    elif isinstance(mod, nn.Linear):
        attrs = {"in_features": mod.in_features, "out_features": mod.out_features}
    else:
        return new
    for k, v in attrs.items():
        object.__setattr__(new, k, v)
    return new
