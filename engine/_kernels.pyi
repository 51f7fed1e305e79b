"""Type stub of the pybind11 module engine._kernels (python/bindings.cc).

Errors: a bad argument or input raises ValueError naming it (the C API's message), a failed
allocation inside a kernel MemoryError ("...: out of memory"), an unexpected internal failure
RuntimeError; the process and the layer stay usable after any of them. Layers may be called
from several threads at once (the GIL is released while a kernel runs), and in a child
process forked while another thread was inside one.
"""
from typing import Optional, TypedDict

import numpy as np

class KernelInfo(TypedDict):
    """One listed kernel (an entry of list_kernels())."""

    name: str        # the tile, then "__", then the ISA: f32_spmm_4x96__avx512
    family: str      # "f32_spmm", "f32_dwconv", "f32_invres", "f32_gemm", "f32_conv" or "qs8_spmm"
    isa: str         # "scalar", "avx2", "avx512", "neon"
    variant: str     # the ISA variant the name ends with: isa, or (int8) "avx512vnni", "neondot"
    tile: dict[str, int]  # f32_spmm, f32_gemm, f32_conv: rows, pixels; f32_dwconv, f32_invres:
                          # kernel, stride;
                          # {} if generic
    available: bool  # this build and CPU can run it

class QConv:
    """An int8 conv / linear layer (spe.h, "int8 conv"): u8 activations with per-tensor
    (scale, zero_point), s8 weights packed in column quads (entry_quad = (channel // 4) * kh * kw
    + tap; values: per entry, rows x 4 int8) with a scale per output channel, requantized to u8
    in the store (bias, a u8 residual and relu / relu6 fused). Every ISA variant ("scalar",
    "avx2", "avx512vnni", "neon", "neondot"; "auto" the best here) gives the same bytes."""

    def __init__(self, out_channels: int, in_channels: int, kernel: tuple[int, int],
                 stride: tuple[int, int], padding: tuple[int, int],
                 dilation: tuple[int, int], group_row0: np.ndarray, group_rows: np.ndarray,
                 group_ptr: np.ndarray, entry_quad: np.ndarray, values: np.ndarray,
                 weight_scale: np.ndarray, bias: Optional[np.ndarray] = None, *,
                 input: tuple[float, int], output: tuple[float, int],
                 residual: Optional[tuple[float, int]] = None, act: str = "none",
                 isa: str = "auto") -> None: ...
    def run(self, x: np.ndarray, residual: Optional[np.ndarray] = None) -> np.ndarray:
        """x (N, C, H, W) uint8 -> (N, O, Ho, Wo) uint8; residual uint8 of the output's shape
        (the layer built with residual=(scale, zero_point))."""
    def run_linear(self, x: np.ndarray) -> np.ndarray:
        """A linear layer (1x1, nchw4 in and out) on float rows: x float32 (rows, C) -> float32
        (rows, O), quantized, run and dequantized in one call (spe_qconv_run_linear)."""
    def run_float(self, x: np.ndarray, residual: Optional[np.ndarray] = None,
                  post_act: str = "none") -> np.ndarray:
        """The layer (nchw4 in and out, no u8 residual) on float NCHW: x float32 (N, C, H, W) ->
        float32 (N, O, Ho, Wo), quantized, run and dequantized in one call, then post_act(y +
        residual) in float (spe_qconv_run_float)."""
    def output_size(self, h: int, w: int) -> tuple[int, int]: ...
    @property
    def nnz(self) -> int: ...
    @property
    def kernel_name(self) -> str: ...

class SparseConv:
    """A packed sparse conv layer (see kernels/include/spe/spe.h)."""

    def __init__(self, out_channels: int, in_channels: int, kernel: tuple[int, int],
                 stride: tuple[int, int], padding: tuple[int, int],
                 dilation: tuple[int, int], group_row0: np.ndarray, group_rows: np.ndarray,
                 group_ptr: np.ndarray, entry_col: np.ndarray, values: np.ndarray,
                 bias: Optional[np.ndarray] = None, act: str = "none",
                 isa: str = "auto") -> None: ...
    def run(self, x: np.ndarray, residual: Optional[np.ndarray] = None) -> np.ndarray:
        """y = act(conv(x) + bias [+ residual]); x (N, C, H, W) float32 C-contiguous.
        ValueError if H x W is smaller than the kernel or so large that the phase planes of all
        channels would exceed 2^31 floats (checked on empty batches too)."""
    def output_size(self, h: int, w: int) -> tuple[int, int]: ...
    @property
    def nnz(self) -> int: ...
    @property
    def kernel_name(self) -> str: ...

