"""Calibration without a graph (a model torch.fx cannot trace): forward hooks on every
nn.Linear (and transformers' Conv1D: GPT-2's linears, their weight stored (in, out)) observe its
input and its output (engine.quant.calibrate builds the layers from them, weights in the (out,
in) orientation of the kernels; engine.quant.in_place lowers and simulates them)."""
from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn

from ..errors import ConfigError
from ..graph.layers import gemm_weight, is_transposed_linear
from .observers import observer as make_observer


def observe_linears(model: nn.Module, batches: Iterable, kind: str, options: dict) -> tuple:
    """(tensors, linears, n_batches): tensors "<layer>:in" / "<layer>:out" -> QParams of what
    every nn.Linear read and returned over the batches (a copy of the model runs them),
    linears name -> (weight, bias) of those observed both ways."""
    m = copy.deepcopy(model).eval()
    mods = {n: mod for n, mod in m.named_modules() if is_linear(mod)}
    obs: dict = {}

    def hook(name):
        def record(mod, args, out):
            for key, t in ((f"{name}:in", args[0] if args else None), (f"{name}:out", out)):
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    if key not in obs:
                        obs[key] = make_observer(kind, **options)
                    obs[key].update(t.detach())
        return record

    handles = [mod.register_forward_hook(hook(n)) for n, mod in mods.items()]
    n_batches = 0
    try:
        with torch.no_grad():
            for batch in batches:
                args = batch if isinstance(batch, (tuple, list)) else (batch,)
                try:
                    m(*args)
                except Exception as e:  # noqa: BLE001  (the model's own error: name the batch)
                    raise ConfigError(f"calibrate: batch {n_batches} failed in "
                                      f"{type(model).__name__}: {type(e).__name__}: {e}") from e
                n_batches += 1
    finally:
        for h in handles:
            h.remove()
    tensors = {k: o.qparams() for k, o in obs.items()}
    linears = {n: (gemm_weight(mod).detach(), None if mod.bias is None else mod.bias.detach())
               for n, mod in mods.items() if f"{n}:in" in tensors and f"{n}:out" in tensors}
    return tensors, linears, n_batches


def is_linear(mod: nn.Module) -> bool:
    """An nn.Linear or a transformers Conv1D (a linear whose weight is stored (in, out))."""
    return isinstance(mod, nn.Linear) or is_transposed_linear(mod)


def check_layers(model: nn.Module, cal, what: str) -> dict:
    """name -> linear (is_linear) of the model for every layer of `cal`, its weight the
    calibrated one."""
    mods = dict(model.named_modules())
    out = {}
    for name, lq in cal.layers.items():
        mod = mods.get(name)
        if mod is None or not is_linear(mod) or gemm_weight(mod).shape != lq.weight.shape or \
                not torch.equal(gemm_weight(mod).detach(), lq.weight) or \
                (mod.bias is None) != (lq.bias is None):
            raise ConfigError(f"{what}: the calibration of layer {name!r} does not match this "
                              f"model's (calibrate this model)")
        out[name] = mod
    return out
