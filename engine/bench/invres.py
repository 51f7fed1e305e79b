"""Fused inverted-residual block vs the unfused native layers, on MobileNetV2's block shapes.

    python -m engine.bench.invres [--threads 2] [--rounds 60] [--sparsity 0,0.8] [--rows 8]
                                  [--json out.json]

For each inverted-residual block of MobileNetV2 at 224x224, batch 1 (BLOCKS), and each
sparsity (0: dense; else block 4x1 pruning of both 1x1 convs at that sparsity, packed in 4-row
groups), the candidates run in ONE process, interleaved, and the minimum over rounds of the
per-call time is kept (noise on a shared machine only ever adds time):

  unfused  engine._kernels.SparseConv (expand, ReLU6) -> DepthwiseConv (ReLU6) -> SparseConv
           (project, + residual): the native layers the host runtime and the bridge call today
  fused    engine._kernels.InvertedBlock with the same packed weights, schedule chosen per size
  tir      (--tir) the 1x1s as generated TIR kernels, the depthwise native (a compiled
           artifact's "tir" layers)
  rows / channels   the fused block forced to one schedule, its depthwise conv on the
           depthwise plane kernel (fused, the default, runs small stride-1 planes flat on
           the SpMM tiles)
  balanced the fused block with its 1x1 pixels cut into equal tiles (80 + 80 + 36 at 14x14)
           instead of the listed tile and a remainder (96 + 96 + 4)

Every candidate's output is checked against torch's unfused block first. Reported per block:
the times and unfused / fused (> 1: the fused block is faster), then the sums over the network.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..runtime.native import lib, set_threads
from ..runtime.packing import pack

PLANE_DW, BALANCED = 1, 2   # spe.h SPE_INVRES_PLANE_DEPTHWISE, SPE_INVRES_BALANCED_TILES

# MobileNetV2's blocks at 224x224: (in channels, expansion, out channels, stride, input size,
# how many blocks of this shape the network has).
BLOCKS = (
    (32, 1, 16, 1, 112, 1),
    (16, 6, 24, 2, 112, 1),
    (24, 6, 24, 1, 56, 1),
    (24, 6, 32, 2, 56, 1),
    (32, 6, 32, 1, 28, 2),
    (32, 6, 64, 2, 28, 1),
    (64, 6, 64, 1, 14, 3),
    (64, 6, 96, 1, 14, 1),
    (96, 6, 96, 1, 14, 2),
    (96, 6, 160, 2, 14, 1),
    (160, 6, 160, 1, 7, 2),
    (160, 6, 320, 1, 7, 1),
)


@dataclass
class BlockWeights:
    """One block's torch weights (BN folded in: plain conv weights and biases)."""

    cin: int
    ce: int
    cout: int
    stride: int
    we: Optional[torch.Tensor]
    be: Optional[torch.Tensor]
    wd: torch.Tensor
    bd: torch.Tensor
    wp: torch.Tensor
    bp: torch.Tensor

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.cin == self.cout

    def torch_forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.conv2d(x, self.we, self.be).clamp(0, 6) if self.we is not None else x
        h = F.conv2d(h, self.wd, self.bd, stride=self.stride, padding=1,
                     groups=self.ce).clamp(0, 6)
        y = F.conv2d(h, self.wp, self.bp)
        return y + x if self.residual else y


def block_4x1_mask(w: torch.Tensor, sparsity: float, gen: torch.Generator) -> torch.Tensor:
    """w with whole 4x1 blocks (4 output rows x 1 input channel) zeroed at random."""
    o, i = w.shape[:2]
    keep = torch.rand((o + 3) // 4, i, generator=gen) >= sparsity
    return w * keep.repeat_interleave(4, 0)[:o, :, None, None]


def make_block(cin: int, t: int, cout: int, stride: int, sparsity: float,
               seed: int = 0) -> BlockWeights:
    gen = torch.Generator().manual_seed(seed)
    ce = cin * t

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen) * scale
    we = rnd(ce, cin, 1, 1, scale=cin ** -0.5) if t > 1 else None
    wp = rnd(cout, ce, 1, 1, scale=ce ** -0.5)
    if sparsity > 0:
        we = block_4x1_mask(we, sparsity, gen) if we is not None else None
        wp = block_4x1_mask(wp, sparsity, gen)
    return BlockWeights(cin, ce, cout, stride, we, rnd(ce) if t > 1 else None,
                        rnd(ce, 1, 3, 3, scale=1 / 3), rnd(ce), wp, rnd(cout))


def packed(w: torch.Tensor, bias: Optional[torch.Tensor], rows: int) -> tuple:
    """The tuple InvertedBlock takes for a 1x1 conv: pack()'s arrays and the bias."""
    p = pack(w.numpy(), rows)
    return (p.group_row0, p.group_rows, p.group_ptr, p.entry_col, p.values,
            None if bias is None else bias.numpy())


def fused(b: BlockWeights, rows: int, schedule: int = 0, isa: str = "auto", flags: int = 0):
    K = lib()
    blk = K.InvertedBlock(b.cin, b.ce, b.cout, 3, b.stride,
                          packed(b.we, b.be, rows) if b.we is not None else None,
                          b.wd.numpy(), b.bd.numpy(), packed(b.wp, b.bp, rows),
                          residual=b.residual, schedule=schedule, flags=flags, isa=isa)
    return blk.run


