"""The layer shapes the kernel benchmarks run: data files in shapes/ (one layer a line, taken
from real models by make_shapes.py) and their parser.

    "O C H W stride"   a 1x1 conv: out channels, in channels, input height, width, stride
    "O C N"            a linear layer: out features, in features, batch rows
    '#' starts a comment (make_shapes.py puts the layers that use a shape there)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

SHAPES_DIR = Path(__file__).resolve().parent / "shapes"


@dataclass(frozen=True)
class Shape:
    """One benchmarked layer: a 1x1 conv (O, C, H, W, stride) or a linear layer (O, C, N rows)."""

    out_channels: int
    in_channels: int
    height: int          # input height; 1 for a linear layer
    width: int           # input width; the batch rows N for a linear layer
    stride: int = 1
    linear: bool = False
    comment: str = ""

    @property
    def out_hw(self) -> tuple[int, int]:
        s = self.stride
        return (self.height - 1) // s + 1, (self.width - 1) // s + 1

    @property
    def pixels(self) -> int:
        """Output pixels (rows for a linear layer): the N of the GEMM."""
        return math.prod(self.out_hw)

    @property
    def dense_flops(self) -> int:
        return 2 * self.out_channels * self.in_channels * self.pixels

    @property
    def label(self) -> str:
        if self.linear:
            return f"fc {self.out_channels}x{self.in_channels} n{self.width}"
        return (f"{self.out_channels}x{self.in_channels} {self.height}x{self.width}"
                f"{'/' + str(self.stride) if self.stride != 1 else ''}")


def shape_files() -> list[str]:
    """Names accepted by load_shapes (the files in shapes/, without .txt)."""
    return sorted(p.stem for p in SHAPES_DIR.glob("*.txt"))


def parse_shapes(text: str, source: str = "<text>") -> list[Shape]:
    """Lines "O C H W stride" (1x1 convs) or "O C N" (linear); '#' starts a comment."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        data, _, comment = raw.partition("#")
        fields = data.split()
        if not fields:
            continue
        try:
            vals = [int(v) for v in fields]
        except ValueError:
            raise ValueError(f"{source}:{lineno}: expected integers, "
                             f"got {data.strip()!r}") from None
        if len(vals) == 5:
            o, c, h, w, s = vals
            shape = Shape(o, c, h, w, s, False, comment.strip())
        elif len(vals) == 3:
            o, c, n = vals
            shape = Shape(o, c, 1, n, 1, True, comment.strip())
        else:
            raise ValueError(f"{source}:{lineno}: expected 'O C H W stride' or 'O C N', "
                             f"got {len(vals)} fields")
        if min(vals) < 1:
            raise ValueError(f"{source}:{lineno}: every field must be >= 1, got {vals}")
        out.append(shape)
    return out


def load_shapes(spec: Union[str, Path, Shape, Iterable]) -> list[Shape]:
    """Shapes from a shape-file name ("resnet50_1x1"), a path, a Shape, or a list of these."""
    if isinstance(spec, Shape):
        return [spec]
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.suffix and not path.exists():
            path = SHAPES_DIR / f"{spec}.txt"
        if not path.exists():
            raise ValueError(f"unknown shapes {str(spec)!r}: not a file, and not one of "
                             f"{', '.join(shape_files())}")
        return parse_shapes(path.read_text(), str(path))
    out: list[Shape] = []
    for item in spec:
        out += load_shapes(item)
    return out
