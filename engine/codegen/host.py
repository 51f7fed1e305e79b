"""Generated TIR kernels as torch modules for the host runtime (what `opt(x)` runs for a layer
whose plan Choice names backend "tir"; the compiled artifact runs the same generated kernel).

    m = TirConv2d(masked_weight, bias, stride, padding, dilation, act="relu", rows=4)
    y = m(x[, residual])          # compiled for x's shape on first use (cached per shape)

A generated kernel is specialised to its input shape, so each module compiles lazily, once per
(shape, residual) it sees. Tensors cross as DLPack views (no copies); the output is a fresh
torch tensor per call. Pickling / deep copies drop the compiled kernels (rebuilt on use).
Under torch.export a layer is one `spe::spe_tir_layer` node (engine.runtime.ops), which the
compiler path maps to the same kernel generated for the artifact's target (`kernel(shape,
residual, isa)`; engine.codegen.native_lowering), so a lowered model compiles as it runs.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..runtime import ops
from ..runtime.modules import LoweredLayer, SparseConv2d, SparseLinear
from ..runtime.packing import group_rows_for
from ..runtime.views import WeightView
from .targets import as_target, tvm_target, vector_isa
from ._tvm import tvm
from .geometry import ConvGeometry
from .rowgroups import RowGroups
from .spmm_tir import Kernel, conv_kernel, linear_kernel


def _pair(v) -> tuple:
    return tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _tvm_view(t: torch.Tensor):
    """A TVM tensor viewing `t` (copied first when misaligned: generated kernels assume
    64-byte-aligned buffers; torch allocates so, numpy-backed outputs of the C++ kernels are
    only 16-byte aligned)."""
    if t.data_ptr() % 64:
        t = t.clone()
    return tvm.runtime.from_dlpack(t)


class _Compiled:
    """One generated kernel compiled for the host, its constant tables as TVM tensors."""

    def __init__(self, kernel: Kernel):
        tgt = tvm_target(as_target("host"))
        self.kernel = kernel
        self.func = tvm.compile(kernel.prim_func(), target=tgt)[kernel.name]
        self.tables = [tvm.runtime.tensor(np.ascontiguousarray(t)) for t in kernel.tables]

    def __call__(self, x: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
        y = torch.empty(self.kernel.out_shape, dtype=torch.float32)
        args = [_tvm_view(x)] + self.tables
        if residual is not None:
            args.append(_tvm_view(residual))
        args.append(_tvm_view(y))
        self.func(*args)
        return y


class HostKernel:
    """A generated kernel compiled for the host, callable on numpy arrays."""

    def __init__(self, kernel: Kernel, target="host"):
        tgt = tvm_target(as_target(target))
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


class _TirLayer(WeightView, LoweredLayer):

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], act: str,
                 rows: int, layer: str):
        super().__init__()
        w = weight.detach().to(torch.float32).cpu().contiguous()
        self.weight_np = w.numpy().copy()
        self.bias_np = None if bias is None else bias.detach().float().cpu().numpy().copy()
        self.act, self.rows, self.layer = act, group_rows_for(int(rows)), layer
        self.weight_shape = tuple(w.shape)
        self._kernels: dict = {}
        self.op_id = ops.register(self)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_kernels"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.op_id = ops.register(self)   # ids are per process (a copy is another layer)

    @property
    def density(self) -> float:
        return float(np.count_nonzero(self.weight_np)) / max(1, self.weight_np.size)

    @property
    def kernel_name(self) -> str:
        if self._kernels:
            return next(iter(self._kernels.values())).kernel.label
        return f"tir_f32_spmm_{self.rows}r"

    def _get(self, shape: tuple, residual: bool) -> _Compiled:
        key = (shape, residual)
        k = self._kernels.get(key)
        if k is None:
            k = self._kernels[key] = _Compiled(self.kernel(shape, residual))
        return k

    def kernel(self, shape: tuple, residual: bool, isa=None) -> Kernel:
        """The kernel generated for input `shape` (isa: a tir_text.VectorISA; the host's by
        default)."""
        return self._generate(tuple(int(d) for d in shape), residual,
                              isa or vector_isa(tvm_target(as_target("host"))))

    def _run(self, x: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
        if torch.compiler.is_exporting():   # one graph node for the compiler path
            return torch.ops.spe.spe_tir_layer(x, residual, self.op_id)
        return self.run_kernel(x, residual)

    def run_kernel(self, x: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
        x = x.detach().float().contiguous()
        r = None if residual is None else residual.detach().float().contiguous()
        return self._get(tuple(x.shape), r is not None)(x, r)


class TirConv2d(_TirLayer):
    """act(conv2d(x, W) + b [+ residual]) through a kernel generated from W's sparsity."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], stride=(1, 1),
                 padding=(0, 0), dilation=(1, 1), act: str = "none", rows: int = 4,
                 layer: str = ""):
        if weight.dim() != 4:
            raise ConfigError(f"{layer or 'conv'}: weight must be (O, C, kh, kw), got "
                              f"{tuple(weight.shape)}")
        super().__init__(weight, bias, act, rows, layer)
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.dilation = _pair(dilation)

    def _generate(self, shape: tuple, residual: bool, isa) -> Kernel:
        if len(shape) != 4 or shape[1] != self.weight_shape[1]:
            raise ConfigError(f"{self.layer}: expected input (N, {self.weight_shape[1]}, H, W), "
                              f"got {list(shape)}")
        geom = ConvGeometry.of(shape[1], shape[2], shape[3], self.weight_shape[2:], self.stride,
                               self.padding, self.dilation)
        rg = RowGroups.sparse(self.weight_np, self.rows)
        return conv_kernel(f"tir_{self.layer or 'conv'}", geom, rg, isa, batch=shape[0],
                           bias=self.bias_np, act=self.act, residual=residual)

    def out_shape(self, shape: tuple) -> tuple:
        """The output shape for an input of `shape`."""
        g = ConvGeometry.of(shape[1], shape[2], shape[3], self.weight_shape[2:], self.stride,
                            self.padding, self.dilation)
        return (shape[0], self.weight_shape[0], g.out_h, g.out_w)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._run(x, residual)

    def dense_weight(self) -> torch.Tensor:
        return torch.from_numpy(self.weight_np)

    def extra_repr(self) -> str:
        return (f"{self.layer} {self.weight_shape}, stride={self.stride}, padding={self.padding},"
                f" act={self.act}, rows={self.rows}, density={self.density:.3f}")


