"""RPCProfiler: measure candidates of one layer shape on a remote device over TVM RPC.

    prof = RPCProfiler("arm64", "10.0.0.5", 9090)                  # one RPC server
    prof = RPCProfiler("android-arm64", "tracker.lan", 9190, key="pixel7")   # via a tracker
    prof.target        # "rpc/pixel7/android-arm64"
    table, cands, n = profile_costs(prof, specs, default_space(backends=("native", "tir")))

What is timed is what a compiled model runs on the device (engine.codegen.remote): a pruned
layer as its generated TIR kernel (backend "tir") or the C++ kernels through the bridge
(backend "native", convs only); DENSE as the faster of the C++ dense kernel (convs) and the
generated dense kernel, with `kernel` naming which; an int8 candidate as the int8 kernel an
int8 artifact calls (spe.v1.qconv2d / qdepthwise2d, uint8 NCHW4 in and out), checked bit for
bit against this host's int8 kernel, and the domain changes between layers per tensor shape
(time_conversions: spe.v1.quantize / dequantize). There is no torch on the device. Masks are
built here with the engine's schemes (the same MaskCache as the host profiler), and every
kernel's device output is checked against torch on the host before it is timed.

One RPC session per measured shape: the server serves each session in a fresh process, so
nothing one shape loaded (the bridge caches layers by their weights' address) outlives it.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from mapping import Candidate, LayerSpec, Measurement
from mapping.space import DENSE_KEY

from ..errors import ConfigError
from ..targets import get_target
from .cache import kernels_build_id
from .host import scrub_bytes
from .int8 import INT8_DENSE_ROWS, int8_timed
from .masks import MaskCache, group_rows, mask_problem, measurable, weight_for
from .specs import input_shape, output_shape, parse_epilogue


def _act(y: torch.Tensor, act: str) -> torch.Tensor:
    return y if act == "none" else getattr(F, act)(y)   # relu, relu6, hardswish, silu


def reference(spec: LayerSpec, w: torch.Tensor, bias: torch.Tensor, x: torch.Tensor,
              residual: Optional[torch.Tensor], act: str) -> np.ndarray:
    """The layer's output in torch (what every device kernel must reproduce)."""
    with torch.no_grad():
        if spec.op == "linear":
            y = F.linear(x, w, bias)
        else:
            y = F.conv2d(x, w, bias, spec.stride, spec.padding, spec.dilation, spec.groups)
        if residual is not None:
            y = y + residual
        return _act(y, act).numpy()


def dense_algos(spec: LayerSpec) -> tuple:
    """The packed dense algorithms a compiled model can run a conv kept dense on (the bridge's
    spe.v1.dense_conv2d): implicit GEMM for groups 1, Winograd for 3x3 stride-1 undilated."""
    if spec.op != "conv2d" or spec.groups != 1:
        return ()
    wino = (tuple(spec.kernel) == (3, 3) and tuple(spec.stride) == (1, 1)
            and tuple(spec.dilation) == (1, 1))
    return ("gemm", "winograd") if wino else ("gemm",)


