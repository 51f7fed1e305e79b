#!/usr/bin/env python3
"""Make an artifact to try the C++ runner with, and check the runner's output against PyTorch.

    python examples/make_artifact.py make --model mobilenetv2_cifar --target arm64 \
        --out build/artifacts/mnv2-arm64
    #   -> build/artifacts/mnv2-arm64/            the artifact (model.so, manifest.json)
    #      build/artifacts/mnv2-arm64.input.f32   a random input (raw float32)
    #      build/artifacts/mnv2-arm64.torch.f32   PyTorch's output for it (the reference)
    python examples/make_artifact.py compare out.f32 build/artifacts/mnv2-arm64.torch.f32

The model is compiled with the plain TVM path (torch.export -> Relax -> tvm.compile for the
target's LLVM dict), which is what engine.codegen does with better kernels; an optimized model
writes the same artifact through OptimizedModel.save / engine.artifact.save_artifact.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def make(args) -> int:
    import torch
    import tvm
    from tvm.relax.frontend.torch import from_exported_program

    from engine import zoo
    from engine.artifact import save_artifact
    from engine.targets import get_target

    target = get_target(args.target)
    torch.manual_seed(args.seed)
    model = zoo.get(args.model)
    shape = (1, 3, args.size, args.size) if args.size else zoo.input_shape(args.model)
    # Untrained zoo models have identity BatchNorm statistics and give ~1e-10 logits; a few
    # train-mode passes over random data give realistic statistics (and readable outputs).
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn((8,) + tuple(shape[1:])))
    model.eval()
    x = torch.randn(shape)
    with torch.no_grad():
        ref = model(x)
    ep = torch.export.export(model, (x,))
    mod = from_exported_program(ep, keep_params_as_input=False)
    # tvm.compile takes the JSON dict wrapped in tvm.target.Target (a bare dict fails in 0.27).
    exe = tvm.compile(mod, target=tvm.target.Target(target.llvm))
    out = save_artifact(args.out, exe, target, [("x", tuple(x.shape), "float32")],
                        [("logits", tuple(ref.shape), "float32")],
                        extra={"model": args.model, "seed": args.seed})
    x.numpy().astype("<f4").tofile(f"{out}.input.f32")
    ref.numpy().astype("<f4").tofile(f"{out}.torch.f32")
    print(f"artifact:  {out}  (target {target.name}, {target.arch})")
    print(f"input:     {out}.input.f32  {list(x.shape)} float32")
    print(f"reference: {out}.torch.f32  {list(ref.shape)} float32 (PyTorch)")
    return 0


def compare(args) -> int:
    got = np.fromfile(args.got, dtype="<f4").astype(np.float64)
    ref = np.fromfile(args.reference, dtype="<f4").astype(np.float64)
    if got.shape != ref.shape:
        print(f"size mismatch: {got.size} values vs reference {ref.size}")
        return 1
    scale = float(np.abs(ref).max()) or 1.0
    rel = float(np.abs(got - ref).max()) / scale
    ok = rel <= args.rtol
    print(f"max |got - torch| / max |torch| = {rel:.3g} ({'OK' if ok else 'MISMATCH'}, "
          f"rtol {args.rtol:g})")
    return 0 if ok else 1


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="compile a zoo model for a target and save the artifact")
    m.add_argument("--model", default="mobilenetv2_cifar")
    m.add_argument("--target", default="host", help="engine target name (host, arm64, ...)")
    m.add_argument("--out", required=True, help="artifact directory to write")
    m.add_argument("--size", type=int, default=0, help="input height/width (default: the zoo's)")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(fn=make)
    c = sub.add_parser("compare", help="compare a runner's raw output with PyTorch's")
    c.add_argument("got")
    c.add_argument("reference")
    c.add_argument("--rtol", type=float, default=1e-4)
    c.set_defaults(fn=compare)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