class TirLinear(_TirLayer):
    """act(x @ W.T + b) through a kernel generated from W's sparsity (x: (..., K))."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], act: str = "none",
                 rows: int = 4, layer: str = ""):
        if weight.dim() != 2:
            raise ConfigError(f"{layer or 'linear'}: weight must be (O, K), got "
                              f"{tuple(weight.shape)}")
        super().__init__(weight, bias, act, rows, layer)
        self.out_features, self.in_features = self.weight_shape

    def _generate(self, shape: tuple, residual: bool, isa) -> Kernel:
        rg = RowGroups.sparse(self.weight_np, self.rows)
        return linear_kernel(f"tir_{self.layer or 'linear'}", rg, isa, batch=shape[0],
                             bias=self.bias_np, act=self.act)

    def out_shape(self, shape: tuple) -> tuple:
        """The output shape for a 2-D input of `shape`."""
        return (shape[0], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ConfigError(f"{self.layer}: expected {self.in_features} input features, got "
                              f"{x.shape[-1]}")
        lead = x.shape[:-1]
        y = self._run(x.reshape(-1, self.in_features), None)
        return y.reshape(*lead, self.out_features)

    def dense_weight(self) -> torch.Tensor:
        return torch.from_numpy(self.weight_np)


def tir_module(native: nn.Module, layer: str = "") -> nn.Module:
    """The generated-TIR twin of a lowered native module (engine.runtime.modules SparseConv2d /
    SparseLinear): same masked weight, bias, geometry, activation and group height."""
    if isinstance(native, SparseLinear):
        w = native.conv.dense_weight().reshape(native.out_features, native.in_features)
        b = None if native.conv.bias_np is None else torch.from_numpy(native.conv.bias_np)
        return TirLinear(w, b, native.act, native.conv.rows, layer or native.layer)
    if isinstance(native, SparseConv2d):
        if native.groups != 1:
            raise ConfigError(f"{native.layer}: grouped convs have no generated sparse kernel")
        b = None if native.bias_np is None else torch.from_numpy(native.bias_np)
        return TirConv2d(native.dense_weight(), b, native.stride, native.padding,
                         native.dilation, native.act, native.rows, layer or native.layer)
    raise ConfigError(f"no generated-TIR twin for {type(native).__name__}")
