"""A calibrated model lowered onto the int8 kernels on this machine (host).

    cal = engine.quant.calibrate(model, batches)
    qm = engine.quant.lower_int8(model, cal)          # an fx.GraphModule: qm(x) -> float logits
    print(qm.int8_report)                              # which layers run int8, which stay fp32, why

Every conv the calibration covers (groups 1, or depthwise) runs as an int8 kernel layer
(QConv2d, QDepthwiseConv2d) with its BatchNorm folded and its activation (ReLU / ReLU6) fused;
a residual add that follows a groups-1 conv chain without an activation (ResNet's conv3 -> bn3
-> + identity -> ReLU) is fused into that conv's store with the ReLU after it, so the sum is
requantized once, at the ReLU's calibrated range. Max pooling of an int8 tensor stays int8.
A linear layer (ReLU / ReLU6 fused) runs as a QLinear: float in and out, quantized on its
input's grid, its rows the pixels of a 1x1 int8 conv (what reads and feeds a linear layer, a
flatten, GELU, softmax, layer norm, runs fp32 anyway; its residual add stays a float add).
Between int8 layers the tensors stay uint8 in the kernels' NCHW4 layout; a Quantize goes in
where a float tensor enters an int8 layer (its calibrated QParams) and a Dequantize where an
int8 tensor meets anything else, which runs in fp32: layers the kernels have no int8 form for
(grouped convs, activations they cannot fuse) and the layers named in
fp32_layers (by default the model's last conv / linear layer, the classifier: its quantization
costs the most accuracy for the least time). Those run on the kernels' fp32 modules where they
apply (BN folded, activation fused: the direct depthwise kernel, the packed dense GEMM), so an
artifact calls the kernels for them too. The report lists each layer with its domain and, for
fp32, the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Optional

import torch
from torch import fx, nn

from ..errors import ConfigError
from ..lowering.backends import build_layer
from ..lowering.host import fold_bn
from ..runtime.modules import DepthwiseConv2d, NativeMaxPool2d
from ..runtime.qmodules import (
    Dequantize,
    QConv2d,
    QDepthwiseConv2d,
    QLinear,
    QMaxPool2d,
    Quantize,
)
from .calibrate import (
    Calibration,
    check_calibrated,
    fused_chain,
    int8_max_pool,
    is_add,
    residual_add,
    residual_output,
    traced_copy,
)
from .native import qconv_of, qdepthwise_of
from .qparams import QParams
from .simulate import check_matches

_INT8_ACTS = (None, "relu", "relu6")


@dataclass
class _Value:
    node: fx.Node                  # in the new graph
    qp: Optional[QParams] = None   # None: float32; else uint8 NCHW4 with these QParams
    channels: int = 0


def _pair(v) -> tuple:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _last_layer(gm: fx.GraphModule, modules: dict) -> Optional[str]:
    last = None
    for n in gm.graph.nodes:
        if n.op == "call_module" and isinstance(modules.get(n.target), (nn.Conv2d, nn.Linear)):
            last = n.target
    return last


def _last_linear(model: nn.Module) -> Optional[str]:
    """The last nn.Linear in module order (no graph to say which runs last)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


