"""Conv geometry of the phase-shifted flat SpMM (the method of kernels/include/spe/spe.h).

The input (C, H, W) is rearranged into `stride_h x stride_w` zero-padded phase planes per
channel, of size hp x wp each, keeping only the phases that some kernel position reads. Output
pixel (i, j) is then "virtual" pixel p = i * wp + j, and kernel column c*kh*kw + k (k = ky*kw + kx)
reads the planes at one flat offset, so a conv is

    out[row, p] += w[row, col] * planes[offset(col) + p]      for p in [0, ho * wp)

and the virtual columns j >= wo are cropped afterwards. A 1x1 stride-1 unpadded conv reads the
NCHW input directly (planes = the input, no copy, no crop).

A stride-1, dilation-1 conv whose output is as wide as its input (left + right padding =
kw - 1: ResNet's 3x3 convs) is `masked` instead: its planes keep the image's own row pitch (zero
rows above and below each channel, no padding columns), so p = i * wo + j is the output pixel
itself, and a kernel column whose tap leaves the row (x + kx - left outside [0, w)) reads with
those lanes masked to zero (`lane_valid`); no virtual columns to compute, no crop. The planes
start `front` (= left) floats into their buffer, so every tap's read stays inside it. Pure
numpy: no tvm here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


# Whether `masked` geometries are used (benchmarks set it False to time the cropped layout).
MASKED_COLUMNS = True


def _pair(v) -> tuple:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


@dataclass(frozen=True)
class ConvGeometry:
    """One conv's shapes: its (C, H, W) input, kernel / stride / dilation as (h, w) pairs and
    padding as (top, left, bottom, right). `phases` is derived: the (py, px) phase planes some
    kernel position reads, in plane order."""

    in_channels: int
    height: int
    width: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    phases: tuple = field(init=False)

    def __post_init__(self):
        kh, kw = self.kernel
        sh, sw = self.stride
        dh, dw = self.dilation
        if min(kh, kw, sh, sw, dh, dw) < 1 or min(self.padding) < 0:
            raise ValueError(f"bad conv geometry {self}")
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(f"input {self.height}x{self.width} is too small for kernel "
                             f"{self.kernel}, padding {self.padding}, dilation {self.dilation}")
        seen: list = []
        for ky in range(kh):
            for kx in range(kw):
                ph = ((ky * dh) % sh, (kx * dw) % sw)
                if ph not in seen:
                    seen.append(ph)
        object.__setattr__(self, "phases", tuple(seen))

    @classmethod
    def of(cls, in_channels, height, width, kernel=(1, 1), stride=1, padding=0, dilation=1):
        """From torch-style arguments; padding may be an int, (ph, pw) or (top, left, bottom,
        right)."""
        pad = padding
        if isinstance(pad, (tuple, list)) and len(pad) == 4:
            pad = tuple(int(p) for p in pad)
        else:
            ph, pw = _pair(pad)
            pad = (ph, pw, ph, pw)
        return cls(int(in_channels), int(height), int(width), _pair(kernel), _pair(stride), pad,
                   _pair(dilation))

    @property
    def out_h(self) -> int:
        pt, _, pb, _ = self.padding
        return (self.height + pt + pb - self.dilation[0] * (self.kernel[0] - 1) - 1) \
            // self.stride[0] + 1

    @property
    def out_w(self) -> int:
        _, pl, _, pr = self.padding
        return (self.width + pl + pr - self.dilation[1] * (self.kernel[1] - 1) - 1) \
            // self.stride[1] + 1

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def direct(self) -> bool:
        """1x1, stride 1, no padding: the NCHW input is its own (single) phase plane."""
        return self.kernel == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0, 0, 0)

    @property
    def masked(self) -> bool:
        """kw > 1 and every phase's image columns fit in the output's width (stride 1: left +
        right padding = kw - 1 at dilation 1; ResNet's strided 3x3 and 7x7 stems too): the
        planes keep the output's pitch, taps off the row are masked per lane (see the module
        docstring)."""
        if not MASKED_COLUMNS or self.kernel[1] == 1:
            return False
        return all(j1 - j0 <= self.out_w for j0, j1 in
                   (self._image_cols(px) for px in {p[1] for p in self.phases}))

    def _image_cols(self, px: int) -> tuple:
        """Columns [j0, j1) of phase column px, in the cropped layout's planes (padding columns
        included), that come from the image."""
        return _span(self._wp_virtual, self.stride[1], px - self.padding[1], self.width)

    def first_col(self, px: int) -> int:
        """Plane column 0 of phase column px holds padded column first_col * sw + px (masked
        geometries start at the phase's first image column, the others at column 0)."""
        return self._image_cols(px)[0] if self.masked else 0

    @property
    def _wp_virtual(self) -> int:
        return self.out_w + (self.dilation[1] * (self.kernel[1] - 1)) // self.stride[1]

    @property
    def front(self) -> int:
        """Floats of the planes buffer before channel 0's plane (the leftmost tap's reach)."""
        if not self.masked:
            return 0
        return max(self._image_cols(px)[0] for _, px in self.phases)

    @property
    def hp(self) -> int:
        if self.direct:
            return self.height
        return self.out_h + (self.dilation[0] * (self.kernel[0] - 1)) // self.stride[0]

    @property
    def wp(self) -> int:
        if self.direct:
            return self.width
        return self.out_w if self.masked else self._wp_virtual

    @property
    def plane(self) -> int:
        return self.hp * self.wp

    @property
    def chan_stride(self) -> int:
        return self.plane * len(self.phases)

    @property
    def pixels(self) -> int:
        """Virtual output pixels per output channel (ho * wp)."""
        return self.out_h * self.wp

    @property
    def crop(self) -> bool:
        """The virtual output has columns to drop (wp > wo)."""
        return self.wp != self.out_w

    def tap_offset(self, k: int) -> int:
        """Flat offset of kernel position k (= ky*kw + kx) inside one channel's planes."""
        kw = self.kernel[1]
        ky, kx = divmod(int(k), kw)
        dy, dx = ky * self.dilation[0], kx * self.dilation[1]
        idx = self.phases.index((dy % self.stride[0], dx % self.stride[1]))
        return idx * self.plane + (dy // self.stride[0]) * self.wp + self.front + \
            self.column_shift(k)

    def column_shift(self, k: int) -> int:
        """Plane columns kernel position k reads right of the output's own column (masked
        geometries: may be negative, the plane starting at the first image column)."""
        dx = (int(k) % self.kernel[1]) * self.dilation[1]
        shift = dx // self.stride[1]
        if self.masked:
            shift -= self._image_cols(dx % self.stride[1])[0]
        return shift

    def offsets(self, cols: np.ndarray) -> np.ndarray:
        """int32 flat offsets of GEMM columns c*kh*kw + k."""
        cols = np.asarray(cols, dtype=np.int64)
        if cols.size == 0:
            return np.zeros(0, np.int32)
        table = np.array([self.tap_offset(k) for k in range(self.taps)], np.int64)
        off = (cols // self.taps) * self.chan_stride + table[cols % self.taps]
        if off.max(initial=0) >= 2 ** 31:
            raise ValueError("input too large for int32 offsets")
        return off.astype(np.int32)

    @property
    def buffer_len(self) -> int:
        """Floats the planes need, including the over-read of the last virtual row."""
        max_off = (self.in_channels - 1) * self.chan_stride + max(
            self.tap_offset(k) for k in range(self.taps))
        return max(self.front + self.in_channels * self.chan_stride, max_off + self.pixels)

    def lane_valid(self, k: int) -> np.ndarray:
        """bool[pixels]: the virtual pixels where kernel position k reads the image (False only
        in masked geometries, where its column leaves the row)."""
        if not self.masked:
            return np.ones(self.pixels, bool)
        j = np.arange(self.pixels) % self.wp + self.column_shift(k)
        return (j >= 0) & (j < self.wp)

    def row_span(self, py: int) -> tuple:
        """Plane rows [i0, i1) of phase row py that come from the image (others are zero)."""
        return _span(self.hp, self.stride[0], py - self.padding[0], self.height)

    def col_span(self, px: int) -> tuple:
        """Plane columns [j0, j1) of phase column px that come from the image."""
        if self.masked:
            j0, j1 = self._image_cols(px)
            return (0, j1 - j0)
        return _span(self.wp, self.stride[1], px - self.padding[1], self.width)


def _span(n: int, s: int, base: int, size: int) -> tuple:
    """Indices i in [0, n) with 0 <= i*s + base < size, as [i0, i1)."""
    i0 = -(base // s)  # ceil(-base / s)
    i1 = (size - 1 - base) // s + 1 if size - 1 - base >= 0 else 0
    i0, i1 = min(max(i0, 0), n), min(max(i1, 0), n)
    return (i0, max(i0, i1))


def make_planes(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """Reference (numpy) phase planes of one image x (C, H, W), flat, length buffer_len."""
    out = np.zeros(g.buffer_len, np.float32)
    if g.direct:
        out[:x.size] = x.reshape(-1)
        return out
    sh, sw = g.stride
    pt, pl = g.padding[0], g.padding[1]
    for c in range(g.in_channels):
        for idx, (py, px) in enumerate(g.phases):
            base = g.front + c * g.chan_stride + idx * g.plane
            i0, i1 = g.row_span(py)
            j0, j1 = g.col_span(px)
            first = j0 + g.first_col(px)
            for i in range(i0, i1):
                r = i * sh + py - pt
                cols = np.arange(first, first + j1 - j0) * sw + px - pl
                out[base + i * g.wp + j0: base + i * g.wp + j1] = x[c, r, cols]
    return out
