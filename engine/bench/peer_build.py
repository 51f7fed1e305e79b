"""The exports `bench peers` times, built once per model into <out>/cache/<model>/ (kept with
--reuse): the seeded input and torch's dense output on it, model.onnx (ONNX Runtime), an
OpenVINO IR converted from that ONNX file, an ExecuTorch program lowered to XNNPACK, and the
engine's saved artifacts: dense (sparsity 0), uniform block 4x1 at 80% and the rule-mapped plan
at 80% (both from `bench plans build`'s recipe, or taken from a directory it wrote:
--artifacts). Every artifact gets its own reference output (the masked model of its plan), so
each runtime is checked against an independent torch forward on the same input. The int8
exports and artifacts (--precision int8) are peer_int8.py's, built after these from the same
weights and model.onnx.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import ConfigError
from .peer_run import ENGINE_VARIANTS

# the package each runtime needs (a missing one skips that runtime with a note)
NEEDS = {"engine": "tvm", "ort": "onnxruntime", "openvino": "openvino", "xnnpack": "executorch"}
PIP = {"engine": "apache-tvm==0.27.0.post1", "ort": "onnxruntime onnx", "openvino": "openvino",
       "xnnpack": "executorch==1.5.1"}


def missing(runtime: str) -> Optional[str]:
    """Why `runtime` cannot run here, or None."""
    pkg = NEEDS[runtime]
    if importlib.util.find_spec(pkg) is None:
        return (f"{runtime}: skipped, {pkg} is not installed (pip install {PIP[runtime]} "
                f"-c <(echo torch==2.13.0))")
    return None


def dense_gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """2 x the multiply-adds of every conv and linear layer (adds, pools and activations are
    not counted), in GFLOP."""
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            total[0] += 2 * out.numel() * k
        else:
            total[0] += 2 * out.numel() * mod.in_features
    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total[0] / 1e9


def fresh(path: Path, reuse: bool) -> bool:
    """Whether `path` must be (re)built: always, unless --reuse and it is there."""
    return not (reuse and path.exists())


def export_onnx(model, x, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["input0"], output_names=["output0"])


def export_openvino(onnx_path: Path, xml: Path) -> None:
    import openvino as ov
    xml.parent.mkdir(parents=True, exist_ok=True)
    # save_model compresses weights to fp16 by default: keep them fp32 like every other runtime
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)


def export_xnnpack(model, x, pte: Path) -> dict:
    """Writes the .pte; returns how much of the graph the XNNPACK delegate took (ops left
    outside run on ExecuTorch's portable kernels)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    edge = to_edge_transform_and_lower(torch.export.export(model, (x,)),
                                       partitioner=[XnnpackPartitioner()])
    calls = [str(n.target) for n in edge.exported_program().graph.nodes
             if n.op == "call_function" and "getitem" not in str(n.target)]
    pte.write_bytes(edge.to_executorch().buffer)
    delegated = sum("call_delegate" in c for c in calls)
    return {"delegate_calls": delegated,
            "outside_delegate": sorted(c for c in calls if "call_delegate" not in c)}


def _uniform_4x1(directory: Path) -> Optional[Path]:
    """The uniform block 4x1 @ 0.80 artifact a `bench plans build` wrote: the generated-TIR one
    when there (it reaches 80% where the native one keeps layers dense), else the native one."""
    for name in ("block4x1@0.80_tir", "block4x1@0.80_native"):
        if (directory / name / "manifest.json").is_file():
            return directory / name
    return None


def _plans_artifacts(model_name: str, artifacts: Optional[Path], cache: Path, reuse: bool,
                     threads: int, seed: int = 0, weights: str = "init") -> dict:
    """{variant: artifact dir} of the sparse plans: from --artifacts, else built here as
    `bench plans build` builds them (rule mapper measured on the artifact: slow cold)."""
    if artifacts is None:
        artifacts = cache / "plans"
        if fresh(artifacts / model_name / "mapped" / "manifest.json", reuse):
            from .plans import build
            build(model_name, artifacts, 0.8, "rule", "artifact", threads, seed,
                  families=("block4x1",), weights=weights)
    d = artifacts / model_name
    made = json.loads((d / "weights.json").read_text()) if (d / "weights.json").is_file() \
        else {"seed": 0, "weights": "init"}        # plans built before weights.json existed
    if made != {"seed": seed, "weights": weights}:
        raise ConfigError(f"--artifacts {artifacts}: {model_name}'s plans were built with seed "
                          f"{made['seed']}, weights {made['weights']!r}; this run uses seed "
                          f"{seed}, weights {weights!r} (bench plans build --seed / --weights)")
    found = {"block4x1": _uniform_4x1(d), "mapped": d / "mapped"}
    return {k: v for k, v in found.items() if v is not None and (v / "manifest.json").is_file()}


