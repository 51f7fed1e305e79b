"""int8 in `bench peers` (--precision int8): every int8 export calibrates on the same seeded
batches (CALIB_BATCHES of torch.randn(input shape) from a torch.Generator seeded with seed + 1,
kept as <cache>/<model>/calib.npy, N x input shape), each built once into the cache (--reuse
keeps them):

- ONNX Runtime: static int8 QDQ (MinMax calibration; per-channel s8 weights, u8 activations)
  of model.onnx after onnxruntime's quant_pre_process (shape inference and graph
  optimisation: without it the BatchNorms block the QDQ fusion, ResNet-50 33 ms instead of
  6.7 ms in P9's earlier runs) -> model_int8.onnx. ort_int8.json: the op types of the graph ORT runs (its optimised
  model; QLinearConv / QGemm when the QDQ pairs fused).
- OpenVINO: its QDQ path, not NNCF (NNCF is not installable here): model_int8.onnx read by
  ov.Core().read_model and saved as openvino_int8/model.xml (fp32 constants kept); the CPU
  plugin's low-precision transformations run the quantized convs in int8. Not
  ov.convert_model: on MobileNetV2's QDQ file its conversion runs the four convs after a
  residual add as i8 and the output is off by 0.49 relative L2 (read_model: 0.023, the same
  as ONNX Runtime). Each run counts the compiled model's compute layers whose
  runtimePrecision is i8 / u8 (peer_run.openvino_precisions); none is flagged, not timed.
- ExecuTorch + XNNPACK: PT2E, XNNPACKQuantizer with the symmetric per-channel config
  (prepare_pt2e, the calibration batches, convert_pt2e), exported again and lowered with the
  XNNPACK partitioner -> model_int8.pte; xnnpack_int8.json: the delegate calls and the
  quantize / dequantize ops inside the delegates and outside (none inside: flagged).
  The config's observers floor the activation scale at eps = 2^-12: an untrained zoo
  MobileNetV2's activations fade to ~1e-9 by its output, which that floor rounds to zero
  (relative L2 1.0, flagged) where ONNX Runtime's MinMax scales follow them.
- the engine: int8-dense, int8-block4x4 and int8-mapped (RECIPES below), each checked
  against torch's fp32 output of the model pruned by its own plan.

The int8 outputs are checked against the fp32 torch reference by relative L2 error,
||y - ref|| / ||ref|| (--tol-int8, default 0.1): the int8 runtimes land at 0.012-0.04 on
resnet18_cifar, ResNet-50 and MobileNetV2 (engine 0.011-0.021, ONNX Runtime 0.015-0.023,
OpenVINO 0.020-0.023, XNNPACK 0.020-0.030 where not flagged), so 0.1 leaves 2.5x room; an
export of other weights lands at 4.0 (resnet18_cifar), OpenVINO's convert_model slip at 0.49.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .peer_build import fresh, masked_output
from .peer_run import ENGINE_INT8

CALIB_BATCHES = 8

# the int8-mapped artifact's recipe (engine.optimize keywords besides the model, inputs,
# calibration and threads). DEVICE: where the rule mapper times its candidates: "artifact",
# as the fp32 mapped artifact's (every candidate, int8 ones and the domain changes included,
# compiled and timed as the artifact runs it; this host's runtime, None, times small int8
# layers with the torch call's overhead and ranks them against fp32 differently).
INT8_MAPPED_DEVICE = "artifact"
INT8_MAPPED = {"sparsity": 0.8, "mapper": "rule", "bits": "auto", "device": INT8_MAPPED_DEVICE,
               "backends": ("native", "tir")}

# variant (peer_run.ENGINE_INT8) -> engine.optimize keywords (besides calibration=the
# batches, capture=False, threads=N)
RECIPES = {"int8-dense": {"sparsity": 0.0, "bits": 8},
           "int8-block4x4": {"block": (4, 4), "sparsity": 0.8, "bits": 8},
           "int8-mapped": INT8_MAPPED}
assert tuple(RECIPES) == ENGINE_INT8


def calibration(input_shape, seed: int, n: int = CALIB_BATCHES) -> np.ndarray:
    """n seeded input batches (n x input_shape): what every int8 export calibrates on."""
    g = torch.Generator().manual_seed(seed + 1)
    return np.stack([torch.randn(tuple(input_shape), generator=g).numpy() for _ in range(n)])


def export_ort_int8(onnx_path: Path, dst: Path, calib: np.ndarray) -> dict:
    """Static int8 QDQ of onnx_path into dst; returns the op types ORT runs it with."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
    pre = dst.with_name(dst.stem + "_pre.onnx")
    quant_pre_process(str(onnx_path), str(pre))

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {name: np.ascontiguousarray(b, dtype=np.float32)}
    quantize_static(str(pre), str(dst), Batches(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True)
    pre.unlink()
    return {"ops": ort_ops(dst)}


def ort_ops(path: Path) -> dict:
    """{op type: count} of the graph ONNX Runtime makes of `path` (ORT_ENABLE_ALL, CPU)."""
    import tempfile

    import onnx
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as tmp:
        o = ort.SessionOptions()
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        o.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        o.log_severity_level = 3        # the NCHWc serialisation warning
        o.intra_op_num_threads = 1
        ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
        nodes = onnx.load(o.optimized_model_filepath).graph.node
    return dict(Counter(n.op_type for n in nodes).most_common())


def export_openvino_int8(onnx_int8: Path, xml: Path) -> None:
    """OpenVINO's QDQ path (see the module doc: read_model, not convert_model)."""
    import openvino as ov
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Core().read_model(str(onnx_int8)), str(xml), compress_to_fp16=False)