class _Lowering:
    def __init__(self, gm: fx.GraphModule, cal: Calibration, rows, isa: str,
                 fp32: set, fp32_specs: dict, fp32_why: str):
        self.gm, self.cal, self.rows, self.isa, self.fp32 = gm, cal, rows, isa, fp32
        self.fp32_specs, self.fp32_why = fp32_specs, fp32_why
        self.modules = dict(gm.named_modules())
        self.graph = fx.Graph()
        self.env: dict = {}
        self.casts: dict = {}       # (old node, "f" or "q") -> _Value
        self.skip: set = set()
        self.report: dict = {}

    # -- domains
    def as_float(self, old: fx.Node) -> fx.Node:
        v = self.env[old]
        if v.qp is None:
            return v.node
        if (old, "f") not in self.casts:
            name = self._add(f"{old.name}_dequant",
                             Dequantize(v.channels, float(v.qp.scale), int(v.qp.zero_point),
                                        f"dequantize {old.name}"))
            self.casts[(old, "f")] = _Value(self.graph.call_module(name, (v.node,)))
        return self.casts[(old, "f")].node

    def as_u8(self, old: fx.Node, channels: int) -> fx.Node:
        v = self.env[old]
        if v.qp is not None:
            return v.node
        if (old, "q") not in self.casts:
            qp = self.cal.tensors.get(old.name)
            if qp is None:
                raise ConfigError(f"lower_int8: the calibration never saw tensor {old.name!r} "
                                  f"(calibrate this model)")
            name = self._add(f"{old.name}_quant", Quantize(float(qp.scale), int(qp.zero_point),
                                                           f"quantize {old.name}"))
            self.casts[(old, "q")] = _Value(self.graph.call_module(name, (v.node,)), qp, channels)
        return self.casts[(old, "q")].node

    def _add(self, base: str, module: nn.Module) -> str:
        name = base.replace(".", "_")
        while hasattr(self.gm, name):
            name += "_"
        self.gm.add_submodule(name, module)
        return name

    # -- nodes
    def int8_conv(self, n: fx.Node) -> Optional[str]:
        """None if n starts a conv chain the int8 kernels run, else why it stays fp32."""
        mod = self.modules[n.target]
        if n.target in self.fp32:
            return self.fp32_why
        if isinstance(mod, nn.Linear):
            return self.int8_linear(n)
        if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
            return (f"padding {mod.padding!r} / {mod.padding_mode!r}: the int8 kernels take "
                    f"explicit zero padding")
        if mod.groups != 1 and not self.depthwise(mod):
            return f"grouped conv (groups={mod.groups}): no int8 kernel"
        if n.target not in self.cal.layers:
            return "not calibrated"
        if self.cal.layers[n.target].act not in _INT8_ACTS:
            return f"activation {self.cal.layers[n.target].act} is not fused by the int8 kernels"
        return None

    def int8_linear(self, n: fx.Node) -> Optional[str]:
        if n.target not in self.cal.layers:
            return "not calibrated"
        if len(n.args) != 1 or n.kwargs:
            return "called with more than its input"
        if self.cal.layers[n.target].act not in _INT8_ACTS:
            return f"activation {self.cal.layers[n.target].act} is not fused by the int8 kernels"
        return None

    def linear(self, n: fx.Node) -> None:
        """An int8 linear layer (QLinear): float in, float out, its activation fused."""
        chain, _, act = fused_chain(n, self.modules)
        lq, mod = self.cal.layers[n.target], self.modules[n.target]
        check_matches(lq, mod, None, act, self.modules, "lower_int8")
        rows = self.rows.get(n.target, 4) if isinstance(self.rows, dict) else self.rows
        layer = qconv_of(mod, lq, rows=rows, isa=self.isa, input_layout="nchw4",
                         output_layout="nchw4")
        name = self._add(f"{n.target}_int8", QLinear(layer))
        self.env[chain[-1]] = _Value(self.graph.call_module(name, (self.as_float(n.args[0]),)))
        self.report[n.target] = "int8 (float in and out)"
        self.skip.update(chain)

    @staticmethod
    def depthwise(mod: nn.Conv2d) -> bool:
        return mod.groups == mod.in_channels == mod.out_channels and \
            mod.padding_mode == "zeros" and not isinstance(mod.padding, str)

    def conv(self, n: fx.Node) -> None:
        if isinstance(self.modules[n.target], nn.Linear):
            self.linear(n)
            return
        chain, bn, act = fused_chain(n, self.modules)
        lq, mod = self.cal.layers[n.target], self.modules[n.target]
        check_matches(lq, mod, bn, act, self.modules, "lower_int8")
        if mod.groups != 1:   # depthwise: the int8 depthwise kernel, NCHW4
            x = self.as_u8(n.args[0], mod.in_channels)
            x_qp = self.env[n.args[0]].qp or self.casts[(n.args[0], "q")].qp
            layer = qdepthwise_of(mod, replace(lq, input=x_qp), isa=self.isa)
            name = self._add(f"{n.target}_int8", QDepthwiseConv2d(layer))
            self.env[chain[-1]] = _Value(self.graph.call_module(name, (x,)), lq.output,
                                         mod.out_channels)
            self.report[n.target] = "int8"
            self.skip.update(chain)
            return
        self.skip.update(chain)
        add = residual_add(chain, act, mod, self.cal, self.pending)
        if add is not None:
            # fused into the add: emitted there (the other operand may come later in the graph)
            self.pending[add] = (n, chain, lq, mod)
            return
        self._emit_conv(n, lq, mod, None, chain[-1], lq.output, act)

    def _emit_conv(self, n: fx.Node, lq, mod: nn.Conv2d, res: Optional[_Value], out: fx.Node,
                   out_qp: QParams, act: Optional[str]) -> None:
        x = self.as_u8(n.args[0], mod.in_channels)
        # the codes arriving may carry another tensor's QParams (a max pool keeps its input's)
        x_qp = self.env[n.args[0]].qp or self.casts[(n.args[0], "q")].qp
        rows = self.rows.get(n.target, 4) if isinstance(self.rows, dict) else self.rows
        layer = qconv_of(mod, replace(lq, input=x_qp, output=out_qp, act=act), rows=rows,
                         isa=self.isa, residual=None if res is None else res.qp,
                         input_layout="nchw4", output_layout="nchw4")
        name = self._add(f"{n.target}_int8", QConv2d(layer, {
            k: tuple(getattr(mod, k)) for k in ("stride", "padding", "dilation")}))
        args = (x,) + (() if res is None else (res.node,))
        self.env[out] = _Value(self.graph.call_module(name, args), out_qp, mod.out_channels)
        self.report[n.target] = "int8" + (" (residual add fused)" if res is not None else "")

    def add_node(self, n: fx.Node) -> bool:
        """The add a conv chain was deferred to: conv + residual (+ ReLU) as one int8 layer."""
        if n not in self.pending:
            return False
        conv, chain, lq, mod = self.pending.pop(n)
        other = n.args[1] if n.args[0] is chain[-1] else n.args[0]
        self.as_u8(other, mod.out_channels)
        res = self.env[other] if self.env[other].qp is not None else self.casts[(other, "q")]
        out, act = residual_output(n, self.modules)
        if out is not n:
            self.skip.add(out)
        if out.name not in self.cal.tensors:
            raise ConfigError(f"lower_int8: the calibration never saw tensor {out.name!r}")
        self._emit_conv(conv, lq, mod, res, out, self.cal.tensors[out.name], act)
        return True

    def fp32_layer(self, n: fx.Node, why: str) -> bool:
        """A conv / linear chain kept fp32 on the kernels' fp32 modules (BN folded, activation
        fused: the depthwise kernel, the packed dense GEMM), so it is native in artifacts too;
        False where those do not take it (it then runs as in the model)."""
        mod = self.modules[n.target]
        chain, bn, act = fused_chain(n, self.modules)
        w, b = mod.weight.detach(), None if mod.bias is None else mod.bias.detach()
        if bn is not None:
            w, b = fold_bn(w, b, self.modules[bn])
        if isinstance(mod, nn.Conv2d) and DepthwiseConv2d.supports(mod):
            spec = {n.target: 1}
        elif isinstance(mod, nn.Linear) or (isinstance(mod, nn.Conv2d) and mod.groups == 1):
            spec = {n.target: self.fp32_specs.get(n.target, ("dense", "gemm"))}
        else:
            return False
        try:
            new = build_layer(mod, n.target, w, b, act or "none", spec, self.isa)
        except Exception as e:  # noqa: BLE001  (the model's own module then: said in the report)
            self.report[n.target] = f"{why}; on torch ({type(e).__name__}: {e})"[:300]
            return False
        name = self._add(f"{n.target}_fp32", new)
        self.env[chain[-1]] = _Value(self.graph.call_module(name, (self.as_float(n.args[0]),)))
        self.skip.update(chain)
        return True

    def maxpool(self, n: fx.Node) -> bool:
        mod = self.modules[n.target]
        v = self.env.get(n.args[0]) if isinstance(n.args[0], fx.Node) else None
        if v is not None and v.qp is None and NativeMaxPool2d.supports(mod):
            # a float max pool on the native kernel (torch's is up to 10x slower at 1 thread)
            name = self._add(f"{n.target}_fp32", NativeMaxPool2d(
                _pair(mod.kernel_size), _pair(mod.stride or mod.kernel_size), _pair(mod.padding)))
            self.env[n] = _Value(self.graph.call_module(name, (v.node,)))
            return True
        if v is None or v.qp is None or not int8_max_pool(mod):
            return False
        name = self._add(f"{n.target}_int8", QMaxPool2d(v.channels, mod.kernel_size, mod.stride,
                                                        mod.padding, n.target))
        self.env[n] = _Value(self.graph.call_module(name, (v.node,)), v.qp, v.channels)
        return True

    def run(self) -> fx.GraphModule:
        self.pending: dict = {}
        for n in self.gm.graph.nodes:
            if n in self.skip:
                continue
            if n.op == "placeholder":
                self.env[n] = _Value(self.graph.placeholder(n.target))
                continue
            if n.op == "call_module" and isinstance(self.modules.get(n.target), (nn.Conv2d, nn.Linear)):
                why = self.int8_conv(n)
                if why is None:
                    self.conv(n)
                    continue
                self.report[n.target] = f"fp32: {why}"
                if len(n.args) == 1 and not n.kwargs and self.fp32_layer(n, f"fp32: {why}"):
                    continue
            elif is_add(n) and self.add_node(n):
                continue
            elif n.op == "call_module" and isinstance(self.modules.get(n.target), nn.MaxPool2d) \
                    and self.maxpool(n):
                continue
            if n.op == "output":
                self.graph.output(fx.map_arg(n.args[0], self.as_float))
                continue
            new = self.graph.node_copy(n, self.as_float)
            self.env[n] = _Value(new)
        gm = fx.GraphModule(self.gm, self.graph)
        gm.int8_report = dict(self.report)
        return gm.eval()


