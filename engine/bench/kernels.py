"""Kernel microbenchmarks: the sparse kernel vs the engine's own dense kernel vs torch dense.

    python -m engine bench kernels [--shapes resnet50_1x1] [--sparsity 0.8] [--block 4x1]
                                   [--kernel f32_spmm_4x96__avx512|all] [--threads 2]
                                   [--json out.json] [--list-kernels]
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

The kernels are the library's list (engine._kernels.list_kernels()): --kernel NAME (or all) runs
each listed f32_spmm kernel on its ISA with blocks of its row count (rows x 1) and checks that
the layers run exactly that kernel; without it, --isa and --block choose. Reported per row: the
three median times, the sparse kernel's speedup over both dense candidates (ratios from the one
run; compare ratios, not absolute times across runs), GFLOP/s over stored weights (2 * stored *
pixels / t, "useful" FLOP/s as XNNPACK reports them) and dense-equivalent GFLOP/s (2 * O * C *
pixels / t), and the kernel name. Outputs are checked against torch before timing, so a fast
wrong kernel cannot post a number.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .. import cli_checks as chk
from ..runtime.measure import compare
from ..runtime.native import lib
from ..runtime.packing import pack
# the shapes live in layer_shapes.py; these names stay importable from here (bench/tir.py)
from .layer_shapes import SHAPES_DIR, Shape, load_shapes, parse_shapes, shape_files  # noqa: F401
from .report import environment, geomean, listed_kernels, split_values
from .report import format_table as table

DEFAULT_SPARSITIES = (0.5, 0.8, 0.9)
DEFAULT_BLOCKS = ((1, 1), (4, 1), (8, 1), (16, 1), (4, 4), (8, 4))
DEFAULT_MIN_TIME = 0.1  # seconds per candidate per row


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

    # ratios and rates of the one run; "useful" GFLOP/s count the stored weights only
    density = property(lambda r: r.stored / (r.shape.out_channels * r.shape.in_channels))
    speedup_vs_torch = property(lambda r: r.t_torch / r.t_sparse)
    speedup_vs_dense = property(lambda r: r.t_dense / r.t_sparse)
    gflops_nnz = property(lambda r: 2.0 * r.stored * r.shape.pixels / r.t_sparse / 1e9)
    gflops_dense_equiv = property(lambda r: r.shape.dense_flops / r.t_sparse / 1e9)
    gflops_torch = property(lambda r: r.shape.dense_flops / r.t_torch / 1e9)
    gflops_dense = property(lambda r: r.shape.dense_flops / r.t_dense / 1e9)
    DERIVED = ("density", "speedup_vs_torch", "speedup_vs_dense", "gflops_nnz",
               "gflops_dense_equiv", "gflops_torch", "gflops_dense")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = {**asdict(self.shape), "label": self.shape.label, "pixels": self.shape.pixels}
        d["block"] = list(self.block)
        d.update({k: getattr(self, k) for k in self.DERIVED})
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
    return lib().SparseConv(p.out_channels, p.in_channels, p.kernel, (s, s), (0, 0), (1, 1),
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

def _runs(blocks: Sequence[tuple[int, int]], isa: str, kernels: Sequence[dict]) -> list[tuple]:
    """(isa, block, listed kernel name or None) per block of every row: the listed kernels on
    their ISA with rows x 1 blocks, else every block on isa."""
    if kernels:
        return [(k["isa"], (k["tile"]["rows"], 1), k["name"]) for k in kernels]
    return [(isa, tuple(b), None) for b in blocks]


def run(shapes: Union[str, Path, Sequence] = "resnet50_1x1",
        sparsities: Sequence[float] = DEFAULT_SPARSITIES,
        blocks: Sequence[tuple[int, int]] = DEFAULT_BLOCKS, threads: Optional[int] = None,
        min_time: float = DEFAULT_MIN_TIME, isa: str = "auto", seed: int = 0, check: bool = True,
        progress: Optional[Callable[[Result], None]] = None,
        kernels: Sequence[str] = ()) -> list[Result]:
    """Every shape x sparsity x block (or listed kernel: names or "all", see report.listed_kernels).
    threads=None keeps the kernels' current count (default: hardware concurrency); torch is set
    to the same count. Both are restored afterwards."""
    k = lib()
    rows = load_shapes(shapes)
    runs = _runs(blocks, isa, listed_kernels("f32_spmm", kernels) if kernels else ())
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
                for run_isa, b, listed in runs:
                    r = bench_one(shape, float(s), b, n, min_time, run_isa, seed + i, check)
                    if listed is not None and r.kernel != listed:
                        raise AssertionError(f"{shape.label}: the layer ran {r.kernel}, not the "
                                             f"listed kernel {listed}")
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


def format_table(results: Sequence[Result]) -> str:
    """Plain-text table, one row per result, then geometric-mean speedups per sparsity x block."""
    lines = [table(COLUMNS, [_row(r) for r in results])]
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        groups.setdefault((r.sparsity, r.block, r.isa), []).append(r)
    if any(len(v) > 1 for v in groups.values()):
        lines += ["", "geometric mean over shapes:"]
        for (s, b, _), rs in groups.items():
            lines.append(f"  sparsity {s:.2f} block {b[0]}x{b[1]} ({rs[0].kernel}): x torch "
                         f"{geomean([r.speedup_vs_torch for r in rs]):.2f}, x dense "
                         f"{geomean([r.speedup_vs_dense for r in rs]):.2f} ({len(rs)} shapes)")
    return "\n".join(lines)


def format_kernels(family: str = "f32_spmm") -> str:
    """The listed kernels of a family: name, ISA, tile, and whether this CPU runs them."""
    rows = [[k["name"], k["isa"], " ".join(f"{a}={v}" for a, v in k["tile"].items()) or "-",
             "yes" if k["available"] else "no"]
            for k in lib().list_kernels() if k["family"] == family]
    return table(("kernel", "isa", "tile", "runs here"), rows, left=(0, 1, 2))


# ------------------------------------------------------------------------------------------ CLI

def parse_block(text: str) -> tuple[int, int]:
    """"4x1" -> (4, 1)."""
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"block must look like 4x1, got {text!r}") from None
    if r < 1 or c < 1:
        raise argparse.ArgumentTypeError(f"block must be >= 1x1, got {text!r}")
    return r, c


def _parser() -> chk.Parser:
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
    ap.add_argument("--kernel", action="append", metavar="NAME|all",
                    help="listed f32_spmm kernels to run (each on its ISA, blocks of its row "
                         "count), repeatable / comma-separated; see --list-kernels")
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
    ap.add_argument("--list-kernels", action="store_true", help="list the kernels and exit")
    return ap


def _settings(ap: chk.Parser, args) -> tuple[list, list, list, list]:
    """(shapes, sparsities, blocks, kernels) from the arguments, or a usage error."""
    try:
        shapes = load_shapes(split_values(args.shapes) or ["resnet50_1x1"])
        sparsities = [float(v) for v in split_values(args.sparsity)] or list(DEFAULT_SPARSITIES)
        blocks = [parse_block(v) for v in split_values(args.block)] or list(DEFAULT_BLOCKS)
        kernels = split_values(args.kernel)
        listed_kernels("f32_spmm", kernels)  # names them or raises
    except (ValueError, argparse.ArgumentTypeError) as e:
        ap.error(str(e))
    if any(not 0.0 <= s <= 1.0 for s in sparsities):
        ap.error(f"sparsity must be in [0, 1], got {sparsities}")
    if args.isa != "auto" and not lib().isa_available(args.isa):
        ap.error(f"ISA {args.isa!r} not available here; available: {lib().available_isas()}")
    return shapes, sparsities, blocks, kernels


def _report(args, results: list[Result], env_before: dict, env_after: dict) -> None:
    threads = results[0].threads if results else args.threads
    print(f"# engine kernel bench: isa {args.isa} (best {env_before['best_isa']}), threads "
          f"{threads}, min time {args.min_time}s/candidate, median of interleaved runs; "
          f"load avg before {env_before.get('loadavg', ['?'])[0]}, "
          f"after {env_after.get('loadavg', ['?'])[0]} on {env_before['cpus']} cpus")
    print(format_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "environment": {"before": env_before, "after": env_after},
            "settings": {"isa": args.isa, "threads": threads, "min_time": args.min_time,
                         "seed": args.seed, "kernels": split_values(args.kernel)},
            "results": [r.to_dict() for r in results]}, indent=1))
        print(f"# wrote {args.json}")


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m engine bench kernels ...`; returns the exit status."""
    ap = _parser()
    args = ap.parse_args(argv)
    if args.list or args.list_kernels:
        if args.list:
            for name in shape_files():
                print(f"{name}: {len(load_shapes(name))} shapes")
        if args.list_kernels:
            print(format_kernels())
        return 0
    shapes, sparsities, blocks, kernels = _settings(ap, args)
    env_before = environment()
    progress = None if args.quiet else (
        lambda r: print("  " + "  ".join(_row(r)), file=sys.stderr, flush=True))
    results = run(shapes, sparsities, blocks, args.threads, args.min_time, args.isa, args.seed,
                  not args.no_check, progress, kernels)
    _report(args, results, env_before, environment())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
