"""Measure one layer's kernels on a remote device through TVM RPC (phones, boards, device farms).

    sess = connect("10.0.0.5", 9090)                         # an RPC server (tvm.exec.rpc_server)
    sess = connect("tracker.lan", 9190, key="pixel7")        # or a device held by a tracker
    layer = LayerShape("conv2d", (1, 64, 56, 56), (1, 64, 56, 56), padding=(1, 1), act="relu")
    mod = build_layer_module(layer, [KernelChoice("k0", "tir", masked_w, block=(4, 1)),
                                     KernelChoice("k1", "native", masked_w, block=(4, 1)),
                                     KernelChoice("d", "native", w, dense=True)], bias, "arm64")
    res, left_out = time_on_device(sess, mod, [x], refs={"k0": y, "k1": y, "d": y_dense})
    res["k0"].stats.median          # seconds, the device's own timer (RPC latency excluded)

Each choice becomes one Relax function of one module, calling what a compiled model calls for
that layer: `call_tir` to a kernel generated for the layer (spmm_tir.py; sparse row groups, or
dense / grouped ones for a layer kept dense) or `call_dps_packed("spe.v1.sparse_conv2d")` into
the C++ kernels, whose bridge is linked into the library (native_bridge.py), exactly as
compile_model(backends="plan") builds layers. The module is exported with the target's (cross)
compiler, uploaded, loaded, checked against reference outputs computed on the host, then timed
with the Relax VM's time_evaluator in interleaved rounds until the medians settle.

Verified with apache-tvm 0.27 on loopback (tvm.exec.rpc_server; tvm.exec.rpc_tracker, which
needs the tornado package): rpc.connect(url, port), rpc.connect_tracker(url, port).request(key),
session.upload / load_module / cpu(), runtime.tensor(arr, device=remote_dev),
relax.VirtualMachine(remote_module, remote_dev).time_evaluator(name, dev, number, repeat) ->
BenchmarkResult with per-repeat means. The device's runtime environment is part of what is
measured: run its server as the app runs TVM (TVM_NUM_THREADS, and a short
TVM_THREAD_POOL_SPIN_COUNT as engine/codegen/_tvm.py sets, or idle TVM workers spin against
the C++ kernels' pool: on loopback a small conv's C++ kernel measured with a relative spread of
3.1 under TVM's default spin, 0.007 with the short one).
"""
from __future__ import annotations

import math
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..runtime.measure import Stats, drift, summarize
from .targets import as_target, cross_compiler, tvm_target, vector_isa
from ._tvm import relax, rpc, tvm
from .compile import kernel_for
from .native_replace import native_replacement
from .pipeline import relax_pipeline
from .rewrite import LayerMatch

BACKENDS = ("tir", "native")


@dataclass(frozen=True)
class LayerShape:
    """One conv2d / linear layer as its kernel runs it (input (N, C, H, W) or (rows, K))."""

    op: str
    in_shape: tuple
    out_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    act: str = "none"
    residual: bool = False


@dataclass
class KernelChoice:
    """One way to run the layer: backend "tir" (generated) or "native" (C++ via the bridge) on
    `weight` (already masked). block: the pruning block (its rows set the kernel's group
    height; None for unblocked schemes); dense=True: the layer kept dense (the dense / grouped /
    depthwise kernels compile_model gives such a layer), block ignored. algo: with dense and
    backend "native", a packed dense algorithm ("gemm", "winograd"), as a plan's Choice.kernel
    names it; None: the SpMM kernel with every column kept. int8: the layer as an int8 module
    (QConv2d / QDepthwiseConv2d: its packed weight, uint8 NCHW4 in and out), called as
    compile_int8 calls it; weight and block are then ignored."""

    name: str
    backend: str
    weight: np.ndarray
    block: Optional[tuple] = None
    dense: bool = False
    algo: Optional[str] = None
    int8: object = None          # an int8 layer module (engine.runtime.qmodules): see int8_choice


@dataclass
class LayerModule:
    """A compiled module holding one Relax function per choice, ready to export."""

    executable: object
    target: object                       # engine Target
    layer: LayerShape
    labels: dict                         # choice name -> kernel name
    uses_native: bool
    skipped: dict = field(default_factory=dict)   # choice name -> why it was not built


@dataclass
class RemoteResult:
    """One choice timed on the device (seconds, the device's own clock)."""

    stats: Stats
    kernel: str
    number: int                          # calls averaged per sample
    max_err: float