def lower_int8(model: nn.Module, cal: Calibration, *, rows=4, isa: str = "auto",
               fp32_layers: Optional[Iterable[str]] = None,
               fp32_specs: Optional[dict] = None,
               fp32_reason: Optional[str] = None) -> fx.GraphModule:
    """The model on the int8 kernels (see the module doc); fp32_layers: conv / linear layers to
    keep in fp32 (None: the last one, the classifier). rows: the int8 SpMM's group height, one
    for all or layer -> rows (default 4). fp32_specs: layer -> the fp32 backend of a layer
    kept fp32 (engine.lowering's spec: group rows of the sparse kernel, ("dense", algo),
    ("tir", rows)); default the packed dense GEMM (the model's masked weights as they are).
    fp32_reason: what the report says of the fp32_layers (default: that they were asked for,
    or that the classifier stays fp32 by default)."""
    if not cal.traced:       # a model torch.fx cannot trace: its linears in place
        from .in_place import lower_in_place
        fp32 = set(fp32_layers) if fp32_layers is not None else {_last_linear(model)}
        why = fp32_reason or ("kept fp32 (fp32_layers)" if fp32_layers is not None else
                              "kept fp32 (fp32_layers: the classifier by default)")
        return lower_in_place(model, cal, rows, isa, fp32, dict(fp32_specs or {}), why)
    gm = traced_copy(model, "lower_int8")
    modules = dict(gm.named_modules())
    check_calibrated(gm, cal, "lower_int8")
    fp32 = set(fp32_layers) if fp32_layers is not None else {_last_layer(gm, modules)}
    why = fp32_reason or ("kept fp32 (fp32_layers)" if fp32_layers is not None else
                          "kept fp32 (fp32_layers: the classifier by default)")
    unknown = sorted(f for f in fp32 if f is not None and f not in modules)
    if unknown:
        raise ConfigError(f"lower_int8: fp32_layers names no layer of this model: {unknown}")
    with torch.no_grad():
        return _Lowering(gm, cal, rows, isa, fp32, dict(fp32_specs or {}), why).run()
