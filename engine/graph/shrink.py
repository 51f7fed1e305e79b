"""Layer surgery: cut a Conv2d / Linear / BatchNorm down to a subset of its channels, in place.

One small handler per layer type behind a four-method base class, dispatched through one table
(`SHRINKERS`, looked up along the module's class hierarchy). Handlers slice the weight, bias and
running statistics and update the layer's size attributes; each checks its postcondition and
raises SchemeError rather than leave an inconsistent layer. Which channels to keep is decided
elsewhere (engine/graph/dependency.py finds the coupled groups, engine/schemes/channel.py scores
them).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import SchemeError


def _sliced(p: Optional[torch.Tensor], dim: int, keep: torch.Tensor) -> Optional[torch.Tensor]:
    if p is None:
        return None
    t = p.detach().index_select(dim, keep.to(p.device)).clone()
    return nn.Parameter(t, requires_grad=p.requires_grad) if isinstance(p, nn.Parameter) else t


def _check_keep(keep: torch.Tensor, size: int, what: str) -> None:
    if keep.numel() == 0:
        raise SchemeError(f"{what}: cannot keep 0 of {size} channels")
    if int(keep.min()) < 0 or int(keep.max()) >= size or bool((keep[1:] <= keep[:-1]).any()):
        raise SchemeError(f"{what}: kept indices must be strictly increasing in [0, {size})")


class LayerShrinker(ABC):
    """How to cut one layer type along its output (dim 0) and input (dim 1) channels."""

    @abstractmethod
    def out_channels(self, m: nn.Module) -> int: ...

    @abstractmethod
    def in_channels(self, m: nn.Module) -> int: ...

    @abstractmethod
    def keep_out(self, m: nn.Module, keep: torch.Tensor) -> None: ...

    @abstractmethod
    def keep_in(self, m: nn.Module, keep: torch.Tensor) -> None: ...


class ConvShrinker(LayerShrinker):
    """nn.Conv2d: normal (groups=1) on both dims; depthwise (groups=in_channels) on dim 0 only,
    where output channel j reads input channel j // k and the input channels follow."""

    def out_channels(self, m: nn.Conv2d) -> int:
        return m.out_channels

    def in_channels(self, m: nn.Conv2d) -> int:
        return m.in_channels

    def keep_out(self, m: nn.Conv2d, keep: torch.Tensor) -> None:
        _check_keep(keep, m.out_channels, f"conv {type(m).__name__} output")
        n = keep.numel()
        if m.groups == 1:
            m.out_channels = n
        elif m.groups == m.in_channels:
            k = m.out_channels // m.groups
            blocks = keep.reshape(-1, k) if n % k == 0 else None
            if blocks is None or bool((blocks[:, 0] % k != 0).any()) or \
                    bool((blocks - blocks[:, :1] != torch.arange(k)).any()):
                raise SchemeError(f"depthwise conv (multiplier {k}): kept outputs must be whole "
                                  f"blocks of {k} per input channel")
            m.out_channels = n
            m.in_channels = m.groups = n // k
        else:
            raise SchemeError(f"grouped conv (groups={m.groups}) cannot be shrunk")
        m.weight = _sliced(m.weight, 0, keep)
        m.bias = _sliced(m.bias, 0, keep)

    def keep_in(self, m: nn.Conv2d, keep: torch.Tensor) -> None:
        _check_keep(keep, m.in_channels, f"conv {type(m).__name__} input")
        if m.groups != 1:
            raise SchemeError(f"conv with groups={m.groups}: input channels follow the outputs")
        m.in_channels = keep.numel()
        m.weight = _sliced(m.weight, 1, keep)


class LinearShrinker(LayerShrinker):
    """nn.Linear: output features (rows) and input features (columns)."""

    def out_channels(self, m: nn.Linear) -> int:
        return m.out_features

    def in_channels(self, m: nn.Linear) -> int:
        return m.in_features

    def keep_out(self, m: nn.Linear, keep: torch.Tensor) -> None:
        _check_keep(keep, m.out_features, "linear output")
        m.out_features = keep.numel()
        m.weight = _sliced(m.weight, 0, keep)
        m.bias = _sliced(m.bias, 0, keep)

    def keep_in(self, m: nn.Linear, keep: torch.Tensor) -> None:
        _check_keep(keep, m.in_features, "linear input")
        m.in_features = keep.numel()
        m.weight = _sliced(m.weight, 1, keep)


class NormShrinker(LayerShrinker):
    """BatchNorm (any dimensionality): one channel axis, weight/bias and running statistics."""

    def out_channels(self, m: _BatchNorm) -> int:
        return m.num_features

    def in_channels(self, m: _BatchNorm) -> int:
        return m.num_features

    def keep_out(self, m: _BatchNorm, keep: torch.Tensor) -> None:
        _check_keep(keep, m.num_features, "batchnorm")
        m.num_features = keep.numel()
        m.weight = _sliced(m.weight, 0, keep)
        m.bias = _sliced(m.bias, 0, keep)
        if m.running_mean is not None:
            m.running_mean = _sliced(m.running_mean, 0, keep)
            m.running_var = _sliced(m.running_var, 0, keep)

    keep_in = keep_out


SHRINKERS: dict[type, LayerShrinker] = {
    nn.Conv2d: ConvShrinker(),
    nn.Linear: LinearShrinker(),
    _BatchNorm: NormShrinker(),
}


def shrinker_for(m: nn.Module) -> LayerShrinker:
    """The handler for `m`'s type (or its nearest registered base class)."""
    for cls in type(m).__mro__:
        if cls in SHRINKERS:
            return SHRINKERS[cls]
    raise SchemeError(f"no channel shrinker for {type(m).__name__}; "
                      f"known: {[c.__name__ for c in SHRINKERS]}")


def channel_count(m: nn.Module, dim: int) -> int:
    """Channels of `m` along weight dim `dim` (0: outputs, 1: inputs)."""
    h = shrinker_for(m)
    return h.out_channels(m) if dim == 0 else h.in_channels(m)


def keep_channels(m: nn.Module, dim: int, keep: torch.Tensor) -> None:
    """Cut `m` in place to the channels `keep` (sorted int64 indices) along weight dim `dim`."""
    h = shrinker_for(m)
    if dim == 0:
        h.keep_out(m, keep)
    elif dim == 1:
        h.keep_in(m, keep)
    else:
        raise SchemeError(f"channel dim must be 0 or 1, got {dim}")


__all__ = ["LayerShrinker", "ConvShrinker", "LinearShrinker", "NormShrinker", "SHRINKERS",
           "shrinker_for", "channel_count", "keep_channels"]
