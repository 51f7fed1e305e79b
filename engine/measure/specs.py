"""The engine's layer list -> mapping.LayerSpec (what the mappers and the cost table see).

    layers = list_layers(model, (x,))                  # engine.graph.layers
    fused = lower(model, {}).fused                     # engine.lowering: BN / act / residual
    specs = layer_specs(layers, fused)                 # or model_specs(model, (x,))

A spec carries everything a layer's latency depends on, including the epilogue the lowering
fuses into the kernel ("relu", "silu", "relu+residual", ...), because a fused residual add changes
what the kernel reads and writes. `spec_layer_info` goes back the other way, so the engine's own
scheme rules (`MaskScheme.check`) can judge a spec.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from mapping import LayerSpec

from ..errors import ConfigError
from ..graph.layers import LayerInfo, gemm_weight
from ..runtime.modules import ACTIVATIONS

RESIDUAL = "residual"
ACTS = tuple(a for a in ACTIVATIONS if a != "none")   # the kernels' fused epilogues


def epilogue_of(fused: Optional[dict]) -> str:
    """"relu", "hardswish", "relu+residual", ... or "" from one layer's lowering info
    ({"bn": ..., "act": "none" or one of ACTS, "residual": bool})."""
    if not fused:
        return ""
    parts = []
    act = fused.get("act", "none") or "none"
    if act != "none":
        if act not in ACTS:
            raise ConfigError(f"unknown fused activation {act!r}; known: {ACTS}")
        parts.append(act)
    if fused.get("residual"):
        parts.append(RESIDUAL)
    return "+".join(parts)


def parse_epilogue(epilogue: str) -> tuple:
    """(act, residual) from a spec's epilogue: act is "none" or one of ACTS."""
    parts = [p for p in (epilogue or "").split("+") if p]
    acts = [p for p in parts if p != RESIDUAL]
    bad = [p for p in acts if p not in ACTS]
    if bad or len(acts) > 1:
        raise ConfigError(f"epilogue {epilogue!r}: expected at most one of {ACTS}, optionally "
                          f"with '+{RESIDUAL}'")
    return (acts[0] if acts else "none", RESIDUAL in parts)


def _padding(info: LayerInfo) -> tuple:
    """The layer's (ph, pw); string paddings ("same") come back as (-1, -1) from list_layers
    and are recovered from the traced shapes (symmetric only: the kernels pad symmetrically)."""
    if tuple(info.padding) != (-1, -1):
        return tuple(int(p) for p in info.padding)
    pads = []
    for size, out, k, s, d in zip(info.in_shape[2:], info.out_shape[2:], info.kernel_size,
                                  info.stride, info.dilation):
        total = (out - 1) * s + d * (k - 1) + 1 - size
        if total < 0 or total % 2:
            raise ConfigError(f"layer {info.name!r}: string padding with an asymmetric pad "
                              f"({total} pixels) has no LayerSpec form")
        pads.append(total // 2)
    return tuple(pads)


def layer_spec(info: LayerInfo, fused: Optional[dict] = None, order: int = 0) -> LayerSpec:
    """One LayerInfo as a LayerSpec; fused: that layer's entry of the lowering's fused info."""
    if info.kind == "conv":
        if len(info.in_shape) != 4:
            raise ConfigError(f"layer {info.name!r}: conv input must be (N, C, H, W), got "
                              f"{info.in_shape}")
        n, c, h, w = (int(d) for d in info.in_shape)
        return LayerSpec(info.name, "conv2d", c, int(info.weight_shape[0]),
                         tuple(info.kernel_size), tuple(info.stride), _padding(info),
                         tuple(info.dilation), int(info.groups), (h, w), n,
                         epilogue_of(fused), order,
                         {"weight_shape": list(info.weight_shape), "has_bias": info.has_bias})
    if info.kind == "linear":
        rows = 1
        for d in info.in_shape[:-1]:
            rows *= int(d)
        return LayerSpec(info.name, "linear", int(info.weight_shape[1]),
                         int(info.weight_shape[0]), batch=rows, epilogue=epilogue_of(fused),
                         order=order, extra={"weight_shape": list(info.weight_shape),
                                             "has_bias": info.has_bias})
    raise ConfigError(f"layer {info.name!r}: unknown kind {info.kind!r} (expected conv/linear)")


def layer_specs(layers: list, fused: Optional[dict] = None) -> list:
    """LayerSpecs of engine.graph.layers.list_layers' output, in execution order (order =
    position). fused: engine.lowering's LoweringResult.fused (layer -> {"bn", "act",
    "residual"}); None: no epilogue known (every spec gets "")."""
    fused = fused or {}
    return [layer_spec(info, fused.get(info.name), i) for i, info in enumerate(layers)]


def model_specs(model, example_inputs: tuple) -> list:
    """layer_specs for a torch model: its layer list and the host lowering's fused epilogues
    (the same lowering optimize() builds, so specs match what is measured and run), with the
    data flow between the layers as LayerSpec.inputs (engine.graph.flow; None if untraceable)."""
    from ..graph.flow import layer_inputs
    from ..graph.inputs import check_inputs
    from ..graph.layers import list_layers
    from ..lowering import lower
    example_inputs = check_inputs(model, example_inputs)
    was_training = model.training
    model.eval()
    try:
        layers = list_layers(model, example_inputs)
        fused = lower(model, {}).fused
        flow = layer_inputs(model, [info.name for info in layers])
    finally:
        model.train(was_training)
    specs = layer_specs(layers, fused)
    if flow is None:
        return specs
    return [replace(s, inputs=flow[s.name]) for s in specs]


def model_weights(model, specs: list) -> dict:
    """layer name -> its weight tensor (detached), for the profilers and retained_energy."""
    return {s.name: gemm_weight(model.get_submodule(s.name)).detach() for s in specs}


def weight_shape(spec: LayerSpec) -> tuple:
    """The torch weight shape of a spec: conv (O, I/groups, kh, kw), linear (O, I)."""
    if spec.op == "linear":
        return (spec.out_channels, spec.in_channels)
    return (spec.out_channels, spec.in_channels // spec.groups, *spec.kernel)


def input_shape(spec: LayerSpec) -> tuple:
    """The input the layer's kernel sees: conv (N, C, H, W), linear (rows, I)."""
    if spec.op == "linear":
        return (spec.batch, spec.in_channels)
    return (spec.batch, spec.in_channels, *spec.input_hw)


def output_shape(spec: LayerSpec) -> tuple:
    if spec.op == "linear":
        return (spec.batch, spec.out_channels)
    return (spec.batch, spec.out_channels, *spec.output_hw)


def spec_layer_info(spec: LayerSpec) -> LayerInfo:
    """A LayerInfo for a spec (so the engine's scheme rules, MaskScheme.check, can judge it)."""
    kind = "conv" if spec.op == "conv2d" else "linear"
    return LayerInfo(spec.name, kind, weight_shape(spec), input_shape(spec), output_shape(spec),
                     tuple(spec.stride), tuple(spec.padding), tuple(spec.dilation),
                     int(spec.groups), bool(spec.extra.get("has_bias", True)))
