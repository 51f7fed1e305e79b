"""Each int8 layer of a lowered model against its simulation, on the same input.

    diffs = engine.quant.layer_diffs(qm, sim, (x,))   # qm = lower_int8(...), sim = simulate(...)
    bad = [d for d in diffs if not d.ok]

End to end an int8 model and its simulation part by rounding: where a float sum of the
simulation lands within its rounding error of a half step, it rounds to the other code than
the kernel's exact integer sum, and every later layer carries that difference on. How far it
grows is the network's: through a trained network it fades, through a random one with
re-estimated BatchNorm statistics it grows ~1.4x per block (MobileNetV2: one code in 10^4
outputs after its 4th block, 5% relative L2 at its logits). Layer by layer on the same input a
correct int8 layer differs from its simulation only at those ties: by one code, in a small
fraction of its outputs. Anything more is a wrong kernel or a wrong lowering, and names the
layer.

Each QuantSim of the simulation (simulate(): `<layer>_int8`) is run by the simulation with its
inputs recorded; the int8 layer of the same name (lower_int8's QConv2d / QDepthwiseConv2d, a
QLinear's kernel on the (1, C, 1, rows) image of its input) gets
those inputs as uint8 codes on the grids it reads (its input's and residual's QParams), and its
output codes are compared with the simulation's output quantized on the layer's output grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..runtime.qconv import from_nchw4, to_nchw4
from ..runtime.qmodules import QLinear
from .fake import quantize
from .qparams import ACT_U8, QParams
from .simulate import QuantSim

# a layer matches its simulation when no output is more than MAX_CODES apart and at most
# MAX_TIE_FRACTION of them differ at all (ties: float rounding of the simulation's sums; seen
# up to 4e-5 of a layer's outputs on MobileNetV2 and ResNet-50)
MAX_CODES = 1
MAX_TIE_FRACTION = 0.001


@dataclass(frozen=True)
class LayerDiff:
    """One int8 layer against its simulation on the same input (codes of its output grid)."""

    name: str                 # the int8 module's name (`<layer>_int8`)
    outputs: int              # how many output codes
    differ: int               # how many differ at all
    max_codes: int            # the largest difference, in codes

    @property
    def ok(self) -> bool:
        return self.max_codes <= MAX_CODES and self.differ <= MAX_TIE_FRACTION * self.outputs

    def __str__(self) -> str:
        return (f"{self.name}: {self.differ} of {self.outputs} output codes differ, by up to "
                f"{self.max_codes}")


def _qp(pair) -> QParams:
    scale, zero = pair
    return QParams(torch.tensor(float(scale)), torch.tensor(int(zero)), ACT_U8)


def _codes(x: torch.Tensor, pair) -> torch.Tensor:
    """x (float NCHW) as uint8 codes in NCHW4 on the grid (scale, zero point)."""
    q = quantize(x.detach().float(), _qp(pair)).to(torch.uint8).numpy()
    return torch.from_numpy(to_nchw4(q))


class _Codes:
    """A QuantConv called on NCHW4 codes, as QConv2d calls it (a QLinear's kernel)."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, x: torch.Tensor, res=None) -> torch.Tensor:
        return torch.from_numpy(self.layer.run(x.numpy(), None if res is None else res.numpy()))


def _image(y: torch.Tensor) -> torch.Tensor:
    """A linear layer's (..., O) as the (1, O, 1, rows) image its kernel computes."""
    y2 = y.reshape(-1, y.shape[-1])
    return y2.t().reshape(1, y2.shape[1], 1, y2.shape[0])


def layer_diffs(qm: torch.nn.Module, sim: torch.nn.Module, inputs: tuple) -> list:
    """[LayerDiff] for every QuantSim of `sim` that has an int8 layer of the same name in
    `qm`, in the simulation's execution order."""
    int8 = dict(qm.named_modules())
    seen: dict = {}
    hooks = []

    def record(name):
        def hook(mod, args, out):
            if name not in seen:
                seen[name] = (args, out.detach())
        return hook

    for name, mod in sim.named_modules():
        if isinstance(mod, QuantSim) and hasattr(int8.get(name), "layer"):
            hooks.append(mod.register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            sim(*inputs)
    finally:
        for h in hooks:
            h.remove()
    diffs = []
    with torch.no_grad():
        for name, (args, want) in seen.items():
            mod = int8[name]
            layer, x0 = mod.layer, args[0]
            if isinstance(mod, QLinear):    # its kernel on the (1, C, 1, rows) image of x
                x0, want = mod.to_image(x0), _image(want)
                mod = _Codes(layer)
            x = _codes(x0, layer.input)
            res = None
            if len(args) > 1 and args[1] is not None:
                res = _codes(args[1], layer.residual)
            got = from_nchw4(mod(x, res).numpy(), want.shape[1]).astype(np.int64)
            ref = quantize(want.float(), _qp(layer.output)).numpy()
            d = np.abs(got - ref)
            diffs.append(LayerDiff(name, int(d.size), int((d > 0).sum()),
                                   int(d.max()) if d.size else 0))
    return diffs