class DepthwiseConv:
    """A dense depthwise conv layer, groups == channels (see kernels/include/spe/spe.h)."""

    def __init__(self, channels: int, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int], weight: np.ndarray,
                 bias: Optional[np.ndarray] = None, act: str = "none",
                 isa: str = "auto") -> None:
        """weight (C, 1, kh, kw) as torch stores it, or (C, kh, kw); bias (C,) or None."""
    def run(self, x: np.ndarray, residual: Optional[np.ndarray] = None) -> np.ndarray:
        """y = act(conv2d(x, weight, bias, groups=C) [+ residual]); x (N, C, H, W) and the
        residual float32 C-contiguous (other arrays raise ValueError, never a silent copy)."""
    def output_size(self, h: int, w: int) -> tuple[int, int]: ...
    @property
    def kernel_name(self) -> str:
        """f32_dwconv_{k}x{k}s{s}__{isa} or f32_dwconv_generic__{isa}"""

class InvertedBlock:
    """A fused inverted-residual block: [expand 1x1] -> depthwise -> project 1x1 [+ x]
    (kernels/src/mobile/, spe.h spe_inverted_block_*)."""

    def __init__(self, in_channels: int, expanded: int, out_channels: int, kernel: int,
                 stride: int, expand: Optional[tuple], dw_weight: np.ndarray,
                 dw_bias: Optional[np.ndarray], project: tuple, residual: bool = False,
                 expand_act: str = "relu6", dw_act: str = "relu6", band_rows: int = 0,
                 schedule: int = 0, flags: int = 0, isa: str = "auto") -> None:
        """expand / project: (group_row0, group_rows, group_ptr, entry_col, values, bias or
        None), SparseConv's arrays (expand None: no expand conv); dw_weight (expanded, 1, k, k);
        schedule 0 auto, 1 bands of rows, 2 groups of channels; flags 1 depthwise on its plane
        kernel, 2 balanced 1x1 tiles."""
    def run(self, x: np.ndarray) -> np.ndarray:
        """x (N, C, H, W) float32 C-contiguous -> y (N, out_channels, Ho, Wo)."""
    @property
    def kernel_name(self) -> str:
        """f32_invres_{k}x{k}s{s}__{isa}"""

def max_pool2d(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int]) -> np.ndarray:
    """Max pooling, NCHW float32, floor mode, dilation 1: torch's max_pool2d, with its
    validation (ValueError where torch raises) and output size."""
def set_num_threads(n: int) -> None:
    """Threads for every kernel, clamped to 1..1024."""
def get_num_threads() -> int: ...
def isa_available(isa: str) -> bool: ...
def best_isa() -> str: ...
def available_isas() -> list[str]:
    """The ISAs this build and CPU run, from the most portable (scalar) to the most specific;
    best_isa() is the last."""
def list_kernels() -> list[KernelInfo]:
    """Every kernel the library lists, family by family in list order (kernels/src/<family>/
    <family>_list.h: one line per kernel), whether or not this CPU can run it.

    Names follow one rule, the tile then "__" then the ISA: f32_spmm_{rows}x{pixels}__{isa} (a
    tile of `rows` output channels, one row group, by `pixels` output pixels),
    f32_dwconv_{k}x{k}s{s}__{isa} (k x k taps, stride s, dilation 1),
    f32_dwconv_generic__{isa} (every other depthwise geometry), f32_gemm_{rows}x{pixels}__{isa}
    and f32_conv_{rows}x{pixels}__{isa} (the dense conv's GEMM and direct tiles). A layer's
    kernel_name is one of these names; plans, benchmarks and logs use the same ones."""
