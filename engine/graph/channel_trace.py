"""The walk behind dependency.build_groups: the channels every traced tensor carries, followed
through the graph as union-find elements (dependency.py's docstring says what each op does).
"""
from __future__ import annotations

import math
import operator
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata
from torch.nn.modules.batchnorm import _BatchNorm


class DisjointSets:
    """Union-find over 0..n-1; a union keeps the smaller root (the earlier element)."""

    def __init__(self, n: int = 0) -> None:
        self.parent: list[int] = list(range(n))

    def __len__(self) -> int:
        return len(self.parent)

    def add(self, n: int) -> list[int]:
        """`n` new singleton sets; their elements."""
        start = len(self.parent)
        elems = list(range(start, start + n))
        self.parent.extend(elems)
        return elems

    def find(self, e: int) -> int:
        while self.parent[e] != e:
            self.parent[e] = self.parent[self.parent[e]]
            e = self.parent[e]
        return e

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class _Chans(NamedTuple):
    """The elements along a traced tensor's channel dimension `cdim`."""

    elems: list[int]
    cdim: int


_PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU,
                 nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Identity,
                 nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample)
_PASS_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.hardtanh, F.leaky_relu,
                   F.elu, F.silu, F.gelu, F.hardswish, F.hardsigmoid, torch.sigmoid, F.sigmoid,
                   torch.tanh, F.dropout, F.dropout2d, F.max_pool2d, F.avg_pool2d,
                   F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.interpolate}
