"""The model as its int8 artifact will compute it, in float (fake quantization): each
calibrated conv / linear layer's input quantized to uint8, its BN-folded weight to int8 per
output channel, the fp32 bias and the fused activation applied to the sum, and the fused chain's
output quantized to uint8; everything between layers (adds, pools, reshapes) in fp32.

    sim = engine.quant.simulate(model, engine.quant.calibrate(model, batches))
    sim(x)       # what int8 will give, before any int8 kernel runs: PTQ accuracy
    qat = engine.quant.simulate(model, cal, trainable=True)   # QAT: train it like the model

A deep copy: the user's model is not touched. The sums are float sums of dequantized values,
the int8 kernels' exact int32 sums scaled once: the two differ by float rounding only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import CaptureError, ConfigError
from ..lowering.host import fold_bn
from .calibrate import Calibration, LayerQuant, check_calibrated, fused_chain, traced_copy
from .fake import fake_quant
from .observers import weight_qparams

_ACTS = {"relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish, "silu": F.silu}


class QuantSim(nn.Module):
    """One conv / linear chain (conv -> BN folded -> activation) under fake quantization.

    trainable=False: the folded weight quantized once (a buffer). trainable=True
    (quantization-aware training): the folded weight and bias are parameters, the weight
    re-quantized every forward with per-channel scales from its current values, gradients
    straight through; the pruning mask (the weight's zeros when the layer was built) is applied
    first, so pruned weights stay exactly zero whatever the optimizer does."""

    def __init__(self, lq: LayerQuant, mod: nn.Module, trainable: bool = False):
        super().__init__()
        self.name, self.lq, self.conv = lq.name, lq, isinstance(mod, nn.Conv2d)
        self.trainable = trainable
        if trainable:
            self.weight = nn.Parameter(lq.weight.clone())
            self.bias = None if lq.bias is None else nn.Parameter(lq.bias.clone())
            self.register_buffer("mask", (lq.weight != 0).to(lq.weight.dtype))
        else:
            self.register_buffer("weight", fake_quant(lq.weight, lq.weight_qparams))
            self.register_buffer("bias", None if lq.bias is None else lq.bias.clone())
        if self.conv:
            self.args = (mod.stride, mod.padding, mod.dilation, mod.groups)
            if mod.padding_mode != "zeros":
                raise CaptureError(f"simulate: layer {lq.name!r} pads with "
                                   f"{mod.padding_mode!r}; the int8 path pads with zeros")

    def quantized_weight(self) -> torch.Tensor:
        if not self.trainable:
            return self.weight
        w = self.weight * self.mask
        return fake_quant(w, weight_qparams(w.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fake_quant(x, self.lq.input)
        w = self.quantized_weight()
        y = F.conv2d(x, w, self.bias, *self.args) if self.conv else F.linear(x, w, self.bias)
        if self.lq.act is not None:
            y = _ACTS[self.lq.act](y)
        return fake_quant(y, self.lq.output)


def check_matches(lq: LayerQuant, mod: nn.Module, bn, act, modules: dict,
                  what: str = "simulate") -> None:
    """The calibration must be of this model: a calibration carries its own folded weights,
    and running them in another model's place would be silently wrong."""
    w, b = mod.weight.detach(), None if mod.bias is None else mod.bias.detach()
    if bn is not None:
        w, b = fold_bn(w, b, modules[bn])
    if (bn, act) != (lq.bn, lq.act) or w.shape != lq.weight.shape or not torch.equal(w, lq.weight):
        raise ConfigError(f"{what}: the calibration of layer {lq.name!r} (weight "
                          f"{tuple(lq.weight.shape)}, BN {lq.bn}, activation {lq.act}) does not "
                          f"match this model's (weight {tuple(w.shape)}, BN {bn}, activation "
                          f"{act}): calibrate this model")


def simulate(model: nn.Module, cal: Calibration, trainable: bool = False) -> fx.GraphModule:
    """A fake-quantized copy of `model` for the layers `cal` calibrated (see the module doc);
    trainable=True for quantization-aware training (QuantSim), in train mode."""
    gm = traced_copy(model, "simulate")
    modules = dict(gm.named_modules())
    check_calibrated(gm, cal, "simulate")
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node.target not in cal.layers:
            continue
        chain, bn, act = fused_chain(node, modules)
        check_matches(cal.layers[node.target], modules[node.target], bn, act, modules)
        sim_name = node.target.replace(".", "_") + "_int8"
        gm.add_submodule(sim_name, QuantSim(cal.layers[node.target], modules[node.target],
                                            trainable))
        with gm.graph.inserting_after(chain[-1]):
            q = gm.graph.call_module(sim_name, (node.args[0],))
        chain[-1].replace_all_uses_with(q)
        for n in reversed(chain):          # each one's only user erased before it
            gm.graph.erase_node(n)
    gm.graph.lint()
    gm.recompile()
    return gm.train(trainable)