def masked_output(model, x, directory: Path) -> np.ndarray:
    """torch's fp32 output of the model pruned as the artifact's plan says (its own reference;
    an int8 plan's choices are taken as fp32: the same masks, no calibration)."""
    import engine
    from mapping import Plan
    plan = Plan.from_dict(json.loads((directory / "manifest.json").read_text())["plan"])
    for c in plan:
        c.bits = 32
    opt = engine.optimize(model, (x,), plan=plan, measure=False, capture=False)
    with torch.no_grad():
        return opt.pruned_model(x).numpy()


def build_engine(model_name, model, x, mdir: Path, reuse: bool, threads: int,
                 artifacts: Optional[Path], variants: tuple, before: dict,
                 dense_threads: tuple = (), seed: int = 0, weights: str = "init") -> dict:
    """{variant: artifact dir}; writes ref_<variant>.npy for the sparse ones (the dense
    artifact is checked against torch's dense output, ref_peer.npy). before: the last run's
    {variant: dir} (a reference made for another artifact is made again). dense_threads: a
    dense artifact measured at each of these thread counts too ("dense@N"), what a user who
    ships for N threads builds; "dense" is the one measured at `threads`."""
    import engine
    out = {}
    if "dense" in variants:
        for n in sorted(set(dense_threads) | {threads}):
            dense = mdir / ("engine_dense" if n == threads else f"engine_dense_{n}t")
            if fresh(dense / "manifest.json", reuse):
                # sparsity 0, measured as optimize() measures by default: each layer on the
                # fastest dense kernel (torch, the packed GEMM, Winograd, the SpMM pack)
                opt = engine.optimize(model, (x,), sparsity=0.0, capture=False, threads=n)
                opt.save(dense, overwrite=True)
            out[f"dense@{n}"] = dense
        out["dense"] = out[f"dense@{threads}"]
    sparse = [v for v in variants if v != "dense"]
    if sparse:
        found = _plans_artifacts(model_name, artifacts, mdir, reuse, threads, seed, weights)
        out.update({v: found[v] for v in sparse if v in found})
    for v, d in out.items():
        if v.startswith("dense"):
            continue
        ref = mdir / f"ref_{v}.npy"
        if fresh(ref, reuse) or before.get(v) != str(d):
            np.save(ref, masked_output(model, x, d))
    return out


def seeded(model_name: str, seed: int, weights: str = "init") -> tuple:
    """(model in eval mode, input): the weights and the input every export is made of (as
    `bench plans build`'s: plans.bench_model)."""
    from .plans import bench_model
    return bench_model(model_name, seed, weights)


def prepare(model_name: str, out: Path, runtimes: tuple, reuse: bool, threads: int,
            seed: int = 0, artifacts: Optional[Path] = None,
            variants: tuple = ENGINE_VARIANTS, log=print, dense_threads: tuple = (),
            fp32: bool = True, weights: str = "init") -> dict:
    """Builds what `runtimes` need for one model; returns its meta (also cache/<model>/meta.json).
    fp32=False: the seeded input, the references and model.onnx only (what the int8 exports,
    peer_int8.prepare_int8, start from)."""
    mdir = out / "cache" / model_name
    old = json.loads((mdir / "meta.json").read_text()) if (mdir / "meta.json").is_file() else {}
    if old.get("seed") != seed or old.get("weights", "init") != weights:
        reuse = False                  # exports of other weights: nothing there to reuse
    if not reuse and mdir.exists():
        shutil.rmtree(mdir)
    mdir.mkdir(parents=True, exist_ok=True)
    model, x = seeded(model_name, seed, weights)
    np.save(mdir / "input.npy", x.numpy())
    with torch.no_grad():
        np.save(mdir / "ref_peer.npy", model(x).numpy())
    meta = {"model": model_name, "input_shape": list(x.shape), "seed": seed, "weights": weights,
            "dense_gflops": dense_gflops(model, x)}
    onnx = mdir / "model.onnx"
    if {"ort", "openvino"} & set(runtimes) and fresh(onnx, reuse):
        log(f"{model_name}: ONNX export")
        export_onnx(model, x, onnx)
    if fp32 and "openvino" in runtimes and fresh(mdir / "openvino" / "model.xml", reuse):
        log(f"{model_name}: OpenVINO conversion (from the ONNX file)")
        export_openvino(onnx, mdir / "openvino" / "model.xml")
    if fp32 and "xnnpack" in runtimes and fresh(mdir / "model.pte", reuse):
        log(f"{model_name}: ExecuTorch export, XNNPACK partitioner")
        (mdir / "xnnpack.json").write_text(json.dumps(export_xnnpack(model, x,
                                                                     mdir / "model.pte")))
    if (mdir / "xnnpack.json").is_file():
        meta["xnnpack"] = json.loads((mdir / "xnnpack.json").read_text())
    if fp32 and "engine" in runtimes and variants:
        log(f"{model_name}: engine artifacts {', '.join(variants)}")
        arts = build_engine(model_name, model, x, mdir, reuse, threads, artifacts, variants,
                            old.get("engine", {}), dense_threads, seed, weights)
        meta["engine"] = {v: str(d) for v, d in arts.items()}
    (mdir / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta
