"""Helpers for the codegen tests: references are always torch on the masked weights."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from engine.zoo.init import randomize_bn  # noqa: F401  (re-exported for the tests)


def assert_close(got, ref, rtol: float = 1e-4, what: str = "output") -> None:
    """max |got - ref| <= rtol * max |ref|, and ref is not ~0 (a degenerate test proves nothing)."""
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    scale = float(np.abs(ref).max())
    assert scale > 1e-3, f"{what}: reference is ~0 (max {scale}); the test is degenerate"
    err = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
    assert err <= rtol * scale, f"{what}: max err {err:.3g} > {rtol} x max|ref| {scale:.3g}"




def random_mask(shape, sparsity: float, block_rows: int, seed: int = 0) -> torch.Tensor:
    """A block-structured mask over the GEMM view (O, C*kh*kw): blocks of block_rows output
    rows x 1 column, round(sparsity * blocks) of them zero."""
    g = torch.Generator().manual_seed(seed)
    o = shape[0]
    cols = int(np.prod(shape[1:]))
    nr = -(-o // block_rows)
    keep = torch.ones(nr * cols, dtype=torch.bool)
    keep[torch.randperm(nr * cols, generator=g)[:round(sparsity * nr * cols)]] = False
    full = keep.reshape(nr, cols).repeat_interleave(block_rows, 0)[:o]
    return full.reshape(shape)


class TinyNet(nn.Module):
    """conv-bn-relu, depthwise-bn-relu6, residual 1x1, max pool, avg pool, linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(12)
        self.dw = nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12, bias=False)
        self.bn2 = nn.BatchNorm2d(12)
        self.pw = nn.Conv2d(12, 12, 1, bias=True)
        self.fc = nn.Linear(12, 7)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = nn.functional.relu6(self.bn2(self.dw(x)))
        x = torch.relu(self.pw(x) + x)
        x = nn.functional.max_pool2d(x, 3, 2, 1)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)
