"""Per-layer backend choice by measurement: generated TIR vs the C++ kernel vs dense, on the host.

    t = measure_backends(weight, in_shape, stride=1, padding=1, rows=4)
    t.times      # {"tir": s, "native": s, "torch": s}   medians of one interleaved run
    t.backend    # "tir" | "native" | "torch": what the plan should record
    t.reason     # "tir 2.31x vs dense (native 2.05x)"

Rule (explicit, logged in `reason`): the faster sparse backend wins if it is at least
`min_speedup` x faster than dense; otherwise "torch" (the layer stays dense). Candidates are
timed interleaved in one run (engine.runtime.measure.compare, one untimed call before each
block so the previous runtime's spinning threads go idle): compare the ratios, not absolute
times across runs. All three are checked against F.conv2d / F.linear on the masked weight
before timing, so a fast wrong kernel cannot win.

Optional candidate "tir_dense": the generated kernel on the dense weight, i.e. what a layer kept
dense costs in a compiled model (its dense baseline there, where torch does not run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..runtime.measure import compare
from ..runtime.packing import group_rows_for, pack
from . import targets as _targets
from ._tvm import tvm
from .geometry import ConvGeometry
from .rowgroups import RowGroups
from .spmm_tir import Kernel, conv_kernel, linear_kernel

SPARSE = ("tir", "native")
ALL = ("tir", "native", "torch", "tir_dense")


@dataclass
class BackendTiming:
    """One layer's measured backends and the choice the rule made."""

    layer: str
    times: dict                   # backend -> median seconds
    backend: str                  # "tir" | "native" | "torch"
    reason: str
    kernels: dict = field(default_factory=dict)   # backend -> kernel name
    density: float = 1.0

    def speedup(self, backend: str, over: str = "torch") -> Optional[float]:
        if backend in self.times and over in self.times:
            return self.times[over] / self.times[backend]
        return None


class HostKernel:
    """A generated kernel compiled for the host, callable on numpy arrays."""

    def __init__(self, kernel: Kernel, target="host"):
        tgt = _targets.tvm_target(_targets.as_target(target))
        self.kernel = kernel
        self.executable = tvm.compile(kernel.prim_func(), target=tgt)
        self.func = self.executable[kernel.name]
        self.tables = [tvm.runtime.tensor(np.ascontiguousarray(t)) for t in kernel.tables]
        self.out = tvm.runtime.tensor(np.zeros(kernel.out_shape, np.float32))

    def bind(self, x: np.ndarray, residual: Optional[np.ndarray] = None):
        """A zero-argument callable running the kernel on x (converted once)."""
        args = [tvm.runtime.tensor(np.ascontiguousarray(x, np.float32))] + self.tables
        if self.kernel.has_residual:
            if residual is None:
                raise ValueError("this kernel adds a residual: pass one")
            args.append(tvm.runtime.tensor(np.ascontiguousarray(residual, np.float32)))
        args.append(self.out)
        func = self.func
        return lambda: func(*args)

    def result(self) -> np.ndarray:
        return self.out.numpy()


def build_tir(weight: np.ndarray, in_shape: tuple, *, rows: int, stride=1, padding=0,
              dilation=1, bias=None, act: str = "none", dense: bool = False, target="host",
              name: str = "layer") -> HostKernel:
    """The generated kernel for one conv (4-D weight) or linear (2-D weight) layer."""
    w = np.asarray(weight, np.float32)
    tgt = _targets.as_target(target)
    isa = _targets.vector_isa(_targets.tvm_target(tgt))
    rg = RowGroups.dense(w, rows) if dense else RowGroups.sparse(w, group_rows_for(rows))
    if w.ndim == 4:
        geom = ConvGeometry.of(w.shape[1], in_shape[2], in_shape[3], w.shape[2:], stride,
                               padding, dilation)
        k = conv_kernel(name, geom, rg, isa, batch=in_shape[0], bias=bias, act=act)
    else:
        k = linear_kernel(name, rg, isa, batch=in_shape[0], bias=bias, act=act)
    return HostKernel(k, tgt)


def _native(w: np.ndarray, rows: int, stride, padding, dilation, bias, act):
    from .. import _kernels
    p = pack(w, group_rows_for(rows))
    pair = (lambda v: tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v)))
    return _kernels.SparseConv(p.out_channels, p.in_channels, p.kernel, pair(stride),
                               pair(padding), pair(dilation), p.group_row0, p.group_rows,
                               p.group_ptr, p.entry_col, p.values,
                               None if bias is None else np.asarray(bias, np.float32), act,
                               "auto")


def _act(y: torch.Tensor, act: str) -> torch.Tensor:
    return F.relu(y) if act == "relu" else F.relu6(y) if act == "relu6" else y


