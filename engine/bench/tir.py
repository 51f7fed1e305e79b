"""Microbenchmark: the generated TIR kernel vs the C++ kernel vs torch dense, on real shapes.

    python -m engine.bench.tir [--shapes resnet50_1x1] [--sparsity 0.8] [--block 4x1]
                                   [--threads 2] [--min-time 0.2] [--json out.json]
    from engine.bench.tir import run, format_table
    print(format_table(run("resnet50_1x1", 0.8, (4, 1))))

Per shape (a line of engine/bench/shapes/*.txt: 1x1 convs "O C H W stride" or linear "O C N"),
one seeded block mask (engine.bench.kernels.block_mask) is applied to a random weight; the
generated kernel (spmm_tir), the C++ kernel (engine._kernels.SparseConv, same packing) and
torch's dense conv / linear on the unmasked weight are checked against torch on the masked
weight, then timed interleaved in ONE run (engine.runtime.measure.compare, one untimed call
before each block of 3 so no runtime's spinning threads eat the next one's time). Reported:
medians, tir / native (the goal: <= 1.5), torch / tir, GFLOP/s over stored weights.
All three runtimes get the same thread count. Blocks last >= 20 ms (see _block_size): each
runtime's thread pool spins after a call, so short blocks time one runtime fighting another's
idle workers for the cores.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..codegen import get_num_threads, set_num_threads
from ..codegen.targets import as_target, tvm_target, vector_isa
from ..codegen._tvm import tvm
from ..codegen.geometry import ConvGeometry
from ..codegen.rowgroups import RowGroups
from ..codegen.host import HostKernel
from ..codegen.spmm_tir import conv_kernel, linear_kernel
from ..runtime.measure import compare
from ..runtime.native import lib
from ..runtime.packing import group_rows_for, pack
from ..zoo.init import randomize_bn  # noqa: F401
from .kernels import Shape, block_mask, load_shapes, parse_block, shape_files


def build_tir(weight: np.ndarray, in_shape: tuple, *, rows: int, stride=1, padding=0,
              dilation=1, bias=None, act: str = "none", dense: bool = False, target="host",
              name: str = "layer") -> HostKernel:
    """The generated kernel for one conv (4-D weight) or linear (2-D weight) layer."""
    w = np.asarray(weight, np.float32)
    tgt = as_target(target)
    isa = vector_isa(tvm_target(tgt))
    rg = RowGroups.dense(w, rows) if dense else RowGroups.sparse(w, group_rows_for(rows))
    if w.ndim == 4:
        geom = ConvGeometry.of(w.shape[1], in_shape[2], in_shape[3], w.shape[2:], stride,
                               padding, dilation)
        k = conv_kernel(name, geom, rg, isa, batch=in_shape[0], bias=bias, act=act)
    else:
        k = linear_kernel(name, rg, isa, batch=in_shape[0], bias=bias, act=act)
    return HostKernel(k, tgt)


def _native(w: np.ndarray, rows: int, stride, padding, dilation, bias, act):
    _kernels = lib()
    p = pack(w, group_rows_for(rows))
    pair = (lambda v: tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v)))
    return _kernels.SparseConv(p.out_channels, p.in_channels, p.kernel, pair(stride),
                               pair(padding), pair(dilation), p.group_row0, p.group_rows,
                               p.group_ptr, p.entry_col, p.values,
                               None if bias is None else np.asarray(bias, np.float32), act,
                               "auto")

GOAL = 1.5   # TIR within this factor of the C++ kernel


@dataclass
class Row:
    """One shape, medians in seconds from one interleaved run."""

    shape: Shape
    sparsity: float
    block: tuple
    threads: int
    stored: int
    tir_kernel: str
    native_kernel: str
    t_tir: float
    t_native: float
    t_torch: float

    @property
    def tir_vs_native(self) -> float:
        return self.t_tir / self.t_native

    @property
    def torch_vs_tir(self) -> float:
        return self.t_torch / self.t_tir

    @property
    def gflops_tir(self) -> float:
        return 2.0 * self.stored * self.shape.pixels / self.t_tir / 1e9

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = {**asdict(self.shape), "label": self.shape.label}
        d.update(tir_vs_native=self.tir_vs_native, torch_vs_tir=self.torch_vs_tir,
                 gflops_tir=self.gflops_tir)
        return d


def bench_shape(shape: Shape, sparsity: float, block: tuple, threads: int,
                min_time: float = 0.2, seed: int = 0) -> Row:
    g = torch.Generator().manual_seed(seed)
    o, c = shape.out_channels, shape.in_channels
    w = torch.randn(o, c, generator=g)
    wm = (w * block_mask(o, c, block, sparsity, g)).numpy()
    rows = group_rows_for(block[0])
    if shape.linear:
        n = shape.width
        x = torch.randn(n, c, generator=g)
        tir = build_tir(wm, (n, c), rows=rows)
        nat = _native(wm[:, :, None, None], rows, 1, 0, 1, None, "none")
        xk = np.ascontiguousarray(x.numpy().T).reshape(1, c, 1, n)
        ref = F.linear(x, torch.from_numpy(wm)).numpy()

        def native():
            return nat.run(xk)

        def native_out():
            return native().reshape(o, n).T

        def dense():
            return F.linear(x, w)
    else:
        s = shape.stride
        x = torch.randn(1, c, shape.height, shape.width, generator=g)
        tir = build_tir(wm[:, :, None, None], tuple(x.shape), rows=rows, stride=s)
        nat = _native(wm[:, :, None, None], rows, s, 0, 1, None, "none")
        xk = x.numpy()
        ref = F.conv2d(x, torch.from_numpy(wm)[:, :, None, None], None, s).numpy()
        w4 = w[:, :, None, None].contiguous()

        def native():
            return nat.run(xk)

        native_out = native

        def dense():
            return F.conv2d(x, w4, None, s)
    run_tir = tir.bind(x.numpy())
    run_tir()
    scale = max(1.0, float(np.abs(ref).max()))
    for name, got in (("tir", tir.result()), ("native", native_out())):
        err = float(np.abs(got - ref).max())
        if not err <= 1e-4 * scale:
            raise AssertionError(f"{shape.label}: {name} kernel differs from torch "
                                 f"(max abs err {err:.3g})")
    cands = {"tir": run_tir, "native": native, "torch": dense}
    with torch.no_grad():
        t = compare(cands, min_time=min_time, block=_block_size(cands))
    return Row(shape, sparsity, tuple(block), threads, int(tir.kernel.stats["stored"]),
               tir.kernel.label, nat.kernel_name, t["tir"], t["native"], t["torch"])


def _block_size(cands: dict, settle: float = 0.02) -> int:
    """Runs per block so each block lasts >= `settle` seconds: the three runtimes' thread
    pools each spin for a while after a call, and a short block would time one runtime while
    another's idle workers still hold the cores (the median of a long block is its steady
    state)."""
    with torch.no_grad():
        fastest = min(compare({k: f}, min_time=0.0, min_runs=3, warmup=1)[k]
                      for k, f in cands.items())
    return int(min(max(math.ceil(settle / max(fastest, 1e-6)), 3), 200))


def run(shapes="resnet50_1x1", sparsity: float = 0.8, block=(4, 1),
        threads: Optional[int] = None, min_time: float = 0.2, seed: int = 0,
        progress=None) -> list:
    """Every shape, one interleaved run each; thread counts restored afterwards."""
    from ..runtime.native import lib
    _kernels = lib()
    rows_in = load_shapes(shapes)
    old = (_kernels.get_num_threads(), torch.get_num_threads(), get_num_threads())
    n = int(threads) if threads is not None else old[0]
    out = []
    try:
        _kernels.set_num_threads(n)
        torch.set_num_threads(n)
        n_tvm = set_num_threads(n)
        if n_tvm != n:
            raise RuntimeError(f"TVM's pool has {n_tvm} threads, asked for {n}: set "
                               f"TVM_NUM_THREADS={n} before the first TVM call")
        for i, shape in enumerate(rows_in):
            r = bench_shape(shape, sparsity, tuple(block), n, min_time, seed + i)
            out.append(r)
            if progress:
                progress(r)
    finally:
        _kernels.set_num_threads(old[0])
        torch.set_num_threads(old[1])
        set_num_threads(old[2])
    return out


def _geomean(xs) -> float:
    xs = list(xs)
    return math.exp(sum(math.log(v) for v in xs) / len(xs)) if xs else float("nan")


def format_row(r: Row) -> str:
    return (f"{r.shape.label:<22} {r.t_tir * 1e6:9.1f} {r.t_native * 1e6:9.1f} "
            f"{r.t_torch * 1e6:9.1f} {r.tir_vs_native:8.2f} {r.torch_vs_tir:9.2f} "
            f"{r.gflops_tir:8.1f}  {r.tir_kernel}")


def format_table(rows: Sequence[Row]) -> str:
    head = (f"{'shape':<22} {'tir us':>9} {'C++ us':>9} {'torch us':>9} {'tir/C++':>8} "
            f"{'torch/tir':>9} {'GF/s nnz':>8}  kernel")
    lines = [head, "-" * len(head)] + [format_row(r) for r in rows]
    if rows:
        ratios = [r.tir_vs_native for r in rows]
        within = sum(1 for v in ratios if v <= GOAL)
        lines += ["", f"tir / C++: geomean {_geomean(ratios):.2f}, min {min(ratios):.2f}, "
                      f"max {max(ratios):.2f}; within {GOAL}x on {within}/{len(rows)} shapes",
                  f"torch dense / tir: geomean {_geomean(r.torch_vs_tir for r in rows):.2f}"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ end to end



def e2e(model_name: str = "resnet50", sparsity: float = 0.8, block=(4, 1),
        threads: Optional[int] = None, min_time: float = 2.0, seed: int = 0) -> dict:
    """Torch eager (dense) vs the compiled dense model vs the compiled pruned model (every
    layer the block scheme fits pruned, backend tir, no per-layer measurement), one
    interleaved run. Returns {"times": name -> s, "ratios": ..., "max_err": ...}."""
    import engine
    from engine import zoo
    from ..codegen import compile_model
    from ..codegen._tvm import relax
    torch.manual_seed(seed)
    model = randomize_bn(zoo.get(model_name), seed)
    x = torch.randn(zoo.input_shape(model_name), generator=torch.Generator().manual_seed(seed))
    opt = engine.optimize(model, (x,), target="host", scheme="block", block=block,
                          sparsity=sparsity, measure=False)
    dense_cm = compile_model(model, (x,), None, "host")
    sparse_cm = compile_model(opt.pruned_model, (x,), opt.plan, "host")
    with torch.no_grad():
        errs = {"dense": _rel_err(dense_cm.run(x)[0], model(x)),
                "pruned": _rel_err(sparse_cm.run(x)[0], opt.pruned_model(x))}
    xt = tvm.runtime.tensor(x.numpy())
    f_dense = relax.VirtualMachine(dense_cm.executable, tvm.cpu())["main"]
    f_sparse = relax.VirtualMachine(sparse_cm.executable, tvm.cpu())["main"]
    n = int(threads) if threads is not None else torch.get_num_threads()
    old = (torch.get_num_threads(), get_num_threads())
    try:
        torch.set_num_threads(n)
        set_num_threads(n)
        with torch.no_grad():
            t = compare({"torch_eager": lambda: model(x), "tvm_dense": lambda: f_dense(xt),
                         "tvm_pruned": lambda: f_sparse(xt)}, min_time=min_time, block=3)
    finally:
        torch.set_num_threads(old[0])
        set_num_threads(old[1])
    return {"model": model_name, "threads": n, "times": t, "max_rel_err": errs,
            "pruned_layers": len(opt.plan.pruned),
            "ratios": {"tvm_dense_vs_eager": t["torch_eager"] / t["tvm_dense"],
                       "tvm_pruned_vs_eager": t["torch_eager"] / t["tvm_pruned"],
                       "tvm_pruned_vs_dense": t["tvm_dense"] / t["tvm_pruned"]}}


def _rel_err(got, ref) -> float:
    ref = ref.detach().numpy()
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12))


def format_e2e(r: dict) -> str:
    t, q = r["times"], r["ratios"]
    return (f"{r['model']}, {r['threads']} thread(s), {r['pruned_layers']} layers pruned: "
            f"torch eager {t['torch_eager'] * 1e3:.2f} ms, compiled dense "
            f"{t['tvm_dense'] * 1e3:.2f} ms ({q['tvm_dense_vs_eager']:.2f}x eager), compiled "
            f"pruned {t['tvm_pruned'] * 1e3:.2f} ms ({q['tvm_pruned_vs_eager']:.2f}x eager, "
            f"{q['tvm_pruned_vs_dense']:.2f}x compiled dense); max rel err "
            f"dense {r['max_rel_err']['dense']:.1e}, pruned {r['max_rel_err']['pruned']:.1e}")


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.bench.tir",
                                 description="Generated TIR vs C++ kernel vs torch dense.")
    ap.add_argument("--shapes", default="resnet50_1x1",
                    help=f"shape file name or path (known: {', '.join(shape_files())})")
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--block", type=parse_block, default=(4, 1), help="rows x cols, e.g. 4x1")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per candidate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument("--e2e", metavar="MODEL",
                    help="instead: whole model (zoo name), torch eager vs compiled dense vs "
                         "compiled pruned")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.e2e:
        torch.set_flush_denormal(True)
        r = e2e(args.e2e, args.sparsity, args.block, args.threads,
                max(args.min_time, 0.5), args.seed)
        print(f"# load avg {load:.2f} before; " + format_e2e(r))
        if args.json:
            args.json.write_text(json.dumps(r, indent=1))
        return 0
    rows = run(args.shapes, args.sparsity, args.block, args.threads, args.min_time, args.seed,
               progress=lambda r: print("  " + format_row(r), file=sys.stderr, flush=True))
    print(f"# codegen kernel bench: {args.shapes}, sparsity {args.sparsity}, block "
          f"{args.block[0]}x{args.block[1]}, threads {rows[0].threads if rows else '?'}, "
          f"load avg {load:.2f} before, {time.strftime('%Y-%m-%dT%H:%M:%S')}")
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
