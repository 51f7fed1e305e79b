"""LayerSpec: what the mappers know about one prunable layer (plain data, injected by engine).

The engine builds one LayerSpec per conv / linear from its traced layer list; the mapping
package never looks at a torch module. `shape_key` names everything a layer's latency depends
on (op, channels, kernel, stride, padding, dilation, groups, input size, fused epilogue), so
two layers with the same key share measurements in the cost table. `inputs` is the data flow
(the GNN mapper's layer graph): the layers whose outputs reach this one's input through ops that
are not prunable layers (a residual add lists both branches, a concat every part); () = only
model inputs, None = not known (the GNN mapper then assumes the sequential chain).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional


@dataclass(frozen=True)
class LayerSpec:
    """One conv2d / linear layer at the shape it runs at."""

    name: str                         # fully qualified module name, e.g. "layer1.0.conv2"
    op: str                           # "conv2d" or "linear"
    in_channels: int                  # linear: in_features
    out_channels: int                 # linear: out_features
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    input_hw: tuple = (1, 1)          # conv: (H, W) of the input; linear: (1, 1)
    batch: int = 1                    # conv: N; linear: rows of the flattened input
    epilogue: str = ""                # fused ops, e.g. "relu", "relu+residual" ("" none)
    order: int = 0                    # position in execution order (first layer = 0)
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    inputs: Optional[tuple] = field(default=None, compare=False, hash=False)  # producer names

    def __post_init__(self):
        if self.op not in ("conv2d", "linear"):
            raise ValueError(f"layer {self.name!r}: op must be 'conv2d' or 'linear', "
                             f"got {self.op!r}")
        if self.in_channels <= 0 or self.out_channels <= 0 or self.groups <= 0:
            raise ValueError(f"layer {self.name!r}: channels and groups must be positive")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"layer {self.name!r}: groups={self.groups} does not divide "
                             f"channels {self.in_channels} -> {self.out_channels}")
        for f in ("kernel", "stride", "padding", "dilation", "input_hw"):
            object.__setattr__(self, f, tuple(int(v) for v in getattr(self, f)))
        if self.inputs is not None:
            if isinstance(self.inputs, str) or \
                    not all(isinstance(v, str) for v in self.inputs):
                raise ValueError(f"layer {self.name!r}: inputs must be a sequence of layer "
                                 f"names, got {self.inputs!r}")
            object.__setattr__(self, "inputs", tuple(self.inputs))

    # -- derived -------------------------------------------------------------------------------
    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def is_grouped(self) -> bool:
        return self.groups > 1

    @property
    def gemm_shape(self) -> tuple:
        """(rows, cols) of the weight's GEMM view: O x (I/groups * kh * kw)."""
        kh, kw = self.kernel
        return (self.out_channels, self.in_channels // self.groups * kh * kw)

    @property
    def params(self) -> int:
        """Weights (no bias)."""
        rows, cols = self.gemm_shape
        return rows * cols

    @property
    def output_hw(self) -> tuple:
        if self.op == "linear":
            return (1, 1)
        out = []
        for size, k, s, p, d in zip(self.input_hw, self.kernel, self.stride, self.padding,
                                    self.dilation):
            out.append(max(0, (size + 2 * p - d * (k - 1) - 1) // s + 1))
        return tuple(out)

    @property
    def macs(self) -> int:
        """Dense multiply-accumulates of one forward pass."""
        ho, wo = self.output_hw
        return self.batch * self.params * ho * wo

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def shape_key(self) -> str:
        """Everything the latency depends on, as one string (cost-table key)."""
        def t(v):
            return "x".join(str(a) for a in v)
        return (f"{self.op}:i{self.in_channels}:o{self.out_channels}:k{t(self.kernel)}"
                f":s{t(self.stride)}:p{t(self.padding)}:d{t(self.dilation)}:g{self.groups}"
                f":n{self.batch}:hw{t(self.input_hw)}:e{self.epilogue or '-'}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LayerSpec":
        return cls(**d)
