"""The model as torch.export takes it: forward(*tensors), every input a tensor.

The engine's example inputs hold tensors, containers of tensors (a KV cache: engine.graph.
containers) and constant settings (None, use_cache=False). TVM's importer takes tensors only:
TensorInputs binds the settings and rebuilds each container from its leaves, and
named_tensors() names every tensor the exported program takes, in its order.
"""
from __future__ import annotations

import torch
from torch import nn

from .containers import is_container, leaves, rebuild_like
from .containers import tensors as tensors_of
from .inputs import ModelInputs, call, is_input


def has_settings(example_inputs) -> bool:
    """Whether the example holds anything but tensors (a setting, a container, keywords): the
    model is then exported as TensorInputs(model, example)."""
    return any(not isinstance(v, torch.Tensor) for v in example_inputs) or \
        bool(getattr(example_inputs, "kwargs", None))


class TensorInputs(nn.Module):
    """The model with its example's constant inputs (None, use_cache=False) bound: forward
    takes only the tensors. TVM's importer cannot take a constant user input."""

    def __init__(self, model: nn.Module, example: tuple):
        super().__init__()
        self.model = model
        self.example = example

    def forward(self, *tensors):
        it = iter(tensors)

        def take(v):
            if isinstance(v, torch.Tensor):
                return next(it)
            if is_container(v):      # a KV cache: its leaves, rebuilt into its structure
                return rebuild_like(v, [next(it) for _ in tensors_of(v)])
            return v
        return call(self.model, ModelInputs([take(v) for v in self.example],
                                            getattr(self.example, "kwargs", {})))


def named_tensors(names: list, example_inputs: tuple) -> list:
    """[(name, tensor)] of the inputs torch.export flattens `example_inputs` into: a tensor
    input by its parameter name, a container's leaves by their path under it
    ("past_key_values.key_cache.0")."""
    out = []
    for i, v in enumerate(example_inputs):
        if isinstance(v, torch.Tensor):
            out.append((names[i], v))
        elif is_input(v):
            out.extend(leaves(v, names[i]))
    return out
