"""int8 for models torch.fx cannot trace (a transformers model, a forward with data-dependent
control flow): its linear layers (nn.Linear, transformers' Conv1D), swapped in place.

    cal = engine.quant.calibrate(bert, batches)        # cal.traced False: hooks (hooks.py)
    qm = engine.quant.lower_int8(bert, cal)            # the linears as QLinear, in place
    sim = engine.quant.simulate(bert, cal)             # the same linears as QuantSim (there)

Without a graph there is no chain to fuse (BatchNorm, activation, residual add) and no tensor to
keep as uint8 between layers; an int8 linear layer does not need either: QLinear is float in and
out, quantizing its input on the calibrated grid of that input and dequantizing its output on
its output's, which the forward hooks that calibrate observe directly. Convs of such a model
stay fp32 (their int8 form keeps uint8 tensors between layers, which takes the graph), said in
the report. The fp32 layers run as engine.lowering swaps them in place (the fp32 pipeline's
own fallback for such models), on the backends fp32_specs names.
"""
from __future__ import annotations

import torch
from torch import nn

from ..graph.layers import set_module
from ..runtime.qmodules import QLinear
from .hooks import check_layers, is_linear
from .native import qconv_of

NO_TRACE = "convs run int8 only in a model torch.fx can trace (their uint8 tensors between " \
           "layers take the graph)"


def lower_in_place(model: nn.Module, cal, rows, isa: str, fp32: set, fp32_specs: dict,
                   fp32_why: str) -> nn.Module:
    """lower_int8 of a model torch.fx cannot trace: the fp32 layers named in fp32_specs swapped
    in place on their backends (engine.lowering.lower's fallback), then every calibrated linear
    not in fp32 a QLinear; .int8_report as lower_int8's."""
    from ..lowering.host import lower
    linears = check_layers(model, cal, "lower_int8")
    int8 = [n for n in linears if n not in fp32]
    specs = {n: s for n, s in fp32_specs.items() if n not in int8}
    out = lower(model, specs, isa).module
    report = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Conv2d) and not is_linear(mod):
            continue
        if name in fp32:
            report[name] = f"fp32: {fp32_why}"
        elif isinstance(mod, nn.Conv2d):
            report[name] = f"fp32: {NO_TRACE}"
        elif name not in linears:
            report[name] = "fp32: not calibrated"
    with torch.no_grad():
        for name in int8:
            r = rows.get(name, 4) if isinstance(rows, dict) else rows
            layer = qconv_of(linears[name], cal.layers[name], rows=r, isa=isa,
                             input_layout="nchw4", output_layout="nchw4")
            set_module(out, name, QLinear(layer))
            report[name] = "int8 (float in and out)"
    out.int8_report = report
    return out.eval()
