"""The tensors between a model's layers and what converting each between fp32 and int8 costs
(mapping.domains: the mappers add one conversion per tensor whose producer and consumers run
in different domains).

    tensors = model_tensors(model, (x,), specs)          # [TensorInfo]: producer, consumers
    conv = measure_conversions(tensors, table, target)   # mapping.Conversions, cached in table

The walk follows engine.quant.lower_int8's domains: a conv's fused chain (BatchNorm,
ReLU / ReLU6), max pooling, dropout and identities pass a tensor on in its domain; a residual add
right after a conv chain is fused into that conv (its other operand is then that conv's input
too); every other op (average pooling, flatten, concatenation, multiplications, the output)
runs fp32, so it is a float consumer of its inputs and its output is a float value. A tensor is
converted where a consumer reads it: after the max pool of a stem, at the pooled size. A linear
layer converts its own input and output (engine.runtime.qmodules.QLinear, timed with them): to
the walk it is a float op.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Optional

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from mapping import CostTable, Measurement
from mapping.domains import Conversions, Tensor

from ..errors import CaptureError
from ..runtime import native
from ..runtime.measure import measure as measure_stats
from ..runtime.qmodules import Dequantize, Quantize

_PASS = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.Dropout,
         nn.Identity)
_PASS_FN = {torch.relu, torch.nn.functional.relu, torch.nn.functional.relu6,
            torch.nn.functional.dropout, torch.nn.functional.max_pool2d}
_ADDS = (operator.add, operator.iadd, torch.add)


@dataclass
class TensorInfo:
    name: str
    producer: Optional[str]
    consumers: list
    shape: tuple                     # (N, C, H, W) at the conversion


def _is_pass(n: fx.Node, modules: dict) -> bool:
    if n.op == "call_module":
        return isinstance(modules.get(n.target), _PASS)
    if n.op == "call_function":
        return n.target in _PASS_FN
    return n.op == "call_method" and n.target in ("relu", "relu_")


def _is_add(n: fx.Node) -> bool:
    return ((n.op == "call_function" and n.target in _ADDS) or
            (n.op == "call_method" and n.target in ("add", "add_"))) and len(n.args) == 2 and \
        all(isinstance(a, fx.Node) for a in n.args)


class _Walk:
    def __init__(self, gm: fx.GraphModule, layers: set):
        self.gm, self.layers = gm, layers
        self.modules = dict(gm.named_modules())
        self.src: dict = {}          # node -> producing layer (None: float value)
        self.tensors: dict = {}      # node read by a consumer -> TensorInfo
        self.fused: dict = {}        # add node -> the conv it is fused into

    def read(self, node, consumer: Optional[str]) -> None:
        if not isinstance(node, fx.Node):
            return
        t = self.tensors.get(node)
        if t is None:
            meta = node.meta.get("tensor_meta")
            shape = tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()
            t = self.tensors[node] = TensorInfo(node.name, self.src.get(node), [], shape)
        if consumer not in t.consumers:
            t.consumers.append(consumer)

    def chain_end(self, layer: str, arg) -> bool:
        """Whether `arg` is layer's chain output with no activation (conv -> BN)."""
        cur = arg
        while isinstance(cur, fx.Node) and cur.op == "call_module" and \
                isinstance(self.modules.get(cur.target), nn.BatchNorm2d):
            cur = cur.args[0]
        return isinstance(cur, fx.Node) and cur.op == "call_module" and cur.target == layer

    def run(self) -> list:
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                self.src[n] = None
            elif n.op == "call_module" and n.target in self.layers:
                # an int8 linear layer is float in and out (QLinear): its conversions are in
                # its own time, so to its neighbours it is an fp32 op
                linear = isinstance(self.modules.get(n.target), nn.Linear)
                self.read(n.args[0], None if linear else n.target)
                self.src[n] = None if linear else n.target
            elif _is_pass(n, self.modules) and n.args and isinstance(n.args[0], fx.Node):
                self.src[n] = self.src.get(n.args[0])
            elif _is_add(n) and self._fuse(n):
                continue
            else:
                for a in n.all_input_nodes:
                    self.read(a, None)
                self.src[n] = None
        return [t for t in self.tensors.values() if t.shape and len(t.shape) == 4]

    def _fuse(self, n: fx.Node) -> bool:
        """An add fused into the conv producing one operand (lower_int8's residual)."""
        if n.args[0] is n.args[1]:
            return False
        for i, arg in enumerate(n.args):
            layer = self.src.get(arg)
            if layer is None or not self.chain_end(layer, arg) or len(arg.users) != 1:
                continue
            other = n.args[1 - i]
            self.read(other, layer)
            self.src[n] = layer
            return True
        return False


