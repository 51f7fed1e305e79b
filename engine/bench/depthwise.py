"""Depthwise conv microbenchmark: the direct depthwise kernel vs torch vs the sparse-SpMM path.

    python -m engine.bench.depthwise [--threads 2] [--isa auto[,avx2,...]|all] [--act relu6]
                                     [--kernel f32_dwconv_5x5s2__avx512] [--min-time 0.1]
                                     [--models mobilenetv3_large,efficientnet_b0] [--json out.json]
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

The kernels are the library's list (engine._kernels.list_kernels()): each dw column must run
the kernel the list has for the geometry on its ISA, --isa all takes every ISA with listed
depthwise kernels that this CPU runs, and --kernel NAME runs one listed kernel on its ISA over
the shapes of its stride with its k x k taps (the generic kernel: 3x3 at dilation 2, as in
DeepLab's atrous depthwise convs); --models takes the distinct depthwise layers of engine.zoo
models instead of SHAPES (zoo_shapes: 3x3 and 5x5, as each network runs them). Reported per shape: the medians, ratios from the same run
(torch / dw, spmm / dw: > 1 means the depthwise kernel is faster), the depthwise kernel's memory
throughput (input + output bytes per second; the op is memory-bound: k*k MACs per output) and
its kernel name; then the totals over the shapes. Every candidate's output is checked against
float64 torch before timing.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from .. import cli_checks as chk
from ..runtime.measure import compare
from ..runtime.native import lib
from ..runtime.packing import pack
from .report import environment, format_table as table, listed_kernels, split_values

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
    kernel_size: int = 3              # k x k taps, padding dilation * (k // 2)
    dilation: int = 1

    @property
    def label(self) -> str:
        k, d = self.kernel_size, self.dilation
        extra = ("" if k == 3 else f" k{k}") + ("" if d == 1 else f" d{d}")
        return f"{self.channels}x{self.height}x{self.width} s{self.stride}{extra}"

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.height - 1) // self.stride + 1, (self.width - 1) // self.stride + 1

    @property
    def bytes_moved(self) -> int:
        """Input + output float32 bytes: the least a depthwise layer must move."""
        ho, wo = self.out_hw
        return 4 * self.channels * (self.height * self.width + ho * wo)


def zoo_shapes(models: Sequence[str]) -> list[tuple]:
    """(C, H, W, stride, k, 1) of every distinct depthwise conv (k x k, padding k // 2) of the
    engine.zoo models, in network order (traced on the meta device: no weights, no compute)."""
    from .make_shapes import _trace

    def depthwise(m):
        if (isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels == m.out_channels > 1
                and m.kernel_size[0] == m.kernel_size[1] and m.stride[0] == m.stride[1]
                and m.padding == (m.kernel_size[0] // 2,) * 2 and m.dilation == (1, 1)):
            return lambda m, x: (m.in_channels, x.shape[2], x.shape[3], m.stride[0],
                                 m.kernel_size[0], 1)
        return None

    return list(dict.fromkeys(key for name in models for key, _ in _trace(name, depthwise)))


def _activate(y: torch.Tensor, act: str) -> torch.Tensor:
    if act == "relu":
        return F.relu(y, inplace=True)
    if act == "relu6":
        return F.relu6(y, inplace=True)
    return y


def listed_kernel(isa: str, k: int, s: int, d: int) -> str:
    """The kernel the list has for this geometry on isa: the specialised one for k x k, stride
    s at dilation 1, else isa's generic one."""
    listed = [kr for kr in lib().list_kernels()
              if kr["family"] == "f32_dwconv" and kr["isa"] == isa]
    for kr in listed:
        if d == 1 and kr["tile"] == {"kernel": k, "stride": s}:
            return kr["name"]
    return next(kr["name"] for kr in listed if not kr["tile"])


def build_candidates(c: int, h: int, w: int, s: int, isas: Sequence[str], act: str,
                     seed: int = 0, k: int = 3, d: int = 1
                     ) -> tuple[dict, dict, Callable[[], torch.Tensor]]:
    """(name -> zero-argument callable returning the output as a tensor, dw name -> kernel
    name, the float64 reference) for a k x k, stride s, dilation d layer padded to keep the
    size ("same" padding: d * (k // 2))."""
    kl, p = lib(), d * (k // 2)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, h, w, generator=gen)
    weight = torch.randn(c, 1, k, k, generator=gen)
    bias = torch.randn(c, generator=gen)
    xn, wn, bn = x.numpy(), weight.numpy(), bias.numpy()
    pk = pack(wn, 1, groups=c)
    spmm = kl.SparseConv(pk.out_channels, pk.in_channels, pk.kernel, (s, s), (p, p), (d, d),
                         pk.group_row0, pk.group_rows, pk.group_ptr, pk.entry_col, pk.values, bn,
                         act, "auto")
    cands = {"torch": lambda: _activate(F.conv2d(x, weight, bias, s, p, d, c), act),
             "spmm": lambda: torch.from_numpy(spmm.run(xn))}
    names = {}
    for isa in isas:
        dw = kl.DepthwiseConv(c, (k, k), (s, s), (p, p), (d, d), wn, bn, act, isa)
        label = "dw" if len(isas) == 1 else f"dw[{isa}]"
        cands[label] = (lambda layer: lambda: torch.from_numpy(layer.run(xn)))(dw)
        names[label] = dw.kernel_name
        run_isa = kl.best_isa() if isa == "auto" else isa
        if dw.kernel_name != listed_kernel(run_isa, k, s, d):
            raise AssertionError(f"{dw.kernel_name} ran, the list has "
                                 f"{listed_kernel(run_isa, k, s, d)} for k{k} s{s} d{d}")

    def reference():
        y = F.conv2d(x.double(), weight.double(), bias.double(), s, p, d, c)
        return {"none": y, "relu": y.clamp_min(0), "relu6": y.clamp(0, 6)}[act]

    return cands, names, reference


def _check(cands: dict, reference: Callable[[], torch.Tensor], label: str) -> None:
    ref = reference()
    for name, fn in cands.items():
        y = fn().double()
        err = float((y - ref).abs().max())
        if y.shape != ref.shape or not err <= 1e-4 * max(1.0, float(ref.abs().max())):
            raise AssertionError(f"{name} is wrong on {label}: max error {err}")


def kernel_shapes(kernel: dict) -> list[tuple]:
    """(C, H, W, stride, k, dilation) rows for one listed kernel: the shapes of its stride with
    its k x k taps; the generic kernel: every shape, 3x3 at dilation 2."""
    tile = kernel["tile"]
    if not tile:
        return [(c, h, w, s, 3, 2) for c, h, w, s in SHAPES]
    return [(c, h, w, s, tile["kernel"], 1) for c, h, w, s in SHAPES if s == tile["stride"]]


def run(shapes: Sequence[tuple] = SHAPES, threads: int = 2, isas: Sequence[str] = ("auto",),
        act: str = "relu6", min_time: float = DEFAULT_MIN_TIME, check: bool = True,
        progress: Optional[Callable[[Result], None]] = None) -> list[Result]:
    """Every shape: (C, H, W, stride) at 3x3, or (C, H, W, stride, k, dilation)."""
    kl = lib()
    kl.set_num_threads(threads)
    torch.set_num_threads(threads)
    results = []
    for shape in shapes:
        c, h, w, s, k, d = (*shape, 3, 1) if len(shape) == 4 else shape
        cands, names, reference = build_candidates(c, h, w, s, isas, act, k=k, d=d)
        r = Result(c, h, w, s, threads, {}, names, k, d)
        if check:
            _check(cands, reference, r.label)
        r.times = compare(cands, min_time=min_time, block=3)
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

    rows = [row(r.label, r.times, f"{r.bytes_moved / r.times[dws[0]] / 1e9:.1f}",
                r.kernels[dws[0]]) for r in results]
    total = {n: sum(r.times[n] for r in results) for n in results[0].times}
    moved = sum(r.bytes_moved for r in results)
    return table(cols, rows, footer=row("total", total, f"{moved / total[dws[0]] / 1e9:.1f}", ""))


def _parser() -> chk.Parser:
    ap = chk.Parser(
        prog="python -m engine.bench.depthwise",
        description="Time the depthwise kernel against torch and the sparse-SpMM path on "
                    "MobileNetV2's depthwise layers.")
    ap.add_argument("--threads", type=chk.threads, default=2,
                    help="threads for every candidate (2)")
    ap.add_argument("--isa", default="auto",
                    help="depthwise ISA variants, comma-separated, or all (default auto)")
    ap.add_argument("--kernel", metavar="NAME",
                    help="one listed f32_dwconv kernel, on its ISA (see bench kernels "
                         "--list-kernels)")
    ap.add_argument("--models", metavar="NAMES",
                    help="the depthwise layers of these engine.zoo models, comma-separated "
                         "(default: MobileNetV2's, SHAPES)")
    ap.add_argument("--act", default="relu6", choices=ACTS, help="fused activation (relu6)")
    ap.add_argument("--min-time", type=chk.seconds, default=DEFAULT_MIN_TIME,
                    help=f"seconds per candidate per shape (default {DEFAULT_MIN_TIME})")
    ap.add_argument("--no-check", action="store_true", help="skip the correctness check")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    return ap


def _isas_and_shapes(ap: chk.Parser, args) -> tuple[list[str], list[tuple]]:
    """The dw columns' ISAs and the shapes, from --isa / --kernel, or a usage error."""
    try:
        if args.kernel:
            kernel = listed_kernels("f32_dwconv", [args.kernel])[0]
            return [kernel["isa"]], kernel_shapes(kernel)
        isas = split_values([args.isa])
        if isas == ["all"]:
            isas = list(dict.fromkeys(k["isa"] for k in listed_kernels("f32_dwconv", ["all"])))
    except ValueError as e:
        ap.error(str(e))
    for isa in isas:
        if isa != "auto" and not lib().isa_available(isa):
            ap.error(f"ISA {isa!r} not available here; available: {lib().available_isas()}")
    if not args.models:
        return isas, list(SHAPES)
    from .. import zoo
    models = split_values([args.models])
    unknown = [m for m in models if m not in zoo.list_models()]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {zoo.list_models()}")
    return isas, zoo_shapes(models)


def main(argv: Optional[list[str]] = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    isas, shapes = _isas_and_shapes(ap, args)
    env = environment()
    results = run(shapes, args.threads, isas, args.act, args.min_time, not args.no_check,
                  lambda r: print(f"  {r.label} done", file=sys.stderr, flush=True))
    what = args.kernel or ("k x k pad k // 2" if args.models else "3x3 pad 1")
    print(f"depthwise {what}, {args.models or 'MobileNetV2'} 224x224 batch 1, act {args.act}, "
          f"{args.threads} threads, best ISA {env['best_isa']}, load {env.get('loadavg')}")
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "act": args.act, "results": [
            {**asdict(r), "label": r.label} for r in results]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
