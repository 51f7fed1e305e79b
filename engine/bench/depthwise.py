"""Depthwise conv microbenchmark: the direct depthwise kernel vs torch vs the sparse-SpMM path.

    python -m engine.bench.depthwise [--threads 2] [--isa auto[,avx2,...]] [--act relu6]
                                     [--min-time 0.1] [--json out.json]
    from engine.bench.depthwise import run, format_table
    print(format_table(run()))

For each depthwise layer shape of MobileNetV2 at 224x224, batch 1 (SHAPES: channels, input
height and width, stride; 3x3, padding 1), three candidates are timed in ONE run, interleaved
(engine.runtime.measure.compare, blocks of 3), each computing act(conv2d(x, w, b, groups=C)):

  torch   F.conv2d(groups=C) then the activation (in place), torch.set_num_threads(threads)
  spmm    the path depthwise convs took before this kernel (and other grouped convs still
          take): engine._kernels.SparseConv on pack(weight, 1, groups=C), the block-diagonal
          one-row-per-group pack (activation fused)
  dw      engine._kernels.DepthwiseConv (bias and activation fused), one column per --isa

Reported per shape: the medians, ratios from the same run (torch / dw, spmm / dw: > 1 means the
depthwise kernel is faster), the depthwise kernel's memory throughput (input + output bytes per
second; the op is memory-bound: 9 MACs per output) and its kernel name; then the totals over the
shapes. Every candidate's output is checked against float64 torch before timing.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..runtime.measure import compare
from ..runtime.packing import pack
from .. import cli_checks as chk

# MobileNetV2 (224x224) depthwise layers: channels, input H, input W, stride; all 3x3 pad 1.
SHAPES = (
    (32, 112, 112, 1),
    (96, 112, 112, 2),
    (144, 56, 56, 1),
    (144, 56, 56, 2),
    (192, 28, 28, 1),
    (192, 28, 28, 2),
    (384, 14, 14, 1),
    (576, 14, 14, 1),
    (576, 14, 14, 2),
    (960, 7, 7, 1),
)
ACTS = ("none", "relu", "relu6")
DEFAULT_MIN_TIME = 0.1


def _kernels():
    from ..runtime.native import lib
    return lib()


@dataclass
class Result:
    """One shape: median seconds per candidate, from one interleaved run."""

    channels: int
    height: int
    width: int
    stride: int
    threads: int
    times: dict                       # candidate name -> seconds
    kernels: dict = field(default_factory=dict)  # dw candidate name -> kernel name

    @property
    def label(self) -> str:
        return f"{self.channels}x{self.height}x{self.width} s{self.stride}"

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.height - 1) // self.stride + 1, (self.width - 1) // self.stride + 1

    @property
    def bytes_moved(self) -> int:
        """Input + output float32 bytes: the least a depthwise layer must move."""
        ho, wo = self.out_hw
        return 4 * self.channels * (self.height * self.width + ho * wo)


def _activate(y: torch.Tensor, act: str) -> torch.Tensor:
    if act == "relu":
        return F.relu(y, inplace=True)
    if act == "relu6":
        return F.relu6(y, inplace=True)
    return y


def build_candidates(c: int, h: int, w: int, s: int, isas: Sequence[str], act: str,
                     seed: int = 0) -> tuple[dict, dict, Callable[[], torch.Tensor]]:
    """(name -> zero-argument callable returning the output as a tensor, dw name -> kernel
    name, the float64 reference)."""
    k = _kernels()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, h, w, generator=gen)
    weight = torch.randn(c, 1, 3, 3, generator=gen)
    bias = torch.randn(c, generator=gen)
    xn, wn, bn = x.numpy(), weight.numpy(), bias.numpy()

    def torch_dw():
        return _activate(F.conv2d(x, weight, bias, s, 1, 1, c), act)

    p = pack(wn, 1, groups=c)
    spmm = k.SparseConv(p.out_channels, p.in_channels, p.kernel, (s, s), (1, 1), (1, 1),
                        p.group_row0, p.group_rows, p.group_ptr, p.entry_col, p.values, bn, act,
                        "auto")
    cands = {"torch": torch_dw, "spmm": lambda: torch.from_numpy(spmm.run(xn))}
    names = {}
    for isa in isas:
        dw = k.DepthwiseConv(c, (3, 3), (s, s), (1, 1), (1, 1), wn, bn, act, isa)
        label = "dw" if len(isas) == 1 else f"dw[{isa}]"
        cands[label] = (lambda d: lambda: torch.from_numpy(d.run(xn)))(dw)
        names[label] = dw.kernel_name

    def reference():
        y = F.conv2d(x.double(), weight.double(), bias.double(), s, 1, 1, c)
        return {"none": y, "relu": y.clamp_min(0), "relu6": y.clamp(0, 6)}[act]

    return cands, names, reference


def run(shapes: Sequence[tuple] = SHAPES, threads: int = 2, isas: Sequence[str] = ("auto",),
        act: str = "relu6", min_time: float = DEFAULT_MIN_TIME, check: bool = True,
        progress: Optional[Callable[[Result], None]] = None) -> list[Result]:
    k = _kernels()
    k.set_num_threads(threads)
    torch.set_num_threads(threads)
    results = []
    for c, h, w, s in shapes:
        cands, names, reference = build_candidates(c, h, w, s, isas, act)
        if check:
            ref = reference()
            for name, fn in cands.items():
                y = fn().double()
                err = float((y - ref).abs().max())
                if y.shape != ref.shape or not err <= 1e-4 * max(1.0, float(ref.abs().max())):
                    raise AssertionError(f"{name} is wrong on {c}x{h}x{w} s{s}: max error {err}")
        times = compare(cands, min_time=min_time, block=3)
        r = Result(c, h, w, s, threads, times, names)
        results.append(r)
        if progress:
            progress(r)
    return results


def format_table(results: Sequence[Result]) -> str:
    """One row per shape (medians in ms, ratios to the depthwise kernel), then the totals."""
    if not results:
        return "(no results)"
    dws = list(results[0].kernels)
    cols = ["shape", "torch ms", "spmm ms"] + [f"{d} ms" for d in dws]
    for d in dws:
        cols += [f"torch/{d}", f"spmm/{d}"]
    cols += [f"{dws[0]} GB/s", "kernel"]

    def row(label, times, gbs, kernel):
        out = [label, f"{times['torch'] * 1e3:.4f}", f"{times['spmm'] * 1e3:.4f}"]
        out += [f"{times[d] * 1e3:.4f}" for d in dws]
        for d in dws:
            out += [f"{times['torch'] / times[d]:.2f}", f"{times['spmm'] / times[d]:.2f}"]
        return out + [gbs, kernel]

    rows = [cols]
    for r in results:
        rows.append(row(r.label, r.times, f"{r.bytes_moved / r.times[dws[0]] / 1e9:.1f}",
                        r.kernels[dws[0]]))
    total = {n: sum(r.times[n] for r in results) for n in results[0].times}
    moved = sum(r.bytes_moved for r in results)
    rows.append(row("total", total, f"{moved / total[dws[0]] / 1e9:.1f}", ""))
    widths = [max(len(x[i]) for x in rows) for i in range(len(cols))]
    left = {0, len(cols) - 1}

    def fmt(x):
        return "  ".join(v.ljust(wd) if i in left else v.rjust(wd)
                         for i, (v, wd) in enumerate(zip(x, widths))).rstrip()

    lines = [fmt(rows[0]), "  ".join("-" * wd for wd in widths)] + [fmt(x) for x in rows[1:]]
    return "\n".join(lines[:-1] + ["  ".join("-" * wd for wd in widths), lines[-1]])


def environment() -> dict:
    k = _kernels()
    env = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.machine(),
           "cpus": os.cpu_count(), "torch": torch.__version__, "best_isa": k.best_isa()}
    if hasattr(os, "getloadavg"):
        env["loadavg"] = list(os.getloadavg())
    return env


def main(argv: Optional[list[str]] = None) -> int:
    ap = chk.Parser(
        prog="python -m engine.bench.depthwise",
        description="Time the depthwise kernel against torch and the sparse-SpMM path on "
                    "MobileNetV2's depthwise layers.")
    ap.add_argument("--threads", type=chk.threads, default=2, help="threads for every candidate (2)")
    ap.add_argument("--isa", default="auto",
                    help="depthwise ISA variants, comma-separated (default auto)")
    ap.add_argument("--act", default="relu6", choices=ACTS, help="fused activation (relu6)")
    ap.add_argument("--min-time", type=chk.seconds, default=DEFAULT_MIN_TIME,
                    help=f"seconds per candidate per shape (default {DEFAULT_MIN_TIME})")
    ap.add_argument("--no-check", action="store_true", help="skip the correctness check")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    k = _kernels()
    isas = [v.strip() for v in args.isa.split(",") if v.strip()]
    for isa in isas:
        if isa != "auto" and not k.isa_available(isa):
            ap.error(f"ISA {isa!r} not available here; available: {k.available_isas()}")
    env = environment()
    results = run(SHAPES, args.threads, isas, args.act, args.min_time, not args.no_check,
                  lambda r: print(f"  {r.label} done", file=sys.stderr, flush=True))
    print(f"depthwise 3x3 pad 1, MobileNetV2 224x224 batch 1, act {args.act}, "
          f"{args.threads} threads, best ISA {env['best_isa']}, load {env.get('loadavg')}")
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "act": args.act, "results": [
            {**asdict(r), "label": r.label} for r in results]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
