"""One runtime, one model, one thread count, in this process and nothing else (`bench peers`
starts one process per measurement): load the export, check its output on the seeded input
against torch's (a runtime that disagrees is reported, not timed; an int8 one's relative L2
error against torch's fp32 output is recorded, judged by the table with every runtime's in
hand, peer_table.int8_flags, and one that runs nothing in int8 is reported too), warm up, time single calls for a while (at 2+ threads in windows tagged by the vCPUs'
placement: placement.py), print JSON. Also the machine's fp32 peak: torch.mm 2048^3, best of
several.

Thread settings per runtime (every one told N, each in its own process):
- engine: engine.load(dir, threads=N) (one pool serves every layer of the module), with
  TVM_NUM_THREADS=N in the environment (the parent sets it: the pool's size at first use);
  artifacts built before that single pool carry the C++ kernels' own pool, sized through their
  bridge's `spe.v1.set_num_threads`. Read back: art.threads and `spe.v1.num_threads`.
- ort: intra_op_num_threads=N, inter_op_num_threads=1, sequential, ORT_ENABLE_ALL.
- openvino: CPU, INFERENCE_NUM_THREADS=N, PERFORMANCE_HINT=LATENCY, INFERENCE_PRECISION_HINT=f32
  (Zen 4 has avx512_bf16, where OpenVINO may otherwise pick bf16).
- xnnpack: ExecuTorch's pybindings `_unsafe_reset_threadpool(N)` (the one threadpool the XNNPACK
  delegate runs on; the only setter the Python runtime has), read back with
  `_threadpool_get_thread_count()`.
The int8 exports (peer_int8.py) run with the same settings; OpenVINO keeps f32 as the
precision hint (the layers its QDQ path leaves unquantized run f32, not bf16).
"""
from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .placement import time_windows

RUNTIMES = ("engine", "ort", "openvino", "xnnpack")
PRECISIONS = ("fp32", "int8")
ENGINE_VARIANTS = ("dense", "block4x1", "mapped")
ENGINE_INT8 = ("int8-dense", "int8-block4x4", "int8-mapped")      # peer_int8.RECIPES
# the OpenVINO CPU plugin's layer types an int8 run should run in i8 / u8
COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "FullyConnected", "MatMul",
                  "Deconvolution")


def time_calls(fn, seconds: float, warmup_s: float = 0.5) -> dict:
    """Warm up (at least 3 calls and warmup_s), then time single calls for `seconds` (at
    least 5): median and min ms per call."""
    t_end, n = time.perf_counter() + warmup_s, 0
    while n < 3 or time.perf_counter() < t_end:
        fn()
        n += 1
    samples = []
    t_end = time.perf_counter() + seconds
    while len(samples) < 5 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return {"median_ms": statistics.median(samples) * 1e3, "min_ms": min(samples) * 1e3,
            "calls": len(samples)}


def _engine(mdir: Path, threads: int, variant: str, auto: bool = False):
    import engine
    from ..codegen import _tvm
    meta = json.loads((mdir / "meta.json").read_text())
    # the dense artifact measured at this thread count, when the build made one
    directory = meta.get("engine", {}).get(f"{variant}@{threads}") or \
        meta.get("engine", {}).get(variant)
    if directory is None:
        raise FileNotFoundError(f"no engine artifact {variant!r} for {meta['model']} in "
                                f"{mdir} (build it: run without --reuse, or give --artifacts)")
    # auto: the tuner picks among 1..threads (TVM's pool was sized to `threads` by the
    # parent through TVM_NUM_THREADS)
    art = engine.load(directory, threads="auto" if auto else threads)
    # an artifact built before the kernels ran on TVM's workers carries a pool of its own
    # (all CPUs): its bridge's setter sizes that one too (on newer ones it is the same pool)
    bridge = _tvm.tvm.get_global_func("spe.v1.set_num_threads", allow_missing=True)
    if bridge is not None:
        bridge(threads)
    kernels = _tvm.tvm.get_global_func("spe.v1.num_threads", allow_missing=True)
    info = {"artifact": directory, "threads": "auto" if auto else art.threads,
            "kernel_threads": int(kernels()) if kernels is not None else None}
    if variant in ENGINE_INT8:     # the int8 guard may have returned the fp32 twin: say so
        plan = json.loads((Path(directory) / "manifest.json").read_text())["plan"]
        info["int8_layers"] = sum(c.get("bits", 32) == 8 for c in plan["choices"])
        info["layers"] = len(plan["choices"])
    return (lambda x: art(x)), info