def local_session():
    """A session on this machine, in this process: what the artifact's own runtime does."""
    import logging
    # TVM's RPC server module logs every module it loads at INFO on its own handler
    logging.getLogger("RPCServer").setLevel(logging.WARNING)
    return rpc.LocalSession()


def connect(host: str, port: int, key: Optional[str] = None, session_timeout: float = 0):
    """An RPC session: straight to a server, or (key given) through the tracker at host:port,
    which hands out a free device registered under `key`."""
    try:
        if key:
            return rpc.connect_tracker(host, int(port)).request(
                key, priority=1, session_timeout=session_timeout)
        return rpc.connect(host, int(port), session_timeout=session_timeout)
    except Exception as e:  # noqa: BLE001  (re-raised naming the address)
        where = f"tracker {host}:{port} key {key!r}" if key else f"RPC server {host}:{port}"
        raise ConfigError(f"cannot reach the {where}: {type(e).__name__}: "
                          f"{(str(e).splitlines() or [''])[0]}") from e


def _match(layer: LayerShape, choice: KernelChoice, bias, x, residual) -> LayerMatch:
    """The layer as compile_model's rewrite sees it, so the kernel built for it below is the
    one a compiled model gets (compile.kernel_for / compile.native_replacement)."""
    ph, pw = layer.padding
    return LayerMatch(choice.name, layer.op, np.asarray(choice.weight, np.float32), bias, x,
                      tuple(layer.in_shape), tuple(layer.out_shape), None, residual=residual,
                      act=layer.act, stride=tuple(layer.stride), padding=(ph, pw, ph, pw),
                      dilation=tuple(layer.dilation), groups=int(layer.groups))


def build_layer_module(layer: LayerShape, choices: Sequence[KernelChoice], bias, target
                       ) -> LayerModule:
    """Compile every choice of one layer into one module for `target` (engine target name or
    Target), each as compile_model(backends="plan") builds the layer. Choices a compiled model
    cannot run that way are skipped with the reason (native for a linear layer: compiled
    models run linear layers as generated TIR)."""
    tgt = as_target(target)
    tvm_tgt = tvm_target(tgt)
    isa = vector_isa(tvm_tgt)
    bias = None if bias is None else np.asarray(bias, np.float32)
    bb = relax.BlockBuilder()
    labels, skipped, uses_native = {}, {}, False
    out_ty = relax.type.TensorType(tuple(layer.out_shape), "float32")
    for i, ch in enumerate(choices):
        if ch.backend not in BACKENDS:
            raise ConfigError(f"choice {ch.name!r}: unknown backend {ch.backend!r}; known: "
                              f"{BACKENDS}")
        if ch.int8 is not None:
            labels[ch.name] = _int8_function(bb, ch, layer)
            uses_native = True
            continue
        x = relax.Var("x", relax.type.TensorType(tuple(layer.in_shape), "float32"))
        params = [x] + ([relax.Var("residual", out_ty)] if layer.residual else [])
        m = _match(layer, ch, bias, x, params[1] if layer.residual else None)
        plan_choice = None if ch.dense else SimpleNamespace(block=ch.block)
        if ch.backend == "native":
            rep = native_replacement(m, plan_choice, ch.algo if ch.dense else None)
            if rep is None and ch.algo is not None:
                skipped[ch.name] = f"the packed dense {ch.algo} kernel does not run this conv"
                continue
            if rep is None:
                skipped[ch.name] = ("compiled models run this layer as generated TIR, not the "
                                    "C++ kernels (native needs a conv); measure backend tir")
                continue
        with bb.function(ch.name, params):
            if ch.backend == "native":
                res = m.residual if rep.has_residual else relax.const(np.zeros(1, np.float32))
                args = relax.Tuple([x] + [relax.const(t) for t in rep.tables] + [res])
                y = bb.emit(relax.call_dps_packed(rep.extern, args, out_ty))
                labels[ch.name] = _native_label(rep, ch)
                uses_native = True
            else:
                k = kernel_for(m, isa, not ch.dense, plan_choice, i)
                gv = bb.add_func(k.prim_func(), k.name)
                args = [x] + [relax.const(np.ascontiguousarray(t)) for t in k.tables]
                if k.has_residual:
                    args.append(m.residual)
                y = bb.emit(relax.call_tir(gv, relax.Tuple(args), out_ty))
                labels[ch.name] = k.label
            bb.emit_func_output(y)
    if not labels:
        return LayerModule(None, tgt, layer, labels, False, skipped)
    with tvm.transform.PassContext(opt_level=3):
        ex = tvm.compile(bb.get(), tvm_tgt, relax_pipeline=relax_pipeline(tvm_tgt))
    return LayerModule(ex, tgt, layer, labels, uses_native, skipped)