def unfused(b: BlockWeights, rows: int, isa: str = "auto") -> Callable:
    K = lib()

    def sparse(w, bias, act):
        p = pack(w.numpy(), rows)
        return K.SparseConv(p.out_channels, p.in_channels, (1, 1), (1, 1), (0, 0), (1, 1),
                            p.group_row0, p.group_rows, p.group_ptr, p.entry_col, p.values,
                            bias.numpy(), act, isa)
    ex = sparse(b.we, b.be, "relu6") if b.we is not None else None
    dw = K.DepthwiseConv(b.ce, (3, 3), (b.stride, b.stride), (1, 1), (1, 1), b.wd.numpy(),
                         b.bd.numpy(), "relu6", isa)
    pr = sparse(b.wp, b.bp, "none")

    def run(x: np.ndarray) -> np.ndarray:
        h = ex.run(x) if ex is not None else x
        return pr.run(dw.run(h), x if b.residual else None)
    return run


def unfused_tir(b: BlockWeights, rows: int) -> Callable:
    """The 1x1 convs as generated TIR kernels (engine.codegen.host), the depthwise conv native:
    what a compiled artifact runs for the block today when the plan picks backend "tir"."""
    from ..codegen.host import TirConv2d
    K = lib()
    ex = TirConv2d(b.we, b.be, act="relu6", rows=rows) if b.we is not None else None
    dw = K.DepthwiseConv(b.ce, (3, 3), (b.stride, b.stride), (1, 1), (1, 1), b.wd.numpy(),
                         b.bd.numpy(), "relu6", "auto")
    pr = TirConv2d(b.wp, b.bp, act="none", rows=rows)

    def run(x: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(x)
        h = ex(xt) if ex is not None else xt
        d = torch.from_numpy(dw.run(h.numpy()))
        return pr(d, xt if b.residual else None).numpy()
    return run


def min_times(fns: dict, x: np.ndarray, rounds: int) -> dict:
    """Seconds per call of each candidate: single calls in interleaved rounds, the minimum over
    them (on a shared machine noise only adds time; many short samples find the quiet ones)."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(x)
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def bench_block(spec: tuple, sparsity: float, rows: int, rounds: int, tir: bool = False) -> dict:
    cin, t, cout, s, hw, count = spec
    b = make_block(cin, t, cout, s, sparsity)
    x = torch.randn(1, cin, hw, hw, generator=torch.Generator().manual_seed(1))
    ref = b.torch_forward(x).numpy()
    xn = x.numpy()
    rows = 4 if sparsity > 0 else rows
    fns = {"unfused": unfused(b, rows), "fused": fused(b, rows),
           "rows": fused(b, rows, 1, flags=PLANE_DW), "channels": fused(b, rows, 2, flags=PLANE_DW),
           "balanced": fused(b, rows, flags=BALANCED)}
    if tir:
        fns["tir"] = unfused_tir(b, 4 if sparsity > 0 else 4)
    for name, fn in fns.items():
        err = float(np.abs(fn(xn) - ref).max() / (np.abs(ref).max() + 1e-12))
        if err > 1e-4:
            raise RuntimeError(f"{name} disagrees with torch on block {spec}: rel err {err:.1e}")
    ts = min_times(fns, xn, rounds)
    return {"block": f"{cin}-{cin * t}-{cout} s{s} {hw}x{hw}", "count": count,
            "sparsity": sparsity, **{k: v * 1e6 for k, v in ts.items()},
            "ratio": ts["unfused"] / ts["fused"]}


def format_rows(rows: list) -> str:
    cols = tuple(c for c in ("unfused", "fused", "rows", "channels", "balanced", "tir")
                 if c in rows[0])
    lines = [f"{'block':<24} {'sp':>4} " + " ".join(f"{c:>9}" for c in cols) + "  unfused/fused"]
    for r in rows:
        lines.append(f"{r['block']:<24} {r['sparsity']:4.2f} " +
                     " ".join(f"{r[c]:9.1f}" for c in cols) + f"  {r['ratio']:.2f}x")
    for sp in sorted({r["sparsity"] for r in rows}):
        tot = {c: sum(r[c] * r["count"] for r in rows if r["sparsity"] == sp) for c in cols}
        lines.append(f"{'network (x count)':<24} {sp:4.2f} " +
                     " ".join(f"{tot[c]:9.1f}" for c in cols) +
                     f"  {tot['unfused'] / tot['fused']:.2f}x")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--sparsity", default="0,0.8")
    ap.add_argument("--rows", type=int, default=8, help="group height of the dense packs")
    ap.add_argument("--tir", action="store_true", help="add the generated-TIR 1x1s (needs tvm)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.threads < 1 or a.rounds < 1 or not 1 <= a.rows <= 8:
        ap.error("--threads and --rounds must be >= 1, --rows 1..8")
    set_threads(a.threads)
    torch.set_num_threads(a.threads)
    rows = [bench_block(spec, float(sp), a.rows, a.rounds, a.tir)
            for sp in a.sparsity.split(",") for spec in BLOCKS]
    print(format_rows(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
