"""The model as its int8 artifact will compute it, in float (fake quantization): each
calibrated conv / linear layer's input quantized to uint8, its BN-folded weight to int8 per
output channel, the fp32 bias and the fused activation applied to the sum, and the fused chain's
output quantized to uint8; everything between layers (adds, pools, reshapes) in fp32, except
what engine.quant.lower_int8 keeps in uint8 too:
- a residual add fused into a conv's store (calibrate.residual_add: conv -> BN -> + other
  tensor -> ReLU / ReLU6 if any): the other operand on its uint8 grid, the conv's sum not
  rounded before the add, the add's (or its ReLU's) output quantized once;
- a max pool of uint8 codes, which keeps its input's grid: a layer reading it (or a residual
  add) takes those codes as they are, not re-quantized at the pool's own calibrated range.

    sim = engine.quant.simulate(model, engine.quant.calibrate(model, batches))
    sim(x)       # what int8 will give, before any int8 kernel runs: PTQ accuracy
    qat = engine.quant.simulate(model, cal, trainable=True)   # QAT: train it like the model

A deep copy: the user's model is not touched. The sums are float sums of dequantized values,
the int8 kernels' exact int32 sums scaled once: the two differ by float rounding only.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import CaptureError, ConfigError
from ..lowering.host import fold_bn
from .calibrate import (
    Calibration,
    LayerQuant,
    check_calibrated,
    fused_chain,
    int8_max_pool,
    residual_add,
    residual_output,
    traced_copy,
)
from .fake import fake_quant
from .qparams import QParams
from .observers import weight_qparams

_ACTS = {"relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish, "silu": F.silu}


class QuantSim(nn.Module):
    """One conv / linear chain (conv -> BN folded -> activation) under fake quantization.

    trainable=False: the folded weight quantized once (a buffer). trainable=True
    (quantization-aware training): the folded weight and bias are parameters, the weight
    re-quantized every forward with per-channel scales from its current values, gradients
    straight through; the pruning mask (the weight's zeros when the layer was built) is applied
    first, so pruned weights stay exactly zero whatever the optimizer does."""

    def __init__(self, lq: LayerQuant, mod: nn.Module, trainable: bool = False,
                 quant_input: bool = True):
        super().__init__()
        self.name, self.lq, self.conv = lq.name, lq, isinstance(mod, nn.Conv2d)
        self.trainable, self.quant_input = trainable, quant_input
        # a fused residual add (fuse_residual): the other operand's QParams (None: it arrives
        # on its uint8 grid), the sum's activation and QParams
        self.residual, self.sum_act, self.sum_output = None, None, None
        self.fused = False
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

    def fuse_residual(self, residual: Optional[QParams], act: Optional[str],
                      output: QParams) -> None:
        """Add a residual operand to the sum (see the module doc), quantized with `residual`
        (None: it is already on its grid), then `act`, the sum quantized with `output`."""
        self.fused, self.residual, self.sum_act, self.sum_output = True, residual, act, output

    def forward(self, x: torch.Tensor, res: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.quant_input:
            x = fake_quant(x, self.lq.input)
        w = self.quantized_weight()
        y = F.conv2d(x, w, self.bias, *self.args) if self.conv else F.linear(x, w, self.bias)
        act, out = self.lq.act, self.lq.output
        if self.fused:
            y = y + (res if self.residual is None else fake_quant(res, self.residual))
            act, out = self.sum_act, self.sum_output
        if act is not None:
            y = _ACTS[act](y)
        return fake_quant(y, out)


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


class _Simulating:
    """simulate()'s graph rewrite, node by node in graph order as lower_int8 lowers: `grid`
    holds the nodes whose values the int8 model keeps as uint8 codes (a layer's or a fused
    add's output, a max pool of codes), `pending` the adds a conv chain was fused into (built
    at the add: its other operand may come later in the graph)."""

    def __init__(self, gm: fx.GraphModule, cal: Calibration, trainable: bool):
        self.gm, self.cal, self.trainable = gm, cal, trainable
        self.modules = dict(gm.named_modules())
        self.grid: set = set()
        self.pending: dict = {}
        self.names: dict = {}       # a call put in place of a chain -> the chain's last name

    def run(self) -> None:
        for node in list(self.gm.graph.nodes):
            mod = self.modules.get(node.target) if node.op == "call_module" else None
            if isinstance(mod, nn.MaxPool2d) and node.args[0] in self.grid and \
                    int8_max_pool(mod):
                self.grid.add(node)
            elif mod is not None and node.target in self.cal.layers:
                self.layer(node, mod)
            elif node in self.pending:
                self.fused_add(node)

    def layer(self, node: fx.Node, mod: nn.Module) -> None:
        chain, bn, act = fused_chain(node, self.modules)
        lq = self.cal.layers[node.target]
        check_matches(lq, mod, bn, act, self.modules)
        sim = QuantSim(lq, mod, self.trainable, quant_input=node.args[0] not in self.grid)
        name = node.target.replace(".", "_") + "_int8"
        self.gm.add_submodule(name, sim)
        add = residual_add(chain, act, mod, self.cal, self.pending, self.names)
        if add is not None:
            self.pending[add] = (name, sim, chain)
            return
        self._replace(chain, chain[-1], name, (node.args[0],))

    def fused_add(self, add: fx.Node) -> None:
        name, sim, chain = self.pending.pop(add)
        other = add.args[1] if add.args[0] is chain[-1] else add.args[0]
        out, act = residual_output(add, self.modules)
        missing = [n.name for n in (other, out) if n not in self.grid and
                   n.name not in self.cal.tensors]
        if missing:
            raise ConfigError(f"simulate: the calibration never saw tensor {missing[0]!r} "
                              f"(calibrate this model)")
        sim.fuse_residual(None if other in self.grid else self.cal.tensors[other.name], act,
                          self.cal.tensors[out.name])
        nodes = chain + ([add, out] if out is not add else [add])
        self._replace(nodes, out, name, (chain[0].args[0], other))

    def _replace(self, nodes: list, last: fx.Node, name: str, args: tuple) -> None:
        """The call of `name` in place of `nodes` (the chain, and the add and its ReLU)."""
        with self.gm.graph.inserting_after(last):
            q = self.gm.graph.call_module(name, args)
        last.replace_all_uses_with(q)
        for n in reversed(nodes):          # each one's only user erased before it
            self.gm.graph.erase_node(n)
        self.grid.add(q)
        self.names[q] = last.name


def _simulate_in_place(model: nn.Module, cal, trainable: bool) -> nn.Module:
    """simulate() of a model torch.fx cannot trace: each calibrated linear a QuantSim."""
    from ..graph.layers import set_module
    from .hooks import check_layers
    out = copy.deepcopy(model)
    linears = check_layers(out, cal, "simulate")
    for name, mod in linears.items():
        set_module(out, name, QuantSim(cal.layers[name], mod, trainable))
    return out.train(trainable)


def simulate(model: nn.Module, cal: Calibration, trainable: bool = False) -> fx.GraphModule:
    """A fake-quantized copy of `model` for the layers `cal` calibrated (see the module doc);
    trainable=True for quantization-aware training (QuantSim), in train mode."""
    if not cal.traced:       # a model torch.fx cannot trace: its linears in place
        return _simulate_in_place(model, cal, trainable)
    gm = traced_copy(model, "simulate")
    check_calibrated(gm, cal, "simulate")
    _Simulating(gm, cal, trainable).run()
    gm.graph.lint()
    gm.recompile()
    return gm.train(trainable)
