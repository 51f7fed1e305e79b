"""Quantization-aware training that keeps the pruning (issue P9): pruning and int8 trained
together.

    cal = engine.quant.calibrate(pruned, batches)
    qat = engine.train.train_qat(pruned, cal, train_batches, loss_fn,
                                 TrainConfig(epochs=3, lr=2e-4, lr_schedule="cosine"))
    qm = engine.quant.lower_int8(qat, engine.quant.calibrate(qat, batches))

The model trains as the int8 kernels will compute it (engine.quant.simulate(trainable=True):
every calibrated layer's BN-folded weight fake-quantized per output channel each step, its input
and output fake-quantized at their calibrated ranges, gradients straight through), with each
layer's pruning mask (its zero weights when training starts) applied before the quantization,
so pruned weights stay exactly zero whatever the optimizer does. The result is a copy of the
model carrying the trained weights: each trained layer's weight is its folded, masked weight,
and its BatchNorm is set to the exact identity plus the trained bias (eps 0, running variance
1, mean 0, scale 1), so the model keeps its structure (calibrate and lower_int8 fuse it as
before) and its fp32 forward is the trained one. The user's model is not modified.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..quant import Calibration, QuantSim, simulate
from .config import TrainConfig


def train_qat(model: nn.Module, cal: Calibration, batches, loss_fn: Callable,
              config: Optional[TrainConfig] = None) -> nn.Module:
    """A copy of `model` after quantization-aware training over `batches` ((x, y) pairs) with
    config's epochs, lr, lr schedule, optimizer, weight decay and seed (its pruning method and
    schedule do not apply: the masks are the model's zeros)."""
    cfg = config or TrainConfig(epochs=3, lr=2e-4, lr_schedule="cosine")
    cfg.validate()
    batches = list(batches)
    if not batches:
        raise ConfigError("train_qat: no training batches")
    torch.manual_seed(cfg.seed)
    sim = simulate(model, cal, trainable=True)
    params = [p for p in sim.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay) \
        if cfg.optimizer == "sgd" else \
        torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps, step = cfg.epochs * len(batches), 0
    for _ in range(cfg.epochs):
        sim.train()
        for x, y in batches:
            if cfg.lr_schedule == "cosine":
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(sim(x), y)
            if not torch.isfinite(loss):
                raise ConfigError(f"train_qat: the loss became {float(loss)} at step {step} "
                                  f"(lower lr={cfg.lr})")
            loss.backward()
            opt.step()
            step += 1
    return export_qat(model, sim)


@torch.no_grad()
def export_qat(model: nn.Module, sim: nn.Module) -> nn.Module:
    """A copy of `model` with the trained weights of `sim` (simulate(model, cal, trainable=True)
    after training) in place: see the module doc."""
    out = copy.deepcopy(model).eval()
    for q in sim.modules():
        if not isinstance(q, QuantSim) or not q.trainable:
            continue
        layer = out.get_submodule(q.name)
        layer.weight.copy_((q.weight * q.mask).to(layer.weight.dtype))
        bias = q.bias.detach() if q.bias is not None else torch.zeros(layer.weight.shape[0])
        if q.lq.bn is None:
            if layer.bias is None:
                if q.bias is not None and bool(q.bias.abs().max() > 0):
                    raise ConfigError(f"export_qat: layer {q.name!r} has no bias to hold the "
                                      f"trained one")
            else:
                layer.bias.copy_(bias)
            continue
        bn = out.get_submodule(q.lq.bn)
        if layer.bias is not None:
            layer.bias.zero_()
        bn.eps = 0.0
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        if bn.weight is None or bn.bias is None:
            raise ConfigError(f"export_qat: BatchNorm {q.lq.bn!r} has no affine parameters to "
                              f"hold the trained bias")
        bn.weight.fill_(1.0)
        bn.bias.copy_(bias)
    return out
