"""How a conv pads, in the form the kernels run it: a symmetric zero padding the kernel does
itself, or an explicit pad of the input (F.pad) before a conv with no padding.

    p = conv_padding(conv)        # nn.Conv2d with any padding / padding_mode torch accepts
    p.kernel                      # (ph, pw) the kernel pads with zeros on both sides
    p.pre, p.mode                 # None, or (left, right, top, bottom) for F.pad(x, pre, mode)

torch's rules: padding="valid" is no padding; "same" pads d * (k - 1) in total per dimension,
half of it (rounded down) on the left / top, the rest on the right / bottom (stride 1 only);
a padding_mode other than "zeros" pads the input with that mode, then convolves unpadded.
Only a symmetric zero padding stays in the kernel; everything else becomes the explicit pad.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn

# nn.Conv2d.padding_mode -> F.pad's mode
PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
             "circular": "circular"}


@dataclass(frozen=True)
class ConvPadding:
    kernel: tuple = (0, 0)            # (ph, pw), zeros, both sides, done by the kernel
    pre: Optional[tuple] = None       # (left, right, top, bottom) of F.pad, or None
    mode: str = "constant"            # F.pad's mode for `pre`

    def padded_hw(self, h: int, w: int) -> tuple:
        """The (H, W) the kernel sees for an (H, W) input."""
        if self.pre is None:
            return (h, w)
        left, right, top, bottom = self.pre
        return (h + top + bottom, w + left + right)


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _sides(conv: nn.Conv2d) -> list:
    """[(before, after)] per spatial dimension (H, W), as torch pads."""
    if conv.padding == "valid":
        return [(0, 0), (0, 0)]
    if conv.padding == "same":
        totals = [d * (k - 1) for d, k in zip(_pair(conv.dilation), _pair(conv.kernel_size))]
        return [(t // 2, t - t // 2) for t in totals]
    return [(int(p), int(p)) for p in _pair(conv.padding)]


def conv_padding(conv: nn.Conv2d) -> ConvPadding:
    """The ConvPadding of an nn.Conv2d (ValueError for a padding_mode torch does not know)."""
    if conv.padding_mode not in PAD_MODES:
        raise ValueError(f"unknown padding_mode {conv.padding_mode!r}; torch knows "
                         f"{sorted(PAD_MODES)}")
    (top, bottom), (left, right) = _sides(conv)
    if conv.padding_mode == "zeros" and top == bottom and left == right:
        return ConvPadding((top, left))
    if (top, bottom, left, right) == (0, 0, 0, 0):
        return ConvPadding()
    return ConvPadding((0, 0), (left, right, top, bottom), PAD_MODES[conv.padding_mode])