def export_xnnpack_int8(model, x, calib: np.ndarray, pte: Path) -> dict:
    """PT2E int8 (XNNPACKQuantizer, symmetric per-channel) lowered to XNNPACK; the .pte and
    where the quantized ops landed."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, (x,)).module(), quantizer)
    with torch.no_grad():
        for b in calib:
            prepared(torch.from_numpy(np.ascontiguousarray(b)))
    quantized = convert_pt2e(prepared)
    edge = to_edge_transform_and_lower(torch.export.export(quantized, (x,)),
                                       partitioner=[XnnpackPartitioner()])
    info = delegate_contents(edge.exported_program())
    pte.write_bytes(edge.to_executorch().buffer)
    return info


def _is_qdq(target: str) -> bool:
    return "quantize_per" in target     # quantize_per_* and dequantize_per_*


def delegate_contents(program) -> dict:
    """The lowered program's delegate calls, the quantize / dequantize ops and convolutions
    inside its delegates and the calls left outside them."""
    calls = [str(n.target) for n in program.graph.nodes
             if n.op == "call_function" and "getitem" not in str(n.target)]
    inside: Counter = Counter()
    for _, sub in program.graph_module.named_children():
        orig = getattr(sub, "original_module", None)
        if orig is None:
            continue
        for n in orig.graph.nodes:
            t = str(n.target)
            if n.op == "call_function":
                inside["qdq" if _is_qdq(t) else "conv" if "convolution" in t else "other"] += 1
    outside = sorted(c for c in calls if "call_delegate" not in c)
    return {"delegate_calls": sum("call_delegate" in c for c in calls),
            "qdq_in_delegate": inside["qdq"], "convs_in_delegate": inside["conv"],
            "outside_delegate": outside,
            "qdq_outside_delegate": sum(_is_qdq(c) for c in outside)}


def build_engine_int8(model, x, calib: np.ndarray, mdir: Path, reuse: bool, threads: int,
                      variants: tuple, dense_threads: tuple = (), log=print) -> dict:
    """{variant: artifact dir} of the engine's int8 artifacts (int8-dense at each of
    dense_threads too, "int8-dense@N", as the fp32 dense one); ref_<variant>.npy for the
    pruned ones. A build that fails is logged and left out ({variant: error} in "failed")."""
    import engine
    batches = [torch.from_numpy(np.ascontiguousarray(b)) for b in calib]
    jobs = []
    for v in variants:
        if v == "int8-dense":
            for n in sorted(set(dense_threads) | {threads}):
                jobs.append((f"{v}@{n}", v, n))
        else:
            jobs.append((v, v, threads))
    out: dict = {}
    failed: dict = {}
    built = set()
    for key, v, n in jobs:
        d = mdir / f"engine_{key.replace('@', '_')}t" if "@" in key else mdir / f"engine_{v}"
        if fresh(d / "manifest.json", reuse):
            built.add(key)
            log(f"{mdir.name}: engine {v} at {n} thread(s)")
            try:
                opt = engine.optimize(model, (x,), calibration=batches, capture=False,
                                      threads=n, **RECIPES[v])
                opt.save(d, overwrite=True)
            except Exception as e:       # noqa: BLE001  (one variant lost, the run goes on)
                failed[key] = f"{type(e).__name__}: {e}"[:300]
                log(f"note: {mdir.name}: engine {key} not built ({failed[key]})")
                continue
        out[key] = d
    if f"int8-dense@{threads}" in out:
        out["int8-dense"] = out[f"int8-dense@{threads}"]
    for v, d in out.items():
        ref = mdir / f"ref_{v}.npy"
        if not v.startswith("int8-dense") and (v in built or fresh(ref, reuse)):
            np.save(ref, masked_output(model, x, d))
    return {**{k: str(d) for k, d in out.items()}, **({"failed": failed} if failed else {})}


def _step(what: str, fn, failed: dict, key: str, log) -> Optional[dict]:
    """fn() or, when it raises, the error noted under failed[key] (the run goes on)."""
    try:
        return fn() or {}
    except Exception as e:               # noqa: BLE001
        failed[key] = f"{type(e).__name__}: {e}"[:300]
        log(f"note: {what} failed ({failed[key]})")
        return None


def prepare_int8(meta: dict, mdir: Path, model, x, runtimes: tuple, reuse: bool,
                 threads: int, variants: tuple = ENGINE_INT8, log=print,
                 dense_threads: tuple = ()) -> dict:
    """Builds the int8 exports `runtimes` need into mdir (model.onnx is there, peer_build);
    adds them to meta (and meta.json)."""
    name = meta["model"]
    calib = calibration(meta["input_shape"], meta["seed"])
    np.save(mdir / "calib.npy", calib)
    failed: dict = {}
    onnx8 = mdir / "model_int8.onnx"
    if {"ort", "openvino"} & set(runtimes) and fresh(onnx8, reuse):
        log(f"{name}: ONNX Runtime static int8 (QDQ)")
        got = _step(f"{name}: ONNX Runtime int8 export",
                    lambda: export_ort_int8(mdir / "model.onnx", onnx8, calib), failed, "ort",
                    log)
        if got is not None:
            (mdir / "ort_int8.json").write_text(json.dumps(got))
    if "openvino" in runtimes and onnx8.is_file() and \
            fresh(mdir / "openvino_int8" / "model.xml", reuse):
        log(f"{name}: OpenVINO int8 (its QDQ path, from model_int8.onnx)")
        _step(f"{name}: OpenVINO int8 conversion", lambda: export_openvino_int8(
            onnx8, mdir / "openvino_int8" / "model.xml"), failed, "openvino", log)
    if "xnnpack" in runtimes and fresh(mdir / "model_int8.pte", reuse):
        log(f"{name}: ExecuTorch PT2E int8, XNNPACK partitioner")
        got = _step(f"{name}: ExecuTorch int8 export", lambda: export_xnnpack_int8(
            model, x, calib, mdir / "model_int8.pte"), failed, "xnnpack", log)
        if got is not None:
            (mdir / "xnnpack_int8.json").write_text(json.dumps(got))
    for rt in ("ort", "xnnpack"):
        if (mdir / f"{rt}_int8.json").is_file():
            meta[f"{rt}_int8"] = json.loads((mdir / f"{rt}_int8.json").read_text())
    if "engine" in runtimes and variants:
        arts = build_engine_int8(model, x, calib, mdir, reuse, threads, variants,
                                 dense_threads, log)
        failed.update({f"engine:{k}": e for k, e in arts.pop("failed", {}).items()})
        meta.setdefault("engine", {}).update(arts)
    meta["calibration"] = {"batches": int(calib.shape[0]), "seed": meta["seed"] + 1,
                           "file": "calib.npy"}
    if failed:
        meta["int8_failed"] = failed
    (mdir / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta
