"""Host runtime modules: torch nn.Modules whose forward calls engine._kernels on CPU tensors.

Tensors cross as numpy views (zero copy); nothing links against libtorch. Each module keeps its
packed weight so it can be pickled / deep-copied and rebuilt, and can produce the dense torch
equivalent it replaces (used to measure it against dense and to verify it).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from . import native
from .packing import PackedWeight, pack
from .views import WeightView, missing_attribute

ACTIVATIONS = ("none", "relu", "relu6", "hardswish", "silu")


def _kernels():
    return native.lib()


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float32 else t.float()


def _run_checked(layer: str, kernel, x: torch.Tensor, residual: Optional[torch.Tensor],
                 channels: int, out_channels: int) -> torch.Tensor:
    """kernel.run on numpy views of x (N, channels, H, W) [and the residual]; a wrong input is
    an InputError naming the layer; an empty batch gives an empty output, as in torch."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise InputError(f"layer {layer!r}: input must be (N, {channels}, H, W), got shape "
                         f"{tuple(x.shape)}")
    if x.shape[0] == 0:
        ho, wo = kernel.output_size(int(x.shape[2]), int(x.shape[3]))
        if ho <= 0 or wo <= 0:
            raise InputError(f"layer {layer!r}: input {x.shape[2]}x{x.shape[3]} is too small "
                             f"for its kernel, stride and padding")
        return torch.zeros((0, out_channels, ho, wo))
    # float32 input: no .float() call (a dispatcher round trip per layer, ~1% of ResNet-50)
    xn = _f32(x).detach().contiguous().numpy()
    rn = None if residual is None else _f32(residual).detach().contiguous().numpy()
    try:
        return torch.from_numpy(kernel.run(xn, rn))
    except ValueError as e:        # the kernel's check of the input size, named for the user
        raise InputError(f"layer {layer!r}: {e} (input shape {tuple(x.shape)})") from None


class LoweredLayer(nn.Module):
    """Base of every module lowering puts in place of a conv / linear layer (the host
    runtime's native and dense modules here, the generated-TIR ones in engine.codegen.host):
    `layer` names the model layer it runs. An attribute it lacks (a model's forward reading
    its layer) is an engine.errors.LayerAttributeError naming the layer."""

    layer: str = ""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            raise missing_attribute(self, name) from None


def _activate(y: torch.Tensor, act: str) -> torch.Tensor:
    if act == "relu":
        return F.relu(y)
    if act == "relu6":
        return F.relu6(y)
    if act == "hardswish":
        return F.hardswish(y)
    if act == "silu":
        return F.silu(y)
    return y


class RebuiltKernel:
    """A module holding a kernel object (self.kernel, made by self._build()): the kernel is
    rebuilt, not pickled (a copy is a layer of its own: own op id, own kernel)."""

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("kernel", None)
        state.pop("_weight_view", None)     # rebuilt from the packed form when read
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build()


class _KernelConv(WeightView, RebuiltKernel, LoweredLayer):
    """What the native conv modules share: the kernel rebuilt on copies (RebuiltKernel); under
    torch.export the layer is one custom op node for the compiler path; otherwise the kernel
    runs on the input."""

    @property
    def kernel_name(self) -> str:
        return self.kernel.kernel_name

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if torch.compiler.is_exporting():  # one graph node for the compiler path
            return self._export_op(x, residual)
        return self.run_kernel(x, residual)

    def run_kernel(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        cin, cout = self._channels()
        return _run_checked(self.layer, self.kernel, x, residual, cin, cout)

    def output_size(self, h: int, w: int) -> tuple:
        return tuple(self.kernel.output_size(int(h), int(w)))

    def dense_equivalent(self) -> nn.Module:
        """A torch module computing the same function densely (the thing this replaces)."""
        return DenseConv2d(self.dense_weight().reshape(self.weight_shape),
                           None if self.bias_np is None else torch.from_numpy(self.bias_np),
                           self.stride, self.padding, self.dilation, self.act, self.groups)


class SparseConv2d(_KernelConv):
    """act(conv2d(x, W) + b [+ residual]) through the native block-sparse kernel."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], stride=(1, 1),
                 padding=(0, 0), dilation=(1, 1), act: str = "none", rows: int = 4,
                 isa: str = "auto", layer: str = "", groups: int = 1):
        super().__init__()
        self.groups = int(groups)
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")
        w = weight.detach().to(torch.float32).cpu()
        self.layer = layer
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.act, self.rows, self.isa = act, int(rows), isa
        self.weight_shape = tuple(w.shape)
        self.packed: PackedWeight = pack(w.numpy(), 1 if self.groups > 1 else self.rows,
                                         self.groups)
        self.bias_np = None if bias is None else bias.detach().float().cpu().numpy().copy()
        self._build()

    def _build(self) -> None:
        from . import ops
        self.op_id = ops.register(self)
        p = self.packed
        self.kernel = _kernels().SparseConv(
            p.out_channels, p.in_channels, p.kernel, self.stride, self.padding, self.dilation,
            p.group_row0, p.group_rows, p.group_ptr, p.entry_col, p.values, self.bias_np,
            self.act, self.isa)

    def _channels(self) -> tuple:
        return self.packed.in_channels, self.packed.out_channels

    def _export_op(self, x, residual):
        return torch.ops.spe.spe_conv2d(x, residual, self.op_id)

    def dense_weight(self) -> torch.Tensor:
        """The (masked) weight this module computes with, rebuilt from the packed form, in the
        layer's own shape (O, C/groups, kh, kw)."""
        p = self.packed
        o, c, (kh, kw) = p.out_channels, p.in_channels, p.kernel
        if self.groups > 1:
            cg, k = c // self.groups, kh * kw
            rows = np.repeat(np.arange(o), np.diff(p.group_ptr))
            local = p.entry_col - (rows // (o // self.groups)) * cg * k
            out = np.zeros((o, cg * k), np.float32)
            out[rows, local] = p.values
            return torch.from_numpy(out.reshape(self.weight_shape))
        gemm = np.zeros((o, c * kh * kw), np.float32)
        for g in range(len(p.group_row0)):
            r0, n = int(p.group_row0[g]), int(p.group_rows[g])
            b, e = int(p.group_ptr[g]), int(p.group_ptr[g + 1])
            vals = p.values[self._vstart(g):self._vstart(g) + (e - b) * n].reshape(e - b, n)
            gemm[r0:r0 + n, p.entry_col[b:e]] = vals.T
        return torch.from_numpy(gemm.reshape(self.weight_shape))

    def _vstart(self, g: int) -> int:
        p = self.packed
        return int(sum((p.group_ptr[i + 1] - p.group_ptr[i]) * p.group_rows[i] for i in range(g)))

    def extra_repr(self) -> str:
        return (f"{self.layer or ''} {self.weight_shape}, groups={self.groups}, stride={self.stride}, "
                f"padding={self.padding}, act={self.act}, kernel={self.kernel_name}, "
                f"density={self.packed.density:.3f}")


class DepthwiseConv2d(_KernelConv):
    """act(conv2d(x, W, groups=C) + b [+ residual]) through the direct depthwise kernel
    (engine._kernels.DepthwiseConv): a dense depthwise conv, groups == in == out channels.

    The alternative, the block-diagonal SpMM pack (SparseConv2d(groups=C)), goes through phase
    planes of the whole input with one 1-row group per channel; the direct kernel copies each
    input row once into small row buffers (MobileNetV2's depthwise layers at 2 threads: ~2x
    faster than torch, ~2.5x faster than the pack; python -m engine.bench.depthwise)."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], stride=(1, 1),
                 padding=(0, 0), dilation=(1, 1), act: str = "none", isa: str = "auto",
                 layer: str = ""):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")
        w = weight.detach().to(torch.float32).cpu().contiguous()
        if w.dim() != 4 or w.shape[1] != 1:
            raise ValueError(f"{layer or 'depthwise conv'}: weight must be (C, 1, kh, kw), got "
                             f"shape {tuple(w.shape)}")
        self.layer = layer
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.act, self.isa = act, isa
        self.channels = int(w.shape[0])
        self.groups = self.channels
        self.weight_shape = tuple(w.shape)
        self.weight_np = w.numpy().copy()
        self.bias_np = None if bias is None else bias.detach().float().cpu().numpy().copy()
        self._build()

    @staticmethod
    def supports(m: nn.Module) -> bool:
        """A depthwise nn.Conv2d this module can replace (a padding the kernel cannot do
        itself is an explicit pad before it: engine.graph.padding, engine.lowering)."""
        return (isinstance(m, nn.Conv2d) and m.groups > 1 and
                m.groups == m.in_channels == m.out_channels)

    def _build(self) -> None:
        from . import ops
        self.op_id = ops.register(self)
        kh, kw = self.weight_shape[2:]
        self.kernel = _kernels().DepthwiseConv(self.channels, (kh, kw), self.stride,
                                               self.padding, self.dilation, self.weight_np,
                                               self.bias_np, self.act, self.isa)

    def _channels(self) -> tuple:
        return self.channels, self.channels

    def _export_op(self, x, residual):
        return torch.ops.spe.spe_depthwise_conv2d(x, residual, self.op_id)

    def dense_weight(self) -> torch.Tensor:
        return torch.from_numpy(self.weight_np.copy())

    def extra_repr(self) -> str:
        return (f"{self.layer or ''} {self.weight_shape}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, act={self.act}, "
                f"kernel={self.kernel_name}")


class DenseConv2d(LoweredLayer):
    """act(conv2d(x, W) + b [+ residual]) in torch: a kept-dense layer with BN folded in."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], stride=(1, 1),
                 padding=(0, 0), dilation=(1, 1), act: str = "none", groups: int = 1,
                 layer: str = ""):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().float().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(),
                                                           requires_grad=False)
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.act, self.groups, self.layer = act, groups, layer

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                     self.groups)
        if residual is not None:
            y = y + residual
        return _activate(y, self.act)


class ConvLinear(WeightView, LoweredLayer):
    """act(x @ W.T + b) through a 1x1 kernel conv `self.conv`: features become channels, rows
    become pixels (a batch-1 linear is a 1x1 conv on one pixel)."""

    def dense_weight(self) -> torch.Tensor:
        return self.conv.dense_weight().reshape(self.out_features, self.in_features)

    @property
    def bias_np(self):
        return self.conv.bias_np

    @property
    def kernel_name(self) -> str:
        return self.conv.kernel_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise InputError(f"layer {self.layer!r}: input must be (..., {self.in_features}), "
                             f"got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        if x.numel() == 0:
            return x.new_zeros((*lead, self.out_features), dtype=torch.float32)
        x2 = x.reshape(-1, self.in_features)
        xt = x2.t().contiguous().reshape(1, self.in_features, 1, x2.shape[0])
        y = self.conv(xt).reshape(self.out_features, x2.shape[0]).t()
        return y.reshape(*lead, self.out_features)

    def dense_equivalent(self) -> nn.Module:
        b = None if self.conv.bias_np is None else torch.from_numpy(self.conv.bias_np)
        return DenseLinear(self.dense_weight(), b, self.act)


class SparseLinear(ConvLinear):
    """act(x @ W.T + b) through the sparse kernel (a 1x1 SparseConv2d)."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], act: str = "none",
                 rows: int = 4, isa: str = "auto", layer: str = ""):
        super().__init__()
        self.conv = SparseConv2d(weight.detach()[:, :, None, None], bias, act=act, rows=rows,
                                 isa=isa, layer=layer)
        self.layer, self.act = layer, act
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    @property
    def packed(self) -> PackedWeight:
        return self.conv.packed


class DenseLinear(LoweredLayer):
    """act(x @ W.T + b) in torch."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], act: str = "none",
                 layer: str = ""):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().float().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(),
                                                           requires_grad=False)
        self.act, self.layer = act, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _activate(F.linear(x, self.weight, self.bias), self.act)


class NativeMaxPool2d(nn.Module):
    """nn.MaxPool2d (floor mode, dilation 1) through the native kernel: torch's NCHW max pool
    is slow on one thread (ResNet-50's stem pool: 4.9 ms). The kernel validates like torch and
    gives torch's output size; supports() admits only pools torch itself accepts, so a pool
    torch would reject is never swapped for one that runs."""

    def __init__(self, kernel, stride, padding):
        super().__init__()
        self.kernel, self.stride, self.padding = tuple(kernel), tuple(stride), tuple(padding)
        from . import ops
        self.op_id = ops.register(self)

    def __setstate__(self, state):  # a copy is a layer of its own
        from . import ops
        self.__dict__.update(state)
        self.op_id = ops.register(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting():
            return torch.ops.spe.spe_max_pool2d(x, self.op_id)
        return self.run_kernel(x)

    def run_kernel(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # an unbatched (C, H, W) input, as torch allows
            return self.run_kernel(x.unsqueeze(0)).squeeze(0)
        return torch.from_numpy(_kernels().max_pool2d(x.detach().float().contiguous().numpy(),
                                                      self.kernel, self.stride, self.padding))

    def output_size(self, h: int, w: int) -> tuple:
        """torch's floor((in + 2 pad - k) / stride) + 1 (Python's // floors, as torch does)."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)

    @staticmethod
    def supports(m: nn.Module) -> bool:
        """An nn.MaxPool2d the kernel runs exactly as torch does: floor mode, no indices,
        dilation 1, and the geometry torch accepts (kernel and stride > 0, 0 <= padding <=
        kernel // 2), every value an int32."""
        if not isinstance(m, nn.MaxPool2d) or m.ceil_mode or m.return_indices:
            return False

        def pair(v):
            return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
        # torch pools at the kernel size when the stride is None or empty; 0 stays 0 (refused)
        empty = m.stride is None or (isinstance(m.stride, (tuple, list)) and len(m.stride) == 0)
        k, s = pair(m.kernel_size), pair(m.kernel_size if empty else m.stride)
        p, d = pair(m.padding), pair(m.dilation)
        values = k + s + p + d
        if (any(len(t) != 2 for t in (k, s, p, d))
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
                or any(v >= 2 ** 31 for v in values)):
            return False
        return (d == (1, 1) and min(k + s) > 0
                and 0 <= p[0] <= k[0] // 2 and 0 <= p[1] <= k[1] // 2)
