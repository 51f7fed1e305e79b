"""Post-training calibration: the user's data through the model, every tensor observed.

    cal = engine.quant.calibrate(model, batches, observer="mse")
    q = cal.layer("layer1.0.conv1")   # LayerQuant: input / output QParams, BN-folded weight and
                                      # its per-channel QParams, the fused activation

The model is traced with torch.fx (as the lowering traces it) and run by an interpreter that
feeds every floating-point tensor it computes to an observer of its own (observers.py), on a
deep copy in eval mode: the user's model, its BatchNorm running statistics and its training
flag are never touched. A conv or linear layer is read the way the int8 lowering will run it:
conv -> BatchNorm (folded into the weight and bias first, as the fp32 lowering folds it) ->
activation (ReLU / ReLU6 / hardswish / SiLU, fused into the store), so its output QParams are
those of the chain's last tensor, and its weight QParams those of the folded weight. A model
torch.fx cannot trace is calibrated by forward hooks on its linear layers instead
(engine.quant.in_place: Calibration.traced False).
"""
from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch
from torch import fx, nn

from ..errors import CaptureError, ConfigError
from ..lowering.host import act_of, fold_bn
from .observers import DEFAULT, observer as make_observer, weight_qparams
from .qparams import QParams


@dataclass(frozen=True)
class LayerQuant:
    """What the int8 lowering needs of one conv / linear layer."""

    name: str
    input: QParams             # of the layer's input tensor (per tensor, uint8)
    output: QParams            # of the fused chain's output (per tensor, uint8)
    weight: torch.Tensor       # BN folded
    bias: Optional[torch.Tensor]
    weight_qparams: QParams    # per output channel, symmetric int8
    bn: Optional[str]          # the BatchNorm folded in, if any
    act: Optional[str]         # the activation fused into the store, if any


@dataclass(frozen=True)
class Calibration:
    observer: str
    batches: int
    tensors: dict              # fx node name -> QParams of every float tensor
    layers: dict               # module name -> LayerQuant
    shapes: dict = field(default_factory=dict)   # fx node name -> its shape past the batch
    traced: bool = True        # False: calibrated by hooks on the linears (in_place.py)

    def layer(self, name: str) -> LayerQuant:
        if name not in self.layers:
            known = ", ".join(list(self.layers)[:8])
            raise ConfigError(f"calibration has no conv / linear layer {name!r} (layers: "
                              f"{known}{', ...' if len(self.layers) > 8 else ''})")
        return self.layers[name]