class RPCProfiler:
    """mapping.Profiler for a device behind TVM RPC; see the module docstring.

    target: an engine target name (engine.targets: the device's LLVM target and cross
    compiler). host, port: the RPC server, or the tracker when `key` is given. weights,
    importance, masks, seed: as HostProfiler. min_repeat_ms / min_rounds / max_rounds /
    stable_tol: the timing rule (engine.codegen.remote.time_on_device). backends: sparse
    backends to measure ("native", "tir"). cache: "warm" (calls back to back) or bytes the
    device streams through its caches before every timed call (weights cold, as inside a
    model bigger than the device's caches)."""

    def __init__(self, target: str, host: str, port: int, key: Optional[str] = None, *,
                 weights: Optional[dict] = None, importance="l2",
                 backends=("native", "tir"), min_repeat_ms: float = 10.0,
                 min_rounds: int = 5, max_rounds: int = 20, stable_tol: float = 0.03,
                 session_timeout: float = 0, seed: int = 0,
                 masks: Optional[MaskCache] = None, cache="warm"):
        self.device_target = get_target(target)
        from ..codegen.targets import cross_compiler
        cross_compiler(self.device_target)   # fail now if the toolchain is missing
        self.backends = (backends,) if isinstance(backends, str) else tuple(backends)
        bad = [b for b in self.backends if b not in ("native", "tir")]
        if bad:
            raise ConfigError(f"RPCProfiler: unknown backend(s) {bad}; known: native, tir")
        self.host, self.port, self.key = host, int(port), key
        self.session_timeout = session_timeout
        self.timing = dict(min_repeat_ms=min_repeat_ms, min_rounds=min_rounds,
                           max_rounds=max_rounds, stable_tol=stable_tol)
        self.weights = dict(weights or {})
        self.masks = masks if masks is not None else MaskCache(importance)
        self.seed = seed
        self.notes: list = []
        where = key or f"{host}:{self.port}"
        self.target = f"rpc/{where}/{self.device_target.name}/{kernels_build_id()}"
        # a device's cache sizes are not known from here: warm, or the bytes the caller says
        if cache != "warm" and not (isinstance(cache, int) and not isinstance(cache, bool)
                                    and cache >= 0):
            raise ConfigError(f"RPCProfiler: cache must be 'warm' or a byte count >= 0 (the "
                              f"device's cache sizes are not known here), got {cache!r}")
        self.scrub_bytes = 0 if cache == "warm" else int(cache)
        if self.scrub_bytes:
            self.target += f"/flush{self.scrub_bytes >> 20}M"
        self.source = f"rpc://{host}:{self.port}/{key}" if key else f"rpc://{host}:{self.port}"

    def why_not(self, spec: LayerSpec, cand: Candidate) -> Optional[str]:
        """Why this profiler leaves `cand` out for `spec` (None: it measures it)."""
        why = mask_problem(spec, cand)
        if why is not None or cand.is_dense:
            return why
        if cand.is_int8 and spec.is_grouped and not spec.is_depthwise:
            return f"int8: grouped conv (groups={spec.groups}) has no int8 kernel"
        if cand.is_int8 and spec.op != "conv2d":
            return ("int8: compiled-layer profilers time int8 convs only (an int8 linear layer "
                    "is timed by the host profiler)")
        if cand.backend not in self.backends:
            return f"backend {cand.backend} not measured (profiler backends {self.backends})"
        if cand.backend == "native" and spec.op != "conv2d":
            return "compiled models run linear layers as generated TIR; measure backend tir"
        return None

    def _session(self, connect):
        return connect(self.host, self.port, self.key, self.session_timeout)

    def measure(self, spec: LayerSpec, candidates: list) -> dict:
        """candidate key -> Measurement for DENSE (if listed) and every candidate it can run."""
        from ..codegen.remote import (KernelChoice, LayerShape, build_layer_module, connect,
                                      time_on_device)
        act, residual = parse_epilogue(spec.epilogue)
        layer_id, weight = weight_for(spec, self.weights, self.seed)
        g = torch.Generator().manual_seed(self.seed)
        bias = torch.randn(spec.out_channels, generator=g)
        x = torch.randn(input_shape(spec), generator=g)
        r = torch.randn(output_shape(spec), generator=g) if residual else None
        layer = LayerShape(spec.op, input_shape(spec), output_shape(spec), spec.stride,
                           spec.padding, spec.dilation, spec.groups, act, residual)
        choices, refs, owner, inputs = [], {}, {}, {}    # owner: function -> candidate key
        floats = [x.numpy()] + ([r.numpy()] if r is not None else [])

        def add(key, backend, w, block, dense, ref, algo=None, int8=None):
            name = f"c{len(choices)}"
            choices.append(KernelChoice(name, backend, w.numpy(), block, dense, algo,
                                        None if int8 is None else int8.module))
            refs[name], owner[name] = ref, key
            inputs[name] = floats if int8 is None else \
                [int8.x.numpy()] + ([int8.residual.numpy()] if r is not None else [])

        wanted = {c.key: c for c in candidates}
        if DENSE_KEY in wanted:
            ref = reference(spec, weight, bias, x, r, act)
            if spec.op == "conv2d":
                add(DENSE_KEY, "native", weight, None, True, ref)
                for algo in dense_algos(spec):
                    add(DENSE_KEY, "native", weight, None, True, ref, algo)
            add(DENSE_KEY, "tir", weight, None, True, ref)
        for key, cand in measurable(self, spec, wanted):
            w = weight * self.masks.mask(layer_id, weight, cand).to(weight.dtype)
            if cand.is_int8:     # the host's int8 kernel gives the reference (bit-exact ISAs)
                q = int8_timed(spec, w, bias, group_rows(cand) if cand.pruned else
                               INT8_DENSE_ROWS, seed=self.seed)
                add(key, "native", w, cand.block, False, q().numpy(), int8=q)
                continue
            add(key, cand.backend, w, cand.block, False, reference(spec, w, bias, x, r, act))
        if not choices:
            return {}
        module = build_layer_module(layer, choices, bias.numpy(), self.device_target)
        session = self._session(connect)
        try:
            results, failed = time_on_device(session, module, inputs, refs, **self.timing,
                                             flush_bytes=self.scrub_bytes)
        finally:
            del session      # closes the connection: the server's process for it exits
        for name, why in failed.items():
            self.notes.append(f"{spec.name} ({spec.shape_key}) {owner[name]} ({name}): left "
                              f"out: {why}")
        out = {}
        for name, res in results.items():
            key = owner[name]
            m = Measurement(us=res.stats.median * 1e6, spread=res.stats.spread,
                            runs=res.stats.runs, kernel=res.kernel, source=self.source)
            if key not in out or m.us < out[key].us:    # DENSE: the faster dense kernel
                out[key] = m
        return out


    def time_conversions(self, shapes: list) -> dict:
        """{(N, C, H, W): {"quantize": Measurement, "dequantize": Measurement}}: a tensor's
        domain changes as the device runs them (spe.v1.quantize to uint8 NCHW4 and back, one
        module for every shape), each output checked against this host's kernels."""
        from ..codegen.remote import build_conversion_module, connect, nchw4_shape, \
            time_on_device
        from ..runtime.qmodules import Dequantize, Quantize
        shapes = [tuple(int(v) for v in s) for s in shapes]
        if not shapes:
            return {}
        scale, zp = 0.05, 128
        module = build_conversion_module(shapes, self.device_target, scale, zp)
        g = torch.Generator().manual_seed(self.seed)
        inputs, refs = {}, {}
        for i, shape in enumerate(shapes):
            x = torch.randn(shape, generator=g)
            u = torch.randint(0, 256, nchw4_shape(shape), generator=g, dtype=torch.uint8)
            inputs[f"q{i}"], inputs[f"dq{i}"] = [x.numpy()], [u.numpy()]
            refs[f"q{i}"] = Quantize(scale, zp).run_kernel(x).numpy()
            refs[f"dq{i}"] = Dequantize(shape[1], scale, zp).run_kernel(u).numpy()
        session = self._session(connect)
        try:
            results, failed = time_on_device(session, module, inputs, refs, **self.timing)
        finally:
            del session
        for name, why in failed.items():
            self.notes.append(f"conversion {name}: left out: {why}")
        out: dict = {}
        for name, res in results.items():
            kind = "quantize" if name.startswith("q") else "dequantize"
            out.setdefault(shapes[int(name.lstrip("dq"))], {})[kind] = Measurement(
                us=res.stats.median * 1e6, spread=res.stats.spread, runs=res.stats.runs,
                kernel=res.kernel, source=self.source)
        return out


