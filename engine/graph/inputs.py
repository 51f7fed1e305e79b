"""Validation of a model and its example inputs, shared by optimize() and the compiler path."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


def check_inputs(model, example_inputs) -> tuple:
    """The example inputs as a tuple of float32 CPU tensors; ConfigError naming the problem."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)) or not example_inputs:
        raise ConfigError("example_inputs must be a non-empty tuple of tensors, e.g. (x,)")
    for i, t in enumerate(example_inputs):
        if not isinstance(t, torch.Tensor):
            raise ConfigError(f"example_inputs[{i}] is {type(t).__name__}, expected a Tensor")
        if t.dtype != torch.float32 or t.device.type != "cpu":
            raise ConfigError(f"example_inputs[{i}] must be a float32 CPU tensor, got "
                              f"{t.dtype} on {t.device}")
        if t.numel() == 0:
            raise ConfigError(f"example_inputs[{i}] is empty (shape {tuple(t.shape)}): layers are "
                              f"measured and outputs verified on it; give a batch of at least 1")
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            what = " and ".join(w for w, n in (("NaN", n_nan), ("Inf", n_inf)) if n)
            raise ConfigError(f"example_inputs[{i}] holds {what} ({n_nan} NaN, {n_inf} Inf of "
                              f"{t.numel()} values): outputs are verified on it; pass real data "
                              f"or torch.randn of the input shape")
    return tuple(example_inputs)