def nchw4_shape(shape: tuple) -> tuple:
    """(N, C, H, W) -> the uint8 NCHW4 tensor's (N, ceil(C / 4), H, W, 4)."""
    n, c, h, w = shape
    return (n, (c + 3) // 4, h, w, 4)


def _int8_function(bb, ch: KernelChoice, layer: LayerShape) -> str:
    """One function calling the int8 kernel of ch.int8 (uint8 NCHW4 in and out, the residual
    too), as native_lowering imports that module in a lowered int8 model; its label."""
    from .native_lowering import qconv_args, qdepthwise_args
    depthwise = type(ch.int8).__name__ == "QDepthwiseConv2d"
    func = "spe.v1.qdepthwise2d" if depthwise else "spe.v1.qconv2d"
    consts = (qdepthwise_args if depthwise else qconv_args)(ch.int8, layer.residual)
    out_ty = relax.type.TensorType(nchw4_shape(layer.out_shape), "uint8")
    x = relax.Var("x", relax.type.TensorType(nchw4_shape(layer.in_shape), "uint8"))
    params = [x] + ([relax.Var("residual", out_ty)] if layer.residual else [])
    with bb.function(ch.name, params):
        r = params[1] if layer.residual else relax.const(np.zeros(1, np.uint8))
        args = relax.Tuple([x] + [relax.const(c) for c in consts] + [r])
        bb.emit_func_output(bb.emit(relax.call_dps_packed(func, args, out_ty)))
    return ch.int8.layer.kernel_name


def build_conversion_module(shapes: Sequence[tuple], target, scale: float = 0.05,
                            zero_point: int = 128) -> LayerModule:
    """quantize (float32 NCHW -> uint8 NCHW4) and dequantize functions ("q<i>", "dq<i>") for
    each (N, C, H, W) of `shapes`, as an int8 artifact converts a tensor between domains."""
    from .native_lowering import dequantize_args, quantize_args
    tgt = as_target(target)
    tvm_tgt = tvm_target(tgt)
    bb, labels = relax.BlockBuilder(), {}
    q = SimpleNamespace(scale=float(scale), zero_point=int(zero_point))
    for i, shape in enumerate(shapes):
        shape = tuple(int(v) for v in shape)
        f32, u8 = relax.type.TensorType(shape, "float32"), \
            relax.type.TensorType(nchw4_shape(shape), "uint8")
        for name, func, ty_in, ty_out, consts in (
                (f"q{i}", "spe.v1.quantize", f32, u8, quantize_args(q)),
                (f"dq{i}", "spe.v1.dequantize", u8, f32,
                 dequantize_args(SimpleNamespace(channels=shape[1], **vars(q))))):
            x = relax.Var("x", ty_in)
            with bb.function(name, [x]):
                args = relax.Tuple([x] + [relax.const(c) for c in consts])
                bb.emit_func_output(bb.emit(relax.call_dps_packed(func, args, ty_out)))
            labels[name] = func
    with tvm.transform.PassContext(opt_level=3):
        ex = tvm.compile(bb.get(), tvm_tgt, relax_pipeline=relax_pipeline(tvm_tgt))
    return LayerModule(ex, tgt, None, labels, True)


def _native_label(rep, ch: KernelChoice) -> str:
    """The kernel name a measurement records: "<algo>:<extern>" for a packed dense algorithm
    (what engine.runtime.dense.dense_algo reads back from a plan's Choice.kernel), the SpMM
    call with its group height, or the bridge function."""
    if ch.algo is not None:
        return f"{ch.algo}:{rep.extern}"
    if rep.extern == "spe.v1.sparse_conv2d":
        return f"{rep.extern}:{int(rep.tables[2][0])}r"
    return rep.extern


def export_module(module: LayerModule, path) -> Path:
    """Write the module's shared library with the target's (cross) compiler, the C++ kernels'
    bridge linked in when a choice calls them."""
    path = Path(path)
    if module.uses_native:
        from .native_lowering import export_library
        return export_library(module.executable, path, module.target)
    cc = cross_compiler(module.target)
    module.executable.export_library(str(path), **({"cc": cc} if cc else {}))
    return path


def _check(vm, fname: str, args: list, ref, rtol: float) -> tuple:
    """(max abs error, None) of one function's output against `ref` (None: not checked), or
    (error, why it is left out)."""
    got = vm[fname](*args).numpy().astype(np.float64)
    if ref is None:
        return 0.0, None
    ref = np.asarray(ref, np.float64)      # uint8 outputs too: no wrap-around in the difference
    scale = float(np.abs(ref).max()) + 1e-12
    err = float(np.abs(got - ref).max()) if got.shape == ref.shape else math.inf
    if not err <= rtol * scale:
        return err, (f"device output differs from the reference (max abs err {err:.3g}, "
                     f"scale {scale:.3g})")
    return err, None


def _device_args(inputs, names, dev) -> dict:
    """{function name: [device tensors]} of time_on_device's inputs (each array uploaded once)."""
    def upload(arrays):
        return [tvm.runtime.tensor(np.ascontiguousarray(
            a, np.float32 if np.issubdtype(np.asarray(a).dtype, np.floating) else None),
            device=dev) for a in arrays]
    if isinstance(inputs, dict):
        return {n: upload(inputs[n]) for n in names}
    shared = upload(inputs)
    return {n: shared for n in names}


def time_on_device(session, module: LayerModule, inputs: Sequence[np.ndarray],
                   refs: Optional[dict] = None, *, min_repeat_ms: float = 10.0,
                   min_rounds: int = 5, max_rounds: int = 20, stable_tol: float = 0.03,
                   rtol: float = 1e-4, flush_bytes: int = 0) -> tuple:
    """Upload, load and time every function of `module` on the session's CPU.

    inputs: x (and the residual when the layer has one), host numpy arrays (floating ones as
    float32, integer ones as they are), shared by every function, or a dict {function name:
    its arrays} (the int8 and conversion modules' functions take different ones). refs: choice name
    -> expected output (a choice whose device output differs by more than rtol x max|ref| is
    left out, with the reason). Each round runs every function once for one sample (the mean
    of `number` calls, number set so a sample lasts about min_repeat_ms); rounds go on from
    min_rounds until no median drifts more than stable_tol between the halves of its samples,
    at most max_rounds. flush_bytes: > 0, the device's runtime streams that many bytes through
    its caches before every timed call (TVM's cache_flush_bytes: the layer's weights cold, as
    inside a model bigger than the caches; its input too); samples are then single calls.
    Returns ({name: RemoteResult}, {name: why left out})."""
    if module.executable is None:
        return {}, dict(module.skipped)
    refs = refs or {}
    failed = dict(module.skipped)
    with tempfile.TemporaryDirectory(prefix="engine_remote_") as tmp:
        name = f"engine_layer_{zlib.crc32(repr(sorted(module.labels.items())).encode()):08x}.so"
        lib = export_module(module, Path(tmp) / name)
        session.upload(str(lib), name)
    rlib = session.load_module(name)
    dev = session.cpu()
    vm = relax.VirtualMachine(rlib, dev)
    args_of = _device_args(inputs, module.labels, dev)
    timers, numbers, errs = {}, {}, {}
    if flush_bytes:              # single-call samples are noisier: a few more of them
        min_rounds, max_rounds = max(min_rounds, 7), max(max_rounds, 21)
    for fname in module.labels:
        err, why = _check(vm, fname, args_of[fname], refs.get(fname), rtol)
        if why is not None:
            failed[fname] = why
            continue
        # the fastest of 3 calibration repeats: one disturbed probe must not shrink `number`
        probe = vm.time_evaluator(fname, dev, number=1, repeat=3,
                                  min_repeat_ms=max(1, int(min_repeat_ms)))(*args_of[fname])
        per_call = max(float(min(probe.results)), 1e-9)
        # with a flush: one call per sample, each after a flush
        numbers[fname] = 1 if flush_bytes else \
            max(1, int(math.ceil(min_repeat_ms / 1000.0 / per_call)))
        timers[fname] = vm.module.time_evaluator(fname, dev, number=numbers[fname], repeat=1,
                                                 cache_flush_bytes=int(flush_bytes))
        errs[fname] = err
    samples = {n: [] for n in timers}
    for r in range(max_rounds):
        for n, te in timers.items():
            samples[n].append(float(te(*args_of[n]).mean))
        if r + 1 >= min_rounds and all(drift(s) <= stable_tol for s in samples.values()):
            break
    out = {}
    for n, s in samples.items():
        st = summarize(s, stable_tol)
        # runs = timed calls; spread / drift are over the per-round means
        out[n] = RemoteResult(Stats(st.median, st.spread, len(s) * numbers[n], st.drift,
                                    st.stable), module.labels[n], numbers[n], errs[n])
    return out, failed