_PASS_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous", "clone"}
_ELEMENTWISE = {operator.add, operator.iadd, operator.sub, operator.isub, operator.mul,
                operator.imul, operator.truediv, operator.itruediv,
                torch.add, torch.sub, torch.mul, torch.div,
                "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_CAT = {torch.cat, torch.concat, torch.concatenate}
_FLATTEN = {torch.flatten, "flatten"}
_RESHAPE = {torch.reshape, "view", "reshape"}
_REDUCE = {torch.mean, torch.sum, "mean", "sum"}
_SHAPE_QUERIES = {"size", "dim", getattr}  # read the shape only: never couple channels


def _shape(node) -> Optional[tuple]:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if isinstance(meta, TensorMetadata) else None


def _arg(node: fx.Node, pos: int, key: str, default=None):
    if len(node.args) > pos:
        return node.args[pos]
    return node.kwargs.get(key, default)


def _op_name(node: fx.Node) -> str:
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


class ChannelTrace:
    """One pass over the traced graph (dependency.py's docstring says what each op does to the
    channels); afterwards: producers, produced, owner, reasons, uses and find() describe them."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.elements = DisjointSets()
        self.owner: list[int] = []             # element -> producer id
        self.producers: list[str] = []         # producer id -> module name or pseudo name
        self.produced: dict[str, list[int]] = {}
        self.reasons: list[list[str]] = []     # producer id -> why its group is not prunable
        self.uses: dict[tuple[str, int], tuple[str, list[int]]] = {}
        self.values: dict[fx.Node, Optional[_Chans]] = {}

    # -- elements ------------------------------------------------------------------------------
    def find(self, e: int) -> int:
        """The representative element of `e`'s channel."""
        return self.elements.find(e)

    def _union(self, a: int, b: int) -> None:
        self.elements.union(a, b)

    def _producer(self, name: str, n: int, reason: Optional[str] = None) -> list[int]:
        """The `n` output elements of producer `name` (the same ones if it runs twice)."""
        if name in self.produced:
            return self.produced[name]
        pid = len(self.producers)
        self.producers.append(name)
        self.reasons.append([reason] if reason else [])
        elems = self.elements.add(n)
        self.owner.extend([pid] * n)
        self.produced[name] = elems
        return elems

    def _opaque(self, node: fx.Node, reason: str) -> Optional[_Chans]:
        """Fresh, not prunable channels for a tensor we cannot follow (cdim 1 when ndim >= 2)."""
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            return None
        return _Chans(self._producer(f"op:{node.name}", shape[1], reason), 1)

    def _block(self, elems: list[int], reason: str) -> None:
        for pid in {self.owner[e] for e in elems}:
            if reason not in self.reasons[pid]:
                self.reasons[pid].append(reason)

    def _use(self, module: str, dim: int, role: str, elems: list[int]) -> None:
        """Record that `module`'s weight dim `dim` carries `elems` (a shared module: union)."""
        key = (module, dim)
        if key in self.uses:
            for a, b in zip(self.uses[key][1], elems):
                self._union(a, b)
        else:
            self.uses[key] = (role, list(elems))

    def _input(self, node: fx.Node, arg, n: int, cdim: int, what: str) -> list[int]:
        """Elements of `arg` as layer input with `n` channels on `cdim`; opaque if it does not
        match (the mismatched channels are blocked, the layer gets fresh blocked ones)."""
        chans = self.values.get(arg) if isinstance(arg, fx.Node) else None
        if chans is not None and chans.cdim == cdim and len(chans.elems) == n:
            return chans.elems
        reason = f"{what}: input channel layout not understood"
        if chans is not None:
            self._block(chans.elems, reason)
        return self._producer(f"op:{node.name}:in", n, reason)

    # -- graph walk ----------------------------------------------------------------------------
    def run(self) -> "ChannelTrace":
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                shape = _shape(node)
                self.values[node] = (_Chans(self._producer(f"input:{node.name}", shape[1],
                                                           "model input"), 1)
                                     if shape is not None and len(shape) >= 2 else None)
            elif node.op == "get_attr":
                self.values[node] = None   # constants: checked where they meet channels
            elif node.op == "call_module":
                self.values[node] = self._module(node, self.modules[node.target])
            elif node.op in ("call_function", "call_method"):
                self.values[node] = self._function(node)
            elif node.op == "output":
                for n in self._tracked_inputs(node):
                    self._block(self.values[n].elems, "reaches the model output")
        return self

    def _tracked_inputs(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), found.append)
        return [n for n in found if self.values.get(n) is not None]

    def _module(self, node: fx.Node, m: nn.Module) -> Optional[_Chans]:
        name = node.target
        x = node.args[0] if node.args else None
        if isinstance(m, nn.Conv2d):
            elems = self._input(node, x, m.in_channels, 1, f"conv {name}")
            if m.groups == 1:
                self._use(name, 1, "consumer", elems)
                out = self._producer(name, m.out_channels)
                self._use(name, 0, "producer", out)
            elif m.groups == m.in_channels:   # depthwise, output j reads input j // k
                k = m.out_channels // m.groups
                out = [e for e in elems for _ in range(k)]
                self._use(name, 0, "depthwise", out)
            else:
                reason = f"grouped conv {name} (groups={m.groups}) is not supported"
                self._block(elems, reason)
                out = self._producer(name, m.out_channels, reason)
            return _Chans(out, 1)
        if isinstance(m, nn.Linear):
            shape = _shape(x) or (0,)
            elems = self._input(node, x, m.in_features, len(shape) - 1, f"linear {name}")
            self._use(name, 1, "consumer", elems)
            out = self._producer(name, m.out_features)
            self._use(name, 0, "producer", out)
            return _Chans(out, len(_shape(node) or (0, 0)) - 1)
        if isinstance(m, _BatchNorm):
            elems = self._input(node, x, m.num_features, 1, f"batchnorm {name}")
            self._use(name, 0, "norm", elems)
            return _Chans(elems, 1)
        if isinstance(m, _PASS_MODULES):
            return self._pass_through(node, f"{type(m).__name__} {name}")
        if isinstance(m, nn.Flatten):
            return self._flatten(node, m.start_dim, m.end_dim)
        return self._unknown(node, f"unsupported module {name} ({type(m).__name__})")

    def _function(self, node: fx.Node) -> Optional[_Chans]:
        t = node.target
        if t in _SHAPE_QUERIES and _shape(node) is None:
            return None
        if t in _PASS_FUNCTIONS or t in _PASS_METHODS:
            return self._pass_through(node, _op_name(node))
        if t in _ELEMENTWISE:
            return self._elementwise(node)
        if t in _CAT:
            return self._cat(node)
        if t in _FLATTEN:
            return self._flatten(node, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))
        if t in _RESHAPE:
            return self._reshape(node)
        if t in _REDUCE:
            return self._reduce(node)
        if t is operator.getitem:
            return self._getitem(node)
        return self._unknown(node, f"unsupported op {_op_name(node)!r} ({node.name})")

    def _unknown(self, node: fx.Node, reason: str) -> Optional[_Chans]:
        tracked = self._tracked_inputs(node)
        for n in tracked:
            self._block(self.values[n].elems, reason)
        if not tracked and _shape(node) is None:
            return None
        return self._opaque(node, reason)

    # -- op handlers ---------------------------------------------------------------------------
    def _pass_through(self, node: fx.Node, what: str) -> Optional[_Chans]:
        """One tensor in, same channels out (shape on other dims may change)."""
        x = node.args[0] if node.args else None
        chans = self.values.get(x) if isinstance(x, fx.Node) else None
        others = [n for n in self._tracked_inputs(node) if n is not x]
        shape, in_shape = _shape(node), _shape(x)
        if chans is None and not others:
            return None
        if (others or shape is None or in_shape is None or len(shape) != len(in_shape)
                or shape[chans.cdim] != in_shape[chans.cdim]):
            return self._unknown(node, f"{what} ({node.name}) changes the channel layout")
        return chans

    def _elementwise(self, node: fx.Node) -> Optional[_Chans]:
        out = _shape(node)
        operands = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]
        tracked = [a for a in operands if self.values.get(a) is not None]
        if not tracked:
            return None
        what = f"{_op_name(node)} ({node.name})"
        if out is None:
            return self._unknown(node, f"{what}: result is not a tensor")
        # Broadcasting aligns trailing dims: operand dim d sits at output dim d + (ndim_out - ndim).
        cdims = {len(out) - len(_shape(a)) + self.values[a].cdim for a in tracked}
        if len(cdims) != 1:
            return self._unknown(node, f"{what}: operands' channel dims disagree")
        cdim = cdims.pop()
        joined: Optional[list[int]] = None
        for a in operands:
            shape = _shape(a)
            if shape is None:
                continue
            d = cdim - (len(out) - len(shape))
            size = shape[d] if 0 <= d < len(shape) else 1
            chans = self.values.get(a)
            if chans is None:
                if size != 1:   # a per-channel constant or opaque tensor: cannot be sliced
                    return self._unknown(node, f"{what}: operand {a.name} is per-channel "
                                               f"but not produced by a prunable layer")
                continue
            if size == 1 and out[cdim] != 1:
                continue        # broadcast over channels: no coupling
            if joined is None:
                joined = chans.elems
            else:
                for x, y in zip(joined, chans.elems):
                    self._union(x, y)
        return _Chans(joined, cdim) if joined is not None else None

    def _cat(self, node: fx.Node) -> Optional[_Chans]:
        tensors = _arg(node, 0, "tensors", [])
        out = _shape(node)
        what = f"cat ({node.name})"
        parts = [self.values.get(t) if isinstance(t, fx.Node) else None for t in tensors]
        if out is None or not parts:
            return self._unknown(node, f"{what}: result is not a tensor")
        if any(p is None for p in parts):
            if all(p is None for p in parts):
                return None
            return self._unknown(node, f"{what}: mixes prunable and opaque tensors")
        cdim = parts[0].cdim
        dim = _arg(node, 1, "dim", 0) % len(out)
        if any(p.cdim != cdim for p in parts):
            return self._unknown(node, f"{what}: inputs' channel dims disagree")
        if dim == cdim:
            return _Chans([e for p in parts for e in p.elems], cdim)
        for p in parts[1:]:     # stacked along another dim: same channel positions, coupled
            for x, y in zip(parts[0].elems, p.elems):
                self._union(x, y)
        return _Chans(parts[0].elems, cdim)

    def _flatten(self, node: fx.Node, start: int, end: int) -> Optional[_Chans]:
        x = node.args[0]
        chans, shape = self.values.get(x), _shape(x)
        if chans is None:
            return None
        if shape is None:
            return self._unknown(node, f"flatten ({node.name}) of an unknown shape")
        return self._merge_dims(chans, shape, start % len(shape), end % len(shape))

    @staticmethod
    def _merge_dims(chans: _Chans, shape: tuple, start: int, end: int) -> _Chans:
        """Channels after merging dims start..end of `shape` into one (NCHW flatten: each
        channel becomes H*W consecutive features)."""
        c = chans.cdim
        if c < start:
            return chans
        if c > end:
            return _Chans(chans.elems, c - (end - start))
        outer = math.prod(shape[start:c])
        inner = math.prod(shape[c + 1:end + 1])
        elems = [e for _ in range(outer) for e in chans.elems for _ in range(inner)]
        return _Chans(elems, start)

    def _reshape(self, node: fx.Node) -> Optional[_Chans]:
        """view / reshape that amount to a flatten of consecutive dims; anything else blocks."""
        x = node.args[0]
        chans, shape, out = self.values.get(x), _shape(x), _shape(node)
        if chans is None:
            return None
        if shape is not None and out is not None:
            if shape == out:
                return chans
            for start in range(len(shape)):
                for end in range(start + 1, len(shape)):
                    merged = shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
                    if merged == out:
                        return self._merge_dims(chans, shape, start, end)
        return self._unknown(node, f"{_op_name(node)} ({node.name}) reshapes channels")

    def _reduce(self, node: fx.Node) -> Optional[_Chans]:
        """mean / sum over non-channel dims keep the channels."""
        x = node.args[0]
        chans, shape = self.values.get(x), _shape(x)
        if chans is None:
            return None
        dims = _arg(node, 1, "dim", None)
        keepdim = bool(_arg(node, 2, "keepdim", False))
        if shape is None or _shape(node) is None or dims is None:
            return self._unknown(node, f"{_op_name(node)} ({node.name}) reduces over channels")
        dims = {d % len(shape) for d in ((dims,) if isinstance(dims, int) else dims)}
        if chans.cdim in dims:
            return self._unknown(node, f"{_op_name(node)} ({node.name}) reduces over channels")
        return _Chans(chans.elems,
                      chans.cdim if keepdim else chans.cdim - sum(d < chans.cdim for d in dims))

    def _getitem(self, node: fx.Node) -> Optional[_Chans]:
        """x[..., :n, ...] keeping every channel (GhostNet's out[:, :oup] after its concat):
        the channels pass through, and the bound still covers them all once some are pruned.
        A slice that drops channels, or any other index, blocks them."""
        x, index = node.args[0], node.args[1]
        chans, shape = self.values.get(x), _shape(x)
        if chans is None:
            return None
        index = index if isinstance(index, tuple) else (index,)
        full = slice(None)
        if (shape is not None and len(index) > chans.cdim and _shape(node) is not None
                and all(i == full for d, i in enumerate(index) if d != chans.cdim)
                and _keeps_all(index[chans.cdim], shape[chans.cdim])):
            return chans
        return self._unknown(node, f"getitem ({node.name}) selects channels")


def _keeps_all(index, size: int) -> bool:
    """A slice from 0 with step 1 whose stop reaches `size` (or is open)."""
    return (isinstance(index, slice) and index.start in (None, 0) and index.step in (None, 1)
            and (index.stop is None or (isinstance(index.stop, int) and index.stop >= size)))
