"""The prunable-layer list: what the engine knows about every conv / linear it may prune.

transformers' Conv1D (GPT-2's c_attn / c_proj / c_fc: y = x @ W + b with W stored (in, out))
is a linear with a transposed weight: listed as kind "linear" with weight_shape (out, in), and
read and masked through gemm_weight(), a (out, in) view of its weight, everywhere the engine
touches a layer's weight. nn.Conv1d is the Conv2d of kernel (1, K) on an (N, C, 1, L) input
(conv2d_of): listed with those shapes, its weight viewed as (O, I/g, 1, K).

Layers are found by running the model once on the example inputs with forward hooks, so each
`LayerInfo` carries the real input/output shapes the layer sees (kernels and the mapper are
specialised on them).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, asdict
from typing import Optional

import torch
from torch import nn

from .inputs import run_hooked
from .padding import conv_padding


@dataclass(frozen=True)
class LayerInfo:
    """One conv or linear layer as the engine sees it (shapes from one traced run)."""

    name: str                      # fully qualified module name, e.g. "layer1.0.conv2"
    kind: str                      # "conv" or "linear"
    weight_shape: tuple            # conv: (O, I/groups, kh, kw); linear: (O, I)
    in_shape: tuple                # (N, C, H, W) for conv, (..., I) for linear
    out_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    has_bias: bool = False

    @property
    def out_channels(self) -> int:
        return self.weight_shape[0]

    @property
    def kernel_size(self) -> tuple:
        return tuple(self.weight_shape[2:]) if self.kind == "conv" else (1, 1)

    @property
    def gemm_shape(self) -> tuple:
        """(rows, cols) of the GEMM view: O x (I/groups * kh * kw), columns channel-major."""
        o = self.weight_shape[0]
        cols = 1
        for d in self.weight_shape[1:]:
            cols *= d
        return (o, cols)

    @property
    def macs(self) -> int:
        """Dense multiply-accumulates for one forward pass at the traced shape."""
        rows, cols = self.gemm_shape
        if self.kind == "conv":
            n, _, ho, wo = self.out_shape
            return n * rows * cols * ho * wo
        positions = 1
        for d in self.out_shape[:-1]:
            positions *= d
        return positions * rows * cols

    @property
    def is_depthwise(self) -> bool:
        return self.kind == "conv" and self.groups > 1 and self.groups == self.in_shape[1]

    def to_dict(self) -> dict:
        return asdict(self)


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _hf_conv1d_class(mod: nn.Module):
    """transformers' Conv1D class in mod's MRO (found by name: no transformers import), or None."""
    for cls in type(mod).__mro__:
        if cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers."):
            return cls
    return None


def is_transposed_linear(mod: nn.Module) -> bool:
    """transformers' Conv1D (or a subclass): a linear whose weight is stored (in, out)."""
    return _hf_conv1d_class(mod) is not None