class _Observing(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, kind: str, options: dict):
        super().__init__(gm)
        self.kind, self.options, self.observers, self.shapes = kind, options, {}, {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            if n.name not in self.observers:
                self.observers[n.name] = make_observer(self.kind, **self.options)
            self.observers[n.name].update(out)
            self.shapes[n.name] = tuple(out.shape[1:])
        return out


def only_user(n: fx.Node) -> Optional[fx.Node]:
    users = list(n.users)
    return users[0] if len(users) == 1 else None


def fused_chain(n: fx.Node, modules: dict) -> tuple:
    """(nodes, BN module name or None, activation or None) of the chain conv / linear node n
    starts: n, then a BatchNorm2d that is its only user (convs), then a fusable activation that
    is the previous node's only user."""
    nodes, bn, act = [n], None, None
    nxt = only_user(n)
    if nxt is not None and nxt.op == "call_module" and \
            isinstance(modules.get(nxt.target), nn.BatchNorm2d) and \
            isinstance(modules[n.target], nn.Conv2d):
        nodes.append(nxt)
        bn = nxt.target
        nxt = only_user(nxt)
    if nxt is not None and act_of(nxt, modules) is not None:
        nodes.append(nxt)
        act = act_of(nxt, modules)
    return nodes, bn, act


_ADDS = (operator.add, operator.iadd, torch.add)


def is_add(n: fx.Node) -> bool:
    """n adds two tensors (a + b, a += b, torch.add(a, b), a.add(b)), nothing else."""
    return ((n.op == "call_function" and n.target in _ADDS) or
            (n.op == "call_method" and n.target in ("add", "add_"))) and len(n.args) == 2 and \
        all(isinstance(a, fx.Node) for a in n.args) and not n.kwargs


def residual_add(chain: list, act: Optional[str], module: nn.Module, cal: "Calibration",
                 taken, names: Optional[dict] = None) -> Optional[fx.Node]:
    """The add an int8 conv chain is fused into (lower_int8 adds the other operand in the
    conv's store, applies the add's ReLU / ReLU6 if it has one and requantizes the sum once;
    simulate() models the same), or None. Fused: a groups-1 conv chain without an activation
    whose only user adds it to another tensor of the same shape (in calibration: a broadcast
    add stays a float add), an add no earlier chain took (`taken`: ResNet's conv3 and its
    downsample shortcut meet in one add; the first in graph order is fused). names: node ->
    the name it was calibrated under, for nodes a rewrite put in place of the traced ones."""
    if act is not None or not isinstance(module, nn.Conv2d) or module.groups != 1:
        return None
    add = only_user(chain[-1])
    if add is None or not is_add(add) or add in taken or add.args[0] is add.args[1]:
        return None
    a, b = (cal.shapes.get((names or {}).get(x, x.name)) for x in add.args)
    return add if a is not None and a == b else None


def residual_output(add: fx.Node, modules: dict) -> tuple:
    """(node, activation) a fused residual add ends at: its ReLU / ReLU6 when that is its only
    user, else the add itself (no activation)."""
    nxt = only_user(add)
    act = act_of(nxt, modules) if nxt is not None else None
    return (nxt, act) if act in ("relu", "relu6") else (add, None)


def int8_max_pool(mod: nn.MaxPool2d) -> bool:
    """A max pool the int8 lowering runs on uint8 codes (keeping its input's QParams)."""
    return mod.dilation in (1, (1, 1)) and not mod.ceil_mode and not mod.return_indices


def traced_copy(model: nn.Module, what: str) -> fx.GraphModule:
    """torch.fx trace of a deep copy of `model` in eval mode (the user's model untouched)."""
    m = copy.deepcopy(model).eval()
    try:
        return fx.symbolic_trace(m)
    except Exception as e:  # torch.fx raises many types; name the cause
        raise CaptureError(f"{what}: torch.fx.symbolic_trace failed on "
                           f"{type(model).__name__}: {type(e).__name__}: {e}") from e


def check_calibrated(gm: fx.GraphModule, cal: "Calibration", what: str) -> None:
    """Every layer the calibration has must be one this traced model calls."""
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    missing = sorted(set(cal.layers) - called)
    if missing:
        raise ConfigError(f"{what}: the calibration has layers this model does not call: "
                          f"{', '.join(missing[:5])} (calibrate this model)")


def _calibrate_linears(model: nn.Module, batches: Iterable, observer: str, options: dict,
                       why: CaptureError) -> "Calibration":
    """calibrate() of a model torch.fx cannot trace: its linear layers, by hooks."""
    from .hooks import is_linear, observe_linears
    if not any(is_linear(m) for m in model.modules()):
        raise CaptureError(f"{why}; without a graph only linear layers (nn.Linear, transformers' "
                           f"Conv1D) are calibrated (by forward hooks) and "
                           f"{type(model).__name__} has none") from why
    tensors, linears, n = observe_linears(model, batches, observer, options)
    if n == 0:
        raise ConfigError("calibrate: no calibration batches (pass an iterable of inputs)")
    layers = {name: LayerQuant(name, tensors[f"{name}:in"], tensors[f"{name}:out"], w, b,
                               weight_qparams(w), None, None)
              for name, (w, b) in linears.items()}
    return Calibration(observer, n, tensors, layers, traced=False)


def calibrate(model: nn.Module, batches: Iterable, observer: str = DEFAULT,
              **options) -> Calibration:
    """Observe every float tensor of `model` over `batches` (each a tensor, or a tuple of the
    forward's positional arguments) with observers of kind `observer` ("minmax", "percentile",
    "mse"; options go to them, e.g. percentile=99.9)."""
    make_observer(observer, **options)            # a bad kind / option fails before any work
    try:
        gm = traced_copy(model, "calibrate")
    except CaptureError as e:   # no graph: the linears by hooks (engine.quant.hooks)
        return _calibrate_linears(model, batches, observer, options, e)
    interp = _Observing(gm, observer, options)
    n_batches = 0
    with torch.no_grad():
        for batch in batches:
            args = batch if isinstance(batch, (tuple, list)) else (batch,)
            try:
                interp.run(*args)
            except ConfigError:
                raise
            except Exception as e:  # the model's own error on this input: name the batch
                shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
                          for a in args]
                raise ConfigError(f"calibrate: batch {n_batches} (inputs {shapes}) failed in "
                                  f"{type(model).__name__}: {type(e).__name__}: {e}") from e
            n_batches += 1
    if n_batches == 0:
        raise ConfigError("calibrate: no calibration batches (pass an iterable of inputs)")
    tensors = {name: o.qparams() for name, o in interp.observers.items()}
    modules = dict(gm.named_modules())
    layers = {}
    for n in gm.graph.nodes:
        mod = modules.get(n.target) if n.op == "call_module" else None
        if not isinstance(mod, (nn.Conv2d, nn.Linear)) or not n.args or \
                not isinstance(n.args[0], fx.Node) or n.args[0].name not in tensors:
            continue
        chain, bn, act = fused_chain(n, modules)
        w, b = mod.weight.detach(), None if mod.bias is None else mod.bias.detach()
        if bn is not None:
            w, b = fold_bn(w, b, modules[bn])
        layers[n.target] = LayerQuant(n.target, tensors[n.args[0].name], tensors[chain[-1].name],
                                      w, b, weight_qparams(w), bn, act)
    return Calibration(observer, n_batches, tensors, layers, dict(interp.shapes))
