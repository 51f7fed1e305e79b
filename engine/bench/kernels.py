"""Kernel microbenchmarks: the sparse kernel vs the engine's own dense kernel vs torch dense.

    python -m engine bench kernels [--shapes resnet50_1x1] [--sparsity 0.8] [--block 4x1]
                                   [--threads 2] [--json out.json]
    from engine.bench.kernels import run, format_table
    print(format_table(run(shapes="fc", sparsities=(0.9,), blocks=((4, 1),))))

For every shape (a line of a data file in shapes/) x sparsity x block, a block-structured random
mask (blocks of rows x cols over output x input channels, exactly round(sparsity * #blocks) of
them zero) is packed, and three candidates are timed in ONE run, interleaved round-robin so that
machine noise hits all alike (engine.runtime.measure.compare: warm-up, repeat until a minimum
time per candidate, median):

  torch   F.conv2d / F.linear on the unmasked weight, torch.set_num_threads(threads)
  dense   the engine's kernel on a fully dense pack with the same row-group height as the sparse
          one, so the same microkernel tile: the ratio isolates what skipping zeros buys
  sparse  the engine's kernel on the masked weight

Reported per row: the three median times, the sparse kernel's speedup over both dense candidates
(ratios from the one run; compare ratios, not absolute times across runs), GFLOP/s over stored
weights (2 * stored * pixels / t, "useful" FLOP/s as XNNPACK reports them) and dense-equivalent
GFLOP/s (2 * O * C * pixels / t), and the kernel name. Outputs are checked against torch before
timing, so a fast wrong kernel cannot post a number.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..runtime.measure import compare
from ..runtime.packing import pack
from .. import cli_checks as chk

SHAPES_DIR = Path(__file__).resolve().parent / "shapes"
DEFAULT_SPARSITIES = (0.5, 0.8, 0.9)
DEFAULT_BLOCKS = ((1, 1), (4, 1), (8, 1), (16, 1), (4, 4), (8, 4))
DEFAULT_MIN_TIME = 0.1  # seconds per candidate per row


def _kernels():
    from ..runtime.native import lib
    return lib()


# --------------------------------------------------------------------------------------- shapes

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
        ho, wo = self.out_hw
        return ho * wo

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


# ----------------------------------------------------------------------------------------- masks

def block_mask(out_channels: int, in_channels: int, block: tuple[int, int], sparsity: float,
               generator: torch.Generator) -> torch.Tensor:
    """Bool (O, C) mask of (rows x cols) blocks, exactly round(sparsity * #blocks) of them zero
    (edge blocks are cropped when the block does not divide the channels)."""
    br, bc = block
    if br < 1 or bc < 1:
        raise ValueError(f"block must be >= 1x1, got {br}x{bc}")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    nr, nc = -(-out_channels // br), -(-in_channels // bc)
    keep = torch.ones(nr * nc, dtype=torch.bool)
    keep[torch.randperm(nr * nc, generator=generator)[:round(sparsity * nr * nc)]] = False
    full = keep.reshape(nr, nc).repeat_interleave(br, 0).repeat_interleave(bc, 1)
    return full[:out_channels, :in_channels].contiguous()


# ------------------------------------------------------------------------------------- one row

@dataclass
class Result:
    """One shape x sparsity x block measurement (seconds, medians of one interleaved run)."""

    shape: Shape
    sparsity: float          # requested fraction of zero blocks
    block: tuple[int, int]
    threads: int
    isa: str
    kernel: str              # sparse kernel name
    dense_kernel: str        # engine dense kernel name
    stored: int              # weights the sparse kernel stores (and multiplies)
    t_torch: float
    t_dense: float
    t_sparse: float

    @property
    def density(self) -> float:
        return self.stored / (self.shape.out_channels * self.shape.in_channels)

    @property
    def speedup_vs_torch(self) -> float:
        return self.t_torch / self.t_sparse

    @property
    def speedup_vs_dense(self) -> float:
        return self.t_dense / self.t_sparse

    @property
    def gflops_nnz(self) -> float:
        """Useful GFLOP/s: 2 * stored weights * pixels / t."""
        return 2.0 * self.stored * self.shape.pixels / self.t_sparse / 1e9

    @property
    def gflops_dense_equiv(self) -> float:
        """Dense-equivalent GFLOP/s: the dense layer's FLOPs / t."""
        return self.shape.dense_flops / self.t_sparse / 1e9

    @property
    def gflops_torch(self) -> float:
        return self.shape.dense_flops / self.t_torch / 1e9

    @property
    def gflops_dense(self) -> float:
        return self.shape.dense_flops / self.t_dense / 1e9

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = {**asdict(self.shape), "label": self.shape.label, "pixels": self.shape.pixels}
        d["block"] = list(self.block)
        for k in ("density", "speedup_vs_torch", "speedup_vs_dense", "gflops_nnz",
                  "gflops_dense_equiv", "gflops_torch", "gflops_dense"):
            d[k] = getattr(self, k)
        return d


@dataclass
class Case:
    """The three ready-to-call candidates for one row, plus what is needed to check them."""

    shape: Shape
    block: tuple[int, int]
    sparsity: float
    candidates: dict[str, Callable[[], object]]
    sparse: object            # engine._kernels.SparseConv
    dense: object
    reference: Callable[[], tuple[torch.Tensor, torch.Tensor]]  # (masked, unmasked) outputs
    as_torch: Callable[[np.ndarray], torch.Tensor]  # kernel output -> torch's layout


def _native(weight: torch.Tensor, rows: int, shape: Shape, isa: str):
    p = pack(weight.numpy(), rows)
    s = shape.stride
    return _kernels().SparseConv(p.out_channels, p.in_channels, p.kernel, (s, s), (0, 0), (1, 1),
                                 p.group_row0, p.group_rows, p.group_ptr, p.entry_col, p.values,
                                 None, "none", isa)


def build_case(shape: Shape, sparsity: float, block: tuple[int, int], isa: str = "auto",
               seed: int = 0) -> Case:
    """Random weight and input (seeded), block mask, packs, and the three callables."""
    g = torch.Generator().manual_seed(seed)
    o, c = shape.out_channels, shape.in_channels
    w = torch.randn(o, c, generator=g)
    wm = w * block_mask(o, c, block, sparsity, g)
    sparse = _native(wm, block[0], shape, isa)
    dense = _native(w, block[0], shape, isa)
    if shape.linear:
        n = shape.width
        x = torch.randn(n, c, generator=g)
        xk = x.t().contiguous().reshape(1, c, 1, n).numpy()  # features as channels, rows as pixels

        def torch_dense():
            return F.linear(x, w)

        def reference():
            return F.linear(x, wm), F.linear(x, w)

        def as_torch(y):
            return torch.from_numpy(y).reshape(o, n).t()
    else:
        x = torch.randn(1, c, shape.height, shape.width, generator=g)
        xk = x.numpy()
        w4, wm4 = w[:, :, None, None], wm[:, :, None, None]

        def torch_dense():
            return F.conv2d(x, w4, None, shape.stride)

        def reference():
            return F.conv2d(x, wm4, None, shape.stride), F.conv2d(x, w4, None, shape.stride)

        def as_torch(y):
            return torch.from_numpy(y)

    return Case(shape, tuple(block), sparsity,
                {"torch": torch_dense, "dense": lambda: dense.run(xk),
                 "sparse": lambda: sparse.run(xk)},
                sparse, dense, reference, as_torch)


def check_case(case: Case, rtol: float = 1e-4) -> None:
    """Raise AssertionError unless the sparse / dense kernels match torch on this case."""
    ref_masked, ref_dense = case.reference()
    for name, ref in (("sparse", ref_masked), ("dense", ref_dense)):
        y = case.as_torch(case.candidates[name]())
        scale = max(1.0, float(ref.abs().max()))
        err = float((y - ref).abs().max()) if y.shape == ref.shape else math.inf
        if not err <= rtol * scale:
            raise AssertionError(f"{case.shape.label} sparsity {case.sparsity} block "
                                 f"{case.block[0]}x{case.block[1]}: {name} kernel differs from "
                                 f"torch (max abs err {err:.3g}, scale {scale:.3g})")


def bench_one(shape: Shape, sparsity: float, block: tuple[int, int], threads: int,
              min_time: float = DEFAULT_MIN_TIME, isa: str = "auto", seed: int = 0,
              check: bool = True) -> Result:
    """Time torch dense, engine dense and engine sparse on one row, interleaved in one run.
    The caller sets thread counts (see run)."""
    case = build_case(shape, sparsity, block, isa, seed)
    if check:
        check_case(case)
    times = compare(case.candidates, min_time=min_time)
    return Result(shape, sparsity, tuple(block), threads, isa, case.sparse.kernel_name,
                  case.dense.kernel_name, int(case.sparse.nnz), times["torch"], times["dense"],
                  times["sparse"])


# ------------------------------------------------------------------------------------ the sweep

def run(shapes: Union[str, Path, Iterable] = "resnet50_1x1",
        sparsities: Sequence[float] = DEFAULT_SPARSITIES,
        blocks: Sequence[tuple[int, int]] = DEFAULT_BLOCKS, threads: Optional[int] = None,
        min_time: float = DEFAULT_MIN_TIME, isa: str = "auto", seed: int = 0, check: bool = True,
        progress: Optional[Callable[[Result], None]] = None) -> list[Result]:
    """Every shape x sparsity x block. threads=None keeps the kernels' current count (default:
    hardware concurrency); torch is set to the same count. Both are restored afterwards."""
    k = _kernels()
    rows = load_shapes(shapes)
    old_k, old_t = k.get_num_threads(), torch.get_num_threads()
    n = int(threads) if threads is not None else old_k
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    results = []
    try:
        k.set_num_threads(n)
        torch.set_num_threads(n)
        for i, shape in enumerate(rows):
            for s in sparsities:
                for b in blocks:
                    r = bench_one(shape, float(s), tuple(b), n, min_time, isa, seed + i, check)
                    results.append(r)
                    if progress:
                        progress(r)
    finally:
        k.set_num_threads(old_k)
        torch.set_num_threads(old_t)
    return results


# --------------------------------------------------------------------------------------- report

COLUMNS = ("shape", "sparsity", "block", "thr", "torch ms", "dense ms", "sparse ms", "x torch",
           "x dense", "GF/s nnz", "GF/s eq", "kernel")


def _row(r: Result) -> list[str]:
    return [r.shape.label, f"{r.sparsity:.2f}", f"{r.block[0]}x{r.block[1]}", str(r.threads),
            f"{r.t_torch * 1e3:.3f}", f"{r.t_dense * 1e3:.3f}", f"{r.t_sparse * 1e3:.3f}",
            f"{r.speedup_vs_torch:.2f}", f"{r.speedup_vs_dense:.2f}", f"{r.gflops_nnz:.1f}",
            f"{r.gflops_dense_equiv:.1f}", r.kernel]


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def format_table(results: Sequence[Result]) -> str:
    """Plain-text table, one row per result, then geometric-mean speedups per sparsity x block."""
    rows = [list(COLUMNS)] + [_row(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    left = {0, len(COLUMNS) - 1}

    def fmt(row):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    lines = [fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]]
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        groups.setdefault((r.sparsity, r.block), []).append(r)
    if any(len(v) > 1 for v in groups.values()):
        lines += ["", "geometric mean over shapes:"]
        for (s, b), rs in groups.items():
            lines.append(f"  sparsity {s:.2f} block {b[0]}x{b[1]}: x torch "
                         f"{_geomean([r.speedup_vs_torch for r in rs]):.2f}, x dense "
                         f"{_geomean([r.speedup_vs_dense for r in rs]):.2f} ({len(rs)} shapes)")
    return "\n".join(lines)


def environment() -> dict:
    """Where and under what load the numbers were taken (load average: a busy box skews them)."""
    k = _kernels()
    env = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.machine(),
           "processor": platform.processor(), "cpus": os.cpu_count(), "torch": torch.__version__,
           "best_isa": k.best_isa(), "available_isas": list(k.available_isas())}
    if hasattr(os, "getloadavg"):
        env["loadavg"] = list(os.getloadavg())
    return env


# ------------------------------------------------------------------------------------------ CLI

def _split(values: Optional[list[str]]) -> list[str]:
    return [v for item in values or [] for v in item.split(",") if v.strip()]


def parse_block(text: str) -> tuple[int, int]:
    """"4x1" -> (4, 1)."""
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"block must look like 4x1, got {text!r}") from None
    if r < 1 or c < 1:
        raise argparse.ArgumentTypeError(f"block must be >= 1x1, got {text!r}")
    return r, c


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m engine bench kernels ...`; returns the exit status."""
    ap = chk.Parser(
        prog="python -m engine bench kernels",
        description="Time the sparse kernel against torch dense and the engine's dense kernel.")
    ap.add_argument("--shapes", action="append", metavar="NAME|FILE",
                    help=f"shape file name or path, repeatable / comma-separated "
                         f"(default resnet50_1x1; known: {', '.join(shape_files())})")
    ap.add_argument("--sparsity", action="append", metavar="S",
                    help=f"fraction of zero blocks, repeatable / comma-separated "
                         f"(default {','.join(map(str, DEFAULT_SPARSITIES))})")
    ap.add_argument("--block", action="append", metavar="RxC",
                    help="block rows x cols over output x input channels, repeatable / "
                         "comma-separated (default " +
                         ",".join(f"{r}x{c}" for r, c in DEFAULT_BLOCKS) + ")")
    ap.add_argument("--threads", type=chk.threads, default=None,
                    help="threads for the kernels and torch (default: the kernels' default)")
    ap.add_argument("--isa", default="auto", help="kernel ISA variant (default auto)")
    ap.add_argument("--min-time", type=chk.seconds, default=DEFAULT_MIN_TIME,
                    help=f"seconds per candidate per row (default {DEFAULT_MIN_TIME})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-check", action="store_true", help="skip the correctness check")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--quiet", action="store_true", help="no per-row progress on stderr")
    ap.add_argument("--list", action="store_true", help="list the shape files and exit")
    args = ap.parse_args(argv)

    if args.list:
        for name in shape_files():
            print(f"{name}: {len(load_shapes(name))} shapes")
        return 0
    try:
        shapes = load_shapes(_split(args.shapes) or ["resnet50_1x1"])
        sparsities = [float(v) for v in _split(args.sparsity)] or list(DEFAULT_SPARSITIES)
        blocks = [parse_block(v) for v in _split(args.block)] or list(DEFAULT_BLOCKS)
    except (ValueError, argparse.ArgumentTypeError) as e:
        ap.error(str(e))
    if any(not 0.0 <= s <= 1.0 for s in sparsities):
        ap.error(f"sparsity must be in [0, 1], got {sparsities}")
    k = _kernels()
    if not k.isa_available(args.isa) and args.isa != "auto":
        ap.error(f"ISA {args.isa!r} not available here; available: {k.available_isas()}")

    env_before = environment()
    progress = None if args.quiet else (
        lambda r: print("  " + "  ".join(_row(r)), file=sys.stderr, flush=True))
    results = run(shapes, sparsities, blocks, args.threads, args.min_time, args.isa, args.seed,
                  not args.no_check, progress)
    env_after = environment()
    threads = results[0].threads if results else args.threads
    print(f"# engine kernel bench: isa {args.isa} (best {env_before['best_isa']}), threads "
          f"{threads}, min time {args.min_time}s/candidate, median of interleaved runs; "
          f"load avg before {env_before.get('loadavg', ['?'])[0]}, "
          f"after {env_after.get('loadavg', ['?'])[0]} on {env_before['cpus']} cpus")
    print(format_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": {"before": env_before,
                                                         "after": env_after},
                                         "settings": {"isa": args.isa, "threads": threads,
                                                      "min_time": args.min_time,
                                                      "seed": args.seed},
                                         "results": [r.to_dict() for r in results]}, indent=1))
        print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