def gemm_view(mod: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """`t`, a tensor shaped like mod.weight (the weight, its grad, a mask), as the GEMM view's
    (out, ...) orientation: transposed for Conv1D, (O, I/g, 1, K) for nn.Conv1d (views: writes
    go through), else as is."""
    if is_transposed_linear(mod):
        return t.t()
    return t.unsqueeze(2) if isinstance(mod, nn.Conv1d) else t


def conv2d_of(conv: nn.Conv1d, device="meta", cls=nn.Conv2d) -> nn.Conv2d:
    """The nn.Conv2d an nn.Conv1d is on an (N, C, 1, L) input: kernel (1, K), stride (1, s),
    padding (0, p) (or the same string), dilation (1, d), same groups, bias and padding_mode
    (on the meta device: a description, no weights, unless `device` says otherwise)."""
    pad = conv.padding if isinstance(conv.padding, str) else (0, int(conv.padding[0]))
    return cls(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
               (1, conv.stride[0]), pad, (1, conv.dilation[0]), conv.groups,
               conv.bias is not None, conv.padding_mode, device=device)


class Conv1dAs2d(nn.Conv2d):
    """An nn.Conv1d as the Conv2d it is on (N, C, 1, L): what the compile path exports, so the
    graph holds the conv2d the code generator matches (conv1d_as_conv2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.unsqueeze(-2)).squeeze(-2)


def conv1d_as_conv2d(model: nn.Module) -> nn.Module:
    """A copy of `model` with every nn.Conv1d computing torch's conv (custom_forward None)
    replaced by its Conv1dAs2d, same weights: the same outputs, conv2d in an exported graph."""
    convs = [n for n, m in model.named_modules()
             if isinstance(m, nn.Conv1d) and custom_forward(m) is None]
    if not convs:
        return model
    out = copy.deepcopy(model)
    for name in convs:
        conv = out.get_submodule(name)
        new = conv2d_of(conv, conv.weight.device, Conv1dAs2d)
        with torch.no_grad():
            new.weight.copy_(conv.weight.unsqueeze(2))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        set_module(out, name, new.train(conv.training))
    return out


def gemm_weight(mod: nn.Module) -> torch.Tensor:
    """The layer's weight in the orientation the kernels and schemes use: conv (O, I/g, kh, kw),
    linear (O, I); for transformers' Conv1D a transposed view of its (in, out) weight."""
    return gemm_view(mod, mod.weight)


def _conv_info(name: str, m: nn.Conv2d, x: torch.Tensor, output: torch.Tensor) -> LayerInfo:
    """A conv as its kernel runs it (engine.graph.padding): a padding the kernel cannot do
    itself ("same" split unevenly, reflect / replicate / circular) is an explicit pad of the
    input first, so in_shape is the padded input and padding (0, 0)."""
    pad = conv_padding(m)
    in_shape = tuple(x.shape)
    if x.dim() == 4:
        in_shape = (*in_shape[:2], *pad.padded_hw(int(x.shape[2]), int(x.shape[3])))
    return LayerInfo(name, "conv", tuple(m.weight.shape), in_shape, tuple(output.shape),
                     _pair(m.stride), pad.kernel, _pair(m.dilation), m.groups,
                     m.bias is not None)


def list_layers(model: nn.Module, example_inputs: tuple) -> list[LayerInfo]:
    """Every nn.Conv2d / nn.Conv1d (as a Conv2d on (N, C, 1, L)) / nn.Linear / transformers Conv1D
that runs in one forward pass, in execution order (a conv with a padding its kernel cannot do itself is described as the conv
after an explicit pad).

    A module called more than once (weight sharing) is listed once, with its first call's shapes.
    """
    seen: dict[str, LayerInfo] = {}
    order: list[str] = []
    hooks = []

    def hook_for(name: str, mod: nn.Module):
        def hook(m, inputs, output):
            if name in seen or not isinstance(output, torch.Tensor):
                return
            x = inputs[0]
            if isinstance(m, nn.Conv2d):
                info = _conv_info(name, m, x, output)
            elif isinstance(m, nn.Conv1d):       # a Conv2d on (N, C, 1, L)
                info = _conv_info(name, conv2d_of(m), x.unsqueeze(-2), output.unsqueeze(-2))
            else:
                info = LayerInfo(name, "linear", tuple(gemm_weight(m).shape), tuple(x.shape),
                                 tuple(output.shape), has_bias=m.bias is not None)
            seen[name] = info
            order.append(name)
        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Conv1d, nn.Linear)) or is_transposed_linear(mod):
            hooks.append(mod.register_forward_hook(hook_for(name, mod)))
    run_hooked(model, example_inputs, hooks)
    return [seen[n] for n in order]


def custom_forward(mod: nn.Module) -> Optional[str]:
    """Why the engine cannot run `mod` in place of itself (a subclass of nn.Conv2d / nn.Linear
    computing something else: its own forward, a weight-standardizing _conv_forward), or None
    for a layer that computes what torch's layer does."""
    base = next((c for c in (nn.Conv2d, nn.Conv1d) if isinstance(mod, c)), None) or \
        _hf_conv1d_class(mod) or nn.Linear
    for fn in ("forward", "_conv_forward") if base in (nn.Conv2d, nn.Conv1d) else ("forward",):
        if getattr(type(mod), fn) is not getattr(base, fn):
            return (f"{type(mod).__name__}.{fn} is its own, not torch's {base.__name__}.{fn}: "
                    f"the engine cannot run it; kept as the model's module")
    return None


def get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule at dotted path `name` with `new`."""
    parent_name, _, child = name.rpartition(".")
    parent: Optional[nn.Module] = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
