"""PackedDenseConv2d: a conv kept dense, on the packed dense kernels (engine._kernels.DenseConv):
implicit GEMM ("gemm": any conv with groups 1) or Winograd F(4x4, 3x3) ("winograd": 3x3,
stride 1, dilation 1). Which one a layer runs (or torch, or the SpMM on a dense pack) is measured
per layer (engine/measure/host.py, engine/pipeline/decide.py); the lowering builds it for a
backend spec ("dense", algo) (engine/lowering/backends.py).

"gemm" runs a conv with few input channels (K = C*kh*kw <= 64 or C <= 4: the 3-channel stems)
on its direct path instead (no im2col; the f32_conv tiles, kernels/README.md), a strided conv
past 1x1 on its phase path (the same tiles over the input's stride phase planes) or, below 64
output pixels, like a strided 1x1, on the pointwise path over gathered pixels.
Its kernel_name says the algorithm and the tile ("gemm:f32_gemm_8x48__avx512",
"gemm:f32_conv_8x48__avx512", "winograd:f32_gemm_16x16__avx512"), which is how a plan records
the choice (Choice.kernel) and how the compiler path finds it again (dense_algo).

PackedDenseLinear: a linear layer kept dense, as a 1x1 PackedDenseConv2d ("gemm" only): its
rows are the conv's pixels, so a batch-1 linear (a classifier) runs the pointwise path's GEMV
("gemm:f32_gemv_...": the weights streamed once, contiguous row ranges per thread).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .modules import ACTIVATIONS, ConvLinear, _KernelConv, _kernels

ALGOS = ("gemm", "winograd")


def dense_algo(kernel: str) -> Optional[str]:
    """The packed dense algorithm a kernel name (Choice.kernel) names, or None."""
    head = kernel.split(":", 1)[0]
    return head if head in ALGOS and ":" in kernel else None


def winograd_fits(mod: nn.Module) -> bool:
    """A conv Winograd F(4x4, 3x3) computes: 3x3, stride 1, dilation 1, groups 1 (any
    padding: the lowering gives the kernel a symmetric one, or pads the input first)."""
    return (isinstance(mod, nn.Conv2d) and mod.groups == 1 and tuple(mod.kernel_size) == (3, 3)
            and tuple(mod.stride) == (1, 1) and tuple(mod.dilation) == (1, 1))


class PackedDenseConv2d(_KernelConv):
    """act(conv2d(x, W) + b [+ residual]) on the packed dense kernels (groups 1)."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], stride=(1, 1),
                 padding=(0, 0), dilation=(1, 1), act: str = "none", algo: str = "gemm",
                 isa: str = "auto", layer: str = ""):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")
        if algo not in ALGOS:
            raise ValueError(f"unknown dense algorithm {algo!r}; expected one of {ALGOS}")
        w = weight.detach().to(torch.float32).cpu().contiguous()
        if w.dim() != 4:
            raise ValueError(f"{layer or 'dense conv'}: weight must be (O, C, kh, kw), got shape "
                             f"{tuple(w.shape)}")
        self.layer, self.act, self.algo, self.isa = layer, act, algo, isa
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.groups = 1
        self.weight_shape = tuple(w.shape)
        self.weight_np = w.numpy().copy()
        self.bias_np = None if bias is None else bias.detach().float().cpu().numpy().copy()
        self.last_hw = None
        self._build()

    def _build(self) -> None:
        from . import ops
        self.op_id = ops.register(self)
        o, c, kh, kw = self.weight_shape
        self.kernel = _kernels().DenseConv(o, c, (kh, kw), self.stride, self.padding,
                                           self.dilation, self.weight_np, self.bias_np,
                                           self.act, self.isa, self.algo)

    @property
    def kernel_name(self) -> str:
        """algo:tile, the tile of the last input size run (the widest listed before any)."""
        h, w = self.last_hw or (64, 64)
        return f"{self.algo}:{self.kernel.kernel_name(h, w)}"

    def run_kernel(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.dim() == 4:
            self.last_hw = (int(x.shape[2]), int(x.shape[3]))
        return super().run_kernel(x, residual)

    def _channels(self) -> tuple:
        return self.weight_shape[1], self.weight_shape[0]

    def _export_op(self, x, residual):
        return torch.ops.spe.spe_dense_conv2d(x, residual, self.op_id)

    def dense_weight(self) -> torch.Tensor:
        return torch.from_numpy(self.weight_np.copy())

    def extra_repr(self) -> str:
        geometry = f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}"
        return f"{self.layer or ''} {self.weight_shape}, {self.algo}, {geometry}, act={self.act}"


class PackedDenseLinear(ConvLinear):
    """act(x @ W.T + b) on the packed dense kernels (a 1x1 PackedDenseConv2d, algo "gemm")."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], act: str = "none",
                 isa: str = "auto", layer: str = ""):
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"{layer or 'dense linear'}: weight must be (O, I), got shape "
                             f"{tuple(weight.shape)}")
        self.conv = PackedDenseConv2d(weight.detach()[:, :, None, None], bias, act=act,
                                      algo="gemm", isa=isa, layer=layer)
        self.layer, self.act, self.algo = layer, act, "gemm"
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