def measure_backends(weight, in_shape: Sequence[int], *, stride=1, padding=0, dilation=1,
                     rows: int = 4, bias=None, act: str = "none", layer: str = "",
                     backends: Sequence[str] = ("tir", "native", "torch"),
                     min_speedup: float = 1.1, min_time: float = 0.05, seed: int = 0,
                     target="host", rtol: float = 1e-4) -> BackendTiming:
    """Time the backends for one pruned layer (weight: the masked conv (O, C, kh, kw) or
    linear (O, K) weight; in_shape: its input shape) on this machine; see the module doc."""
    for b in backends:
        if b not in ALL:
            raise ConfigError(f"unknown backend {b!r}; known: {ALL}")
    if not any(b in SPARSE for b in backends):
        raise ConfigError(f"measure at least one sparse backend of {SPARSE}")
    w = weight.detach().float().cpu().numpy() if isinstance(weight, torch.Tensor) else \
        np.asarray(weight, np.float32)
    if w.ndim not in (2, 4):
        raise ConfigError(f"weight must be 2-D (linear) or 4-D (conv), got shape {w.shape}")
    b = None if bias is None else (bias.detach().float().numpy() if isinstance(bias, torch.Tensor)
                                   else np.asarray(bias, np.float32))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(int(d) for d in in_shape), generator=g)
    wt, bt = torch.from_numpy(w), None if b is None else torch.from_numpy(b)
    conv = w.ndim == 4
    if conv:
        def dense_fn(weight_t):
            return lambda: _act(F.conv2d(x, weight_t, bt, stride, padding, dilation), act)
    else:
        def dense_fn(weight_t):
            return lambda: _act(F.linear(x, weight_t, bt), act)
    ref = dense_fn(wt)().numpy()
    xn = x.numpy()
    cands, kernels, checks = {}, {}, {}
    if "tir" in backends:
        hk = build_tir(w, xn.shape, rows=rows, stride=stride, padding=padding,
                       dilation=dilation, bias=b, act=act, target=target, name="tir_sparse")
        cands["tir"] = hk.bind(xn)
        kernels["tir"] = hk.kernel.label
        checks["tir"] = hk.result
        density = hk.kernel.stats["density"]
    if "tir_dense" in backends:
        hd = build_tir(w, xn.shape, rows=4 if conv else 16, stride=stride, padding=padding,
                       dilation=dilation, bias=b, act=act, dense=True, target=target,
                       name="tir_dense")
        cands["tir_dense"] = hd.bind(xn)
        kernels["tir_dense"] = hd.kernel.label
        checks["tir_dense"] = hd.result
    if "native" in backends:
        if conv:
            nk = _native(w, rows, stride, padding, dilation, b, act)
            cands["native"] = lambda: nk.run(xn)
            checks["native"] = lambda: nk.run(xn)
        else:  # features as channels, batch rows as pixels (engine.runtime.modules.SparseLinear)
            nk = _native(w[:, :, None, None], rows, 1, 0, 1, b, act)
            xk = np.ascontiguousarray(xn.T).reshape(1, xn.shape[1], 1, xn.shape[0])
            cands["native"] = lambda: nk.run(xk)
            checks["native"] = lambda: nk.run(xk).reshape(w.shape[0], -1).T
        kernels["native"] = nk.kernel_name
        if "tir" not in backends:
            density = nk.nnz / w.size
    if "torch" in backends:
        cands["torch"] = dense_fn(wt)
        kernels["torch"] = "F.conv2d" if conv else "F.linear"
    for name, fn in checks.items():
        if name != "native":
            cands[name]()
        got = np.asarray(fn())
        scale = max(1.0, float(np.abs(ref).max()))
        err = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
        if not err <= rtol * scale:
            raise AssertionError(f"{layer or 'layer'}: backend {name} differs from torch "
                                 f"(max abs err {err:.3g}, scale {scale:.3g})")
    with torch.no_grad():
        times = compare(cands, min_time=min_time, min_runs=5, block=3)
    backend, reason = choose_backend(times, min_speedup)
    return BackendTiming(layer, times, backend, reason, kernels, density)


def choose_backend(times: dict, min_speedup: float = 1.1) -> tuple:
    """(backend, reason) by the rule in the module doc; dense = torch, else tir_dense."""
    sparse = {b: t for b, t in times.items() if b in SPARSE}
    best = min(sparse, key=sparse.get)
    dense_name = "torch" if "torch" in times else ("tir_dense" if "tir_dense" in times else None)
    others = ", ".join(f"{b} {times[dense_name] / t:.2f}x" if dense_name else f"{b} {t * 1e6:.0f}us"
                       for b, t in sparse.items() if b != best)
    tail = f" ({others})" if others else ""
    if dense_name is None:
        return best, f"{best} fastest sparse backend{tail}"
    speedup = times[dense_name] / sparse[best]
    if speedup < min_speedup:
        return "torch", (f"kept dense: best sparse {best} {speedup:.2f}x vs {dense_name} "
                         f"(needs >= {min_speedup:.2f}x){tail}")
    return best, f"{best} {speedup:.2f}x vs {dense_name}{tail}"


def measure_layer(model: torch.nn.Module, info, rows: int = 4,
                  mask: Optional[torch.Tensor] = None, **kw) -> BackendTiming:
    """measure_backends for an engine.graph.layers.LayerInfo of `model` (weight masked by
    `mask` when given; groups must be 1)."""
    from ..graph.layers import get_module
    mod = get_module(model, info.name)
    if getattr(info, "groups", 1) != 1:
        raise ConfigError(f"{info.name}: grouped / depthwise convs have no sparse backend")
    w = mod.weight.detach().float()
    if mask is not None:
        w = w * mask.to(w.dtype)
    b = mod.bias.detach().float() if getattr(mod, "bias", None) is not None else None
    if info.kind == "conv":
        kw.setdefault("stride", tuple(info.stride))
        kw.setdefault("padding", tuple(info.padding))
        kw.setdefault("dilation", tuple(info.dilation))
    in_shape = info.in_shape if info.kind == "conv" else (
        int(np.prod(info.in_shape[:-1])), info.in_shape[-1])
    return measure_backends(w, in_shape, rows=rows, bias=b, layer=info.name, **kw)


def measure_layers(model, layers: Sequence, masks: dict, rows: Union[int, dict] = 4,
                   **kw) -> dict:
    """measure_layer over several layers: name -> BackendTiming (masks: name -> bool mask)."""
    out = {}
    for info in layers:
        if info.name not in masks:
            continue
        r = rows[info.name] if isinstance(rows, dict) else rows
        out[info.name] = measure_layer(model, info, r, masks[info.name], **kw)
    return out