class CompiledProfiler(RPCProfiler):
    """Candidates timed as the saved artifact runs them, on this machine: each layer compiled
    into a module exactly as opt.save() compiles it (generated TIR, or the C++ kernels through
    the bridge), loaded in this process (a local TVM session) and timed with the TVM runtime,
    not the Python host runtime. optimize(device="artifact") maps with it, and the pipeline's
    in-place check then uses it too. cache: as HostProfiler's (a scrub before every timed
    call, sized from the model's weights)."""

    def __init__(self, *, weights: Optional[dict] = None, importance="l2",
                 backends=("native", "tir"), threads: Optional[int] = None, cache="model",
                 **timing):
        super().__init__("host", "local", 0, weights=weights, importance=importance,
                         backends=backends, **timing)
        if threads is not None:
            from ..codegen import set_num_threads
            set_num_threads(int(threads))
        from .host import cpu_model
        from ..codegen import get_num_threads
        nbytes = scrub_bytes(cache, self.weights, get_num_threads())
        self.scrub_bytes = nbytes
        self.target = (f"compiled/{cpu_model()}/{get_num_threads()}t/"
                       f"{kernels_build_id()}{f'/scrub{nbytes >> 20}M' if nbytes else ''}")
        self.source = "compiled"

    def _session(self, connect):
        from ..codegen.remote import local_session
        return local_session()
