"""Type stub of the pybind11 module engine._kernels (python/bindings.cc).

Errors: a bad argument or input raises ValueError naming it (the C API's message), a failed
allocation inside a kernel MemoryError ("...: out of memory"), an unexpected internal failure
RuntimeError; the process and the layer stay usable after any of them. Layers may be called
from several threads at once (the GIL is released while a kernel runs), and in a child
process forked while another thread was inside one.
"""
from typing import Optional

import numpy as np

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

def max_pool2d(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int]) -> np.ndarray:
    """Max pooling, NCHW float32, floor mode, dilation 1: torch's max_pool2d, with its
    validation (ValueError where torch raises) and output size."""
def set_num_threads(n: int) -> None:
    """Threads for every kernel, clamped to 1..1024."""
def get_num_threads() -> int: ...
def isa_available(isa: str) -> bool: ...
def best_isa() -> str: ...
def available_isas() -> list[str]: ...