def _export(mdir: Path, runtime: str, variant: str, fp32: str, int8: str) -> Path:
    """The file `runtime` loads for `variant` ("int8": its int8 export), or why it is missing."""
    path = mdir / (int8 if variant == "int8" else fp32)
    if not path.is_file():
        meta = json.loads((mdir / "meta.json").read_text())
        why = meta.get("int8_failed", {}).get(runtime, "not built")
        raise FileNotFoundError(f"no {path.name} for {runtime} in {mdir}: {why}")
    return path


def _ort(mdir: Path, threads: int, variant: str):
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    path = _export(mdir, "ort", variant, "model.onnx", "model_int8.onnx")
    sess = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = sess.get_session_options()
    info = {"version": ort.__version__, "intra_op_threads": got.intra_op_num_threads,
            "inter_op_threads": got.inter_op_num_threads}
    if variant == "int8":          # the graph ORT runs, counted when it was quantized
        ops = json.loads((mdir / "meta.json").read_text()).get("ort_int8", {}).get("ops", {})
        info["int8_ops"] = {k: n for k, n in ops.items() if k.startswith(("QLinear", "QGemm",
                                                                          "ConvInteger"))}
        info["ops"] = ops
        if ops and not info["int8_ops"]:
            info["not_int8"] = "ONNX Runtime fused no QDQ pair into an int8 op"
    return (lambda x: sess.run(None, {name: x})[0]), info


