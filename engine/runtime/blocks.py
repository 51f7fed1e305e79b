"""The host runtime's fused inverted-residual block: [expand 1x1] -> depthwise -> project 1x1
[+ x] as one call into engine._kernels.InvertedBlock (kernels/src/mobile/), built from the
lowered layers it replaces (their packed weights, as the plan pruned them).

The fused kernel is not faster for every shape and machine, so the module keeps its unfused
layers and, the first time it sees an input shape, times both (interleaved, the minimum of a
few calls each) and runs the faster one for that shape from then on. The two agree to float
rounding (the same products, summed in another order). Under torch.export (the compiler path)
the unfused layers run: each is one custom-op node the compiler maps to its own kernel.
"""
from __future__ import annotations

import time
from typing import Optional

import torch
from torch import nn

from . import native
from .modules import DepthwiseConv2d, RebuiltKernel, SparseConv2d, _run_checked

MEASURE_CALLS = 3


def _pointwise_args(m: Optional[SparseConv2d]):
    if m is None:
        return None
    p = m.packed
    return (p.group_row0, p.group_rows, p.group_ptr, p.entry_col, p.values, m.bias_np)


# the fused kernel's epilogues (kernels/src/mobile/invres.cc): no hardswish / SiLU yet
_BLOCK_ACTS = ("none", "relu", "relu6")

class InvertedBlock(RebuiltKernel, nn.Module):
    """Runs expand (or None) -> dw -> project [+ x] fused when measured faster."""

    def __init__(self, expand: Optional[SparseConv2d], dw: DepthwiseConv2d,
                 project: SparseConv2d, residual: bool, isa: str = "auto"):
        super().__init__()
        self.expand, self.dw, self.project = expand, dw, project
        self.residual, self.isa = bool(residual), isa
        self.picked: dict = {}   # input shape -> "fused" | "unfused"
        self._build()

    @staticmethod
    def pointwise(m) -> bool:
        """A plain 1x1 conv on the native kernel."""
        return isinstance(m, SparseConv2d) and m.groups == 1 and m.packed.kernel == (1, 1) and \
            m.stride == (1, 1) and m.padding == (0, 0)

    @staticmethod
    def fusable(expand, dw, project) -> bool:
        """The layers form a block the fused kernel runs (its list: 3x3 / 5x5, stride 1 / 2,
        padding k // 2, dilation 1; plain 1x1 convs without a residual of their own)."""
        pointwise = InvertedBlock.pointwise
        if not isinstance(dw, DepthwiseConv2d) or not pointwise(project) or \
                (expand is not None and not pointwise(expand)):
            return False
        k = dw.weight_shape[2]
        return dw.weight_shape[3] == k and k in (3, 5) and dw.stride[0] == dw.stride[1] in (1, 2) \
            and dw.padding == (k // 2, k // 2) and dw.dilation == (1, 1) and project.act == "none" \
            and dw.act in _BLOCK_ACTS and (expand is None or expand.act in _BLOCK_ACTS)

    def _build(self) -> None:
        c, _, k, _ = self.dw.weight_shape
        cin = self.expand.packed.in_channels if self.expand is not None else c
        self.kernel = native.lib().InvertedBlock(
            cin, c, self.project.packed.out_channels, k, self.dw.stride[0],
            _pointwise_args(self.expand), self.dw.weight_np, self.dw.bias_np,
            _pointwise_args(self.project), residual=self.residual,
            expand_act=self.expand.act if self.expand is not None else "none",
            dw_act=self.dw.act, isa=self.isa)

    @property
    def layer(self) -> str:
        return self.dw.layer

    def unfused(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x
        return self.project(self.dw(h), x if self.residual else None)

    def fused(self, x: torch.Tensor) -> torch.Tensor:
        cin = self.kernel_in_channels()
        return _run_checked(self.layer, _NoResidual(self.kernel, self.dw), x, None, cin,
                            self.project.packed.out_channels)

    def kernel_in_channels(self) -> int:
        return self.expand.packed.in_channels if self.expand is not None else self.dw.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting() or x.shape[0] == 0:
            return self.unfused(x)
        key = tuple(x.shape)
        if key not in self.picked:
            self.picked[key] = self._measure(x)
        return self.fused(x) if self.picked[key] == "fused" else self.unfused(x)

    def _measure(self, x: torch.Tensor) -> str:
        best = {"fused": float("inf"), "unfused": float("inf")}
        for _ in range(MEASURE_CALLS):
            for name, fn in (("fused", self.fused), ("unfused", self.unfused)):
                t = time.perf_counter()
                fn(x)
                best[name] = min(best[name], time.perf_counter() - t)
        return "fused" if best["fused"] < best["unfused"] else "unfused"

    def extra_repr(self) -> str:
        return f"{self.layer}, kernel={self.kernel.kernel_name}, picked={self.picked}"


class _NoResidual:
    """The block kernel in the interface _run_checked expects (run(x, residual), output_size)."""

    def __init__(self, kernel, dw: DepthwiseConv2d):
        self.kernel, self.dw = kernel, dw

    def run(self, x, residual):
        return self.kernel.run(x)

    def output_size(self, h: int, w: int) -> tuple:
        return self.dw.output_size(h, w)