def model_tensors(model: nn.Module, example_inputs: tuple, specs: list) -> list:
    """[TensorInfo] between the layers of `specs` (module names), shapes at the example
    inputs; none for a model torch.fx cannot trace: its int8 layers are linears swapped in
    place (engine.quant.in_place), float in and out, their conversions in their own time."""
    from ..quant.calibrate import traced_copy
    try:
        gm = traced_copy(model, "model_tensors")
    except CaptureError:
        return []
    try:
        ShapeProp(gm).propagate(*example_inputs)
    except Exception as e:  # noqa: BLE001  (shape propagation runs the model's code)
        raise CaptureError(f"model_tensors: shape propagation failed: {type(e).__name__}: "
                           f"{e}") from e
    return _Walk(gm, {s.name for s in specs}).run()


def _shape_key(shape: tuple) -> str:
    return "convert:" + "x".join(str(int(v)) for v in shape)


def measure_conversions(tensors: list, table: CostTable, target: str,
                        threads: Optional[int] = None, min_time: float = 0.02,
                        profiler=None) -> Conversions:
    """mapping.Conversions of `tensors`: quantize (fp32 NCHW -> uint8 NCHW4) and dequantize
    measured once per tensor shape, cached in `table` under "convert:NxCxHxW": by the
    profiler's time_conversions when it has one (CompiledProfiler / RPCProfiler: as the
    artifact runs them), else on this host's kernels through the torch runtime."""
    todo = sorted({t.shape for t in tensors
                   if table.get(target, _shape_key(t.shape), "quantize") is None or
                   table.get(target, _shape_key(t.shape), "dequantize") is None})
    if todo:
        timed = getattr(profiler, "time_conversions", None)
        got = timed(todo) if timed is not None else _time_host(todo, threads, min_time)
        for shape, ms in got.items():
            for key, m in ms.items():
                table.put(target, _shape_key(shape), key, m)
        table.save()
    return Conversions(Tensor(t.name, t.producer, tuple(t.consumers),
                              table.latency(target, _shape_key(t.shape), "quantize"),
                              table.latency(target, _shape_key(t.shape), "dequantize"))
                       for t in tensors)


def _time_host(shapes: list, threads: Optional[int], min_time: float) -> dict:
    """{shape: {"quantize": Measurement, "dequantize": Measurement}} on this host's kernels."""
    k = native.lib()
    prev_k, prev_t = k.get_num_threads(), torch.get_num_threads()
    torch.set_num_threads(1)
    if threads is not None:
        k.set_num_threads(threads)
    out = {}
    try:
        for shape in shapes:
            x = torch.randn(shape)
            q, dq = Quantize(0.05, 128), Dequantize(shape[1], 0.05, 128)
            u = q.run_kernel(x)
            stats = measure_stats({"quantize": lambda: q.run_kernel(x),
                                   "dequantize": lambda: dq.run_kernel(u)},
                                  min_time=min_time, min_runs=6, stable_tol=0.05)
            out[shape] = {key: Measurement(s.median * 1e6, s.spread, s.runs, f"spe.v1.{key}",
                                           "host") for key, s in stats.items()}
    finally:
        torch.set_num_threads(prev_t)
        k.set_num_threads(prev_k)
    return out