def _openvino(mdir: Path, threads: int, variant: str):
    import openvino as ov
    cfg = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
           "INFERENCE_PRECISION_HINT": "f32"}
    xml = _export(mdir, "openvino", variant, "openvino/model.xml", "openvino_int8/model.xml")
    compiled = ov.Core().compile_model(str(xml), "CPU", cfg)
    req = compiled.create_infer_request()

    def run(x):
        req.infer([x], share_inputs=True)
        return req.get_output_tensor(0).data
    info = {"version": ov.get_version(),
            "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "precision": str(compiled.get_property("INFERENCE_PRECISION_HINT"))}
    if variant == "int8":          # QDQ path: the compute layers the CPU plugin runs in int8
        info["runtime_precision"] = p = openvino_precisions(compiled)
        if not p["int8"]:
            info["not_int8"] = f"OpenVINO runs none of its {p['compute']} compute layers in int8"
    return run, info


def openvino_precisions(compiled) -> dict:
    """The compiled model's compute layers by the precision the CPU plugin runs them in:
    {"int8": n, "compute": m, "by": {"Convolution u8": k, ...}}."""
    by: Counter = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        keys = set(rt.keys())
        if "layerType" not in keys or "runtimePrecision" not in keys:
            continue
        kind, prec = rt["layerType"].astype(str), rt["runtimePrecision"].astype(str)
        if kind in COMPUTE_LAYERS:
            by[f"{kind} {prec}"] += 1
    int8 = sum(n for k, n in by.items() if k.split()[-1] in ("i8", "u8"))
    return {"int8": int8, "compute": sum(by.values()), "by": dict(sorted(by.items()))}


def _xnnpack(mdir: Path, threads: int, variant: str):
    import torch
    from executorch.extension.pybindings import portable_lib as pl
    from executorch.runtime import Runtime
    torch.set_num_threads(threads)
    pl._unsafe_reset_threadpool(threads)
    pte = _export(mdir, "xnnpack", variant, "model.pte", "model_int8.pte")
    method = Runtime.get().load_program(str(pte)).load_method("forward")
    info = {"threadpool": int(pl._threadpool_get_thread_count())}
    if variant == "int8":          # where PT2E's quantize / dequantize ops landed
        info["delegate"] = d = json.loads((mdir / "meta.json").read_text()).get(
            "xnnpack_int8", {})
        if d and not d.get("qdq_in_delegate"):
            info["not_int8"] = "no quantize / dequantize op inside the XNNPACK delegate"
    return (lambda x: method.execute([torch.from_numpy(x)])[0].numpy()), info


LOADERS = {"engine": _engine, "ort": _ort, "openvino": _openvino, "xnnpack": _xnnpack}


def check_output(y: np.ndarray, ref: np.ndarray, int8: bool, tol: float):
    """(fields, why flagged or None): fp32, max |y - ref| relative to max |ref| (--tol); int8,
    the relative L2 error ||y - ref|| / ||ref||, flagged here only when it is no better than a
    zero output (>= 1, or NaN); how close is close enough is decided with every runtime's
    error in hand (peer_table.int8_flags: --tol-int8, or the best int8 peer's)."""
    scale = float(np.abs(ref).max()) or 1.0
    err = float(np.abs(y - ref).max())
    r = {"max_abs_diff": err, "ref_max_abs": scale, "rel_diff": err / scale}
    if int8:
        r["rel_l2"] = l2 = float(np.linalg.norm(y - ref) / (np.linalg.norm(ref) or 1.0))
        if not l2 < 1.0:               # NaN fails too
            return r, (f"int8 output differs from torch's fp32 by {l2:.3g} relative L2 (no "
                       f"closer than a zero output): not timed")
        return r, None
    if not err <= tol * scale:
        return r, (f"output differs from torch by {err:.3g} (max |ref| {scale:.3g}, "
                   f"tolerance {tol:g} relative): not timed")
    return r, None


def run_one(runtime: str, mdir: Path, threads: int, seconds: float, tol: float,
            variant: str = "dense", auto: bool = False) -> dict:
    """One measurement (this process runs nothing else): the output check, then the timing.
    auto: the engine picks its thread count (up to `threads`) as it runs. variant: the
    engine's artifact, or for a peer "dense" (fp32) / "int8" (its int8 export)."""
    x = np.load(mdir / "input.npy")
    extra = {"auto": auto} if runtime == "engine" else {}
    fn, info = LOADERS[runtime](mdir, threads, variant, **extra)
    sparse = runtime == "engine" and variant not in ("dense", "int8-dense")
    ref_name = f"ref_{variant}.npy" if sparse else "ref_peer.npy"
    ref = np.load(mdir / ref_name)
    y = np.asarray(fn(x), dtype=np.float64).reshape(ref.shape)
    int8 = variant.startswith("int8")
    fields, flagged = check_output(y, ref, int8, tol)
    r = {"runtime": runtime, "variant": variant, "threads": threads, "info": info, **fields,
         "reference": f"torch fp32, {'masked by the plan' if sparse else 'dense'}"}
    flagged = flagged or info.get("not_int8") and f"{info['not_int8']}: not timed"
    if flagged:
        r["flagged"] = flagged
        return r
    if threads == 1:       # one core: where the vCPUs sit does not matter
        r.update(time_calls(lambda: fn(x), seconds, warmup_s=min(0.5, seconds)))
        return r
    time_calls(lambda: fn(x), 0.0, warmup_s=min(0.5, seconds))      # the warm-up alone
    r.update(time_windows(lambda: fn(x), seconds, _core_to_core))
    r["core_to_core_ns"] = [w[0] for w in r["windows"]]
    return r


def _core_to_core():
    """The vCPUs' cache-line round trip now (engine.bench.machine), or None where the kernels
    predate the probe: which placement the hypervisor gave this measurement."""
    from ..errors import ConfigError
    from .machine import core_to_core_ns
    try:
        ns = core_to_core_ns()
    except (AttributeError, ConfigError):        # stale or missing kernel build
        return None
    return None if ns is None else round(float(ns), 1)


def peak_gflops(threads: int, n: int = 2048, reps: int = 8) -> dict:
    """fp32 peak as torch.mm(n x n, n x n) reaches it, best of `reps` (this process only)."""
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return {"threads": threads, "gflops": 2 * n ** 3 / best / 1e9,
            "what": f"torch.mm {n}x{n}x{n} fp32, best of {reps}, own process"}
