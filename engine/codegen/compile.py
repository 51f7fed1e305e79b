"""compile_model: a pruned torch model + its plan -> a TVM Relax executable for a target.

    cm = compile_model(opt.pruned_model, (x,), opt.plan, "host")
    y, = cm.run(x)                       # host only: numpy outputs
    cm.export_library("model.so")        # any target, with its (cross) compiler

Steps: torch.export (non-strict) -> Relax (from_exported_program, params kept as named inputs
so layers keep their torch names) -> rewrite.find_layers (conv / linear chains, BN and bias
folded, residual add and ReLU / ReLU6 fused) -> one generated TIR kernel per layer
(spmm_tir.py): row groups from the layer's pruned weight when the plan prunes it, dense or
grouped row groups otherwise -> params bound as constants -> pipeline.relax_pipeline (TVM's CPU
pipeline + glue schedules) -> tvm.compile.
"""
from __future__ import annotations

import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import CaptureError, CompileError, ConfigError
from ..runtime.dense import dense_algo
from ..runtime.packing import DENSE_TIR_ROWS, group_rows_for
from ..targets import Target
from ..targets.toolchain import host_arch, norm_arch
from ..graph.export_inputs import TensorInputs, has_settings, named_tensors
from ..graph.inputs import ModelInputs, check_inputs, input_names
from .targets import as_target, cross_compiler, tvm_target, vector_isa
from ._tvm import import_exported_program, relax, tvm
from .import_errors import build_error, compile_error
from .blocks import with_blocks
from .geometry import ConvGeometry
from .native_replace import DEPTHWISE_EXTERN, DENSE_EXTERN, native_replacement
from .pipeline import relax_pipeline
from .pool_tir import rewrite_pools
from .rewrite import LayerMatch, Replacement, find_layers, rewrite_layers
from .rowgroups import RowGroups
from .token_linear import as_pixel_conv, token_rows
from .spmm_tir import Kernel, VectorISA, conv_kernel, linear_kernel

# Group height of layers kept dense (engine.runtime.packing.DENSE_TIR_ROWS).
DENSE_CONV_ROWS = DENSE_TIR_ROWS
# The C++ kernel's dense tile is 8 rows x 48 pixels on AVX-512 (4x96 is for 4-row sparse blocks):
# ResNet-50's dense convs, summed per layer, 26.5 ms at 8 rows vs 30.3 ms at 4 (2 threads).
SPARSE_BACKENDS = ("native", "tir")


@dataclass
class LayerKernel:
    """How one conv / linear layer was compiled."""

    layer: str
    op: str                   # "conv2d" | "linear"
    kind: str                 # "sparse" (TIR) | "native" (C++ bridge) | "dense" | "grouped"
    kernel: str               # e.g. tir_f32_spmm_4x96__avx512, spe.v1.depthwise_conv2d
    function: str             # PrimFunc name in the module
    fused: tuple              # ("batch_norm", "residual", "relu", ...)
    stats: dict
    source: str = field(repr=False, default="")

    @property
    def density(self) -> float:
        return float(self.stats.get("density", 1.0))


@dataclass
class CompiledModel:
    """A compiled model: the relax Executable, its target and I/O specs.

    inputs / outputs: [(name, shape, dtype)] in call order. layers: one LayerKernel per conv /
    linear the compiler generated a kernel for; notes: what it could not do, and why.
    """

    executable: object
    target: Target
    inputs: list
    outputs: list
    layers: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    structure: Optional[dict] = None   # the model's output structure (engine.graph.outputs)
    _vm: object = field(default=None, repr=False, compare=False)
    _tmp: object = field(default=None, repr=False, compare=False)

    @property
    def uses_native_kernels(self) -> bool:
        """Some layers call the C++ kernels (the spe.v1 bridge, linked in at export)."""
        return any(lk.kind == "native" for lk in self.layers)

    def export_library(self, path: Union[str, Path]) -> Path:
        """Write the module as a shared library for the target (its cross compiler for arm64 /
        Android; raises ConfigError naming the package when that compiler is missing). The
        library is self-contained: weights and tables are constants inside it, and the C++
        kernels' bridge is linked in when layers use it. Load it with the TVM runtime:
        module = load_module(path); vm_load_executable; vm_initialization; main."""
        path = Path(path)
        cc = cross_compiler(self.target)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.uses_native_kernels:
            from .native_lowering import export_library as export_with_bridge
            export_with_bridge(self.executable, path, self.target)
            return path
        kw = {"cc": cc} if cc else {}
        self.executable.export_library(str(path), **kw)
        return path

    @property
    def runs_here(self) -> bool:
        return norm_arch(self.target.arch) == host_arch() and \
            self.target.cross_compiler is None

    def run(self, *inputs) -> list:
        """Run on this machine (host targets only); inputs numpy arrays or torch tensors, in
        the order of `inputs`. Returns the outputs as numpy arrays."""
        return [t.numpy() for t in _flatten(self.bound(*inputs)())]

    def bound(self, *inputs):
        """A call of the compiled main on these inputs, converted once: what timing it runs
        (the VM's outputs, not copied out)."""
        if not self.runs_here:
            raise ConfigError(f"target {self.target.name!r} ({self.target.arch}) does not run "
                              f"on this {platform.machine()} machine; export_library() it and "
                              f"run it on the device")
        if len(inputs) != len(self.inputs):
            raise ConfigError(f"the model takes {len(self.inputs)} input(s) "
                              f"{[n for n, _, _ in self.inputs]}, got {len(inputs)}")
        args = []
        for (name, shape, dtype), x in zip(self.inputs, inputs):
            a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            if tuple(a.shape) != tuple(shape) or str(a.dtype) != dtype:
                raise ConfigError(f"input {name!r}: expected {dtype}{list(shape)}, got "
                                  f"{a.dtype}{list(a.shape)}")
            args.append(tvm.runtime.tensor(np.ascontiguousarray(a)))
        if self._vm is None:
            exe = self.executable
            if self.uses_native_kernels:   # the bridge registers its functions when loaded
                import tempfile
                self._tmp = tempfile.TemporaryDirectory(prefix="engine_codegen_")
                exe = tvm.runtime.load_module(
                    str(self.export_library(Path(self._tmp.name) / "model.so")))
            self._vm = relax.VirtualMachine(exe, tvm.cpu())
        main = self._vm["main"]
        return lambda: main(*args)

    def __call__(self, *inputs) -> list:
        return self.run(*inputs)

    def layer(self, name: str) -> LayerKernel:
        for lk in self.layers:
            if lk.layer == name:
                return lk
        raise KeyError(f"no compiled layer {name!r}")

    def summary(self) -> str:
        lines = [f"{'layer':<28} {'op':<7} {'kind':<8} {'density':>7}  {'kernel':<28} fused"]
        for lk in self.layers:
            lines.append(f"{lk.layer:<28} {lk.op:<7} {lk.kind:<8} {lk.density:7.3f}  "
                         f"{lk.kernel:<28} {'+'.join(lk.fused) or '-'}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _flatten(out) -> list:
    if isinstance(out, tvm.runtime.Tensor):
        return [out]
    try:
        return [t for item in out for t in _flatten(item)]
    except TypeError:
        return [out]


def compile_model(pruned_model: nn.Module, example_inputs: tuple, plan=None,
                  target: Union[str, Target] = "host", *, dense: str = "tir",
                  backends: str = "tir", fuse_blocks: bool = False) -> CompiledModel:
    """Compile `pruned_model` (the masked dense model; eval mode is used) for `target`.

    plan: a mapping.Plan; layers it prunes (backend "native" or "tir") get sparse kernels
        generated from their masked weights (group height = the block's rows, at most 8).
        None compiles every layer dense.
    dense: "tir" (default) compiles dense convs / linears with the same generator (dense row
        groups); "tvm" leaves them to TVM's legalization + the glue schedules (slow; for
        comparison).
    backends: "tir" (default): every pruned layer runs a generated kernel, whatever backend
        the plan names. "plan": each pruned layer runs the backend its plan Choice names:
        "tir" a generated kernel, "native" the C++ kernels through the spe.v1 bridge
        (engine/codegen/native_bridge.py; built with CMake on first use and linked into the
        exported library). Native needs a conv with symmetric padding; other layers named
        "native" (linear, asymmetric padding) run generated TIR, with a note. Layers kept
        dense whose Choice names backend "native" run the C++ kernels densely: depthwise convs
        the direct depthwise kernel (spe.v1.depthwise_conv2d), other convs (grouped ones too)
        the SpMM kernel on a dense pack; other dense layers follow `dense`.
    """
    if dense not in ("tir", "tvm"):
        raise ConfigError(f"dense must be 'tir' or 'tvm', got {dense!r}")
    if backends not in ("tir", "plan"):
        raise ConfigError(f"backends must be 'tir' or 'plan', got {backends!r}")
    tgt = as_target(target)
    cross_compiler(tgt)          # fail before any work if the toolchain is missing
    tvm_tgt = tvm_target(tgt)
    example_inputs = check_inputs(pruned_model, example_inputs)
    _refuse_sparse_inputs(pruned_model, example_inputs)
    mod, params, layer_names, in_specs = _import(pruned_model, example_inputs)
    matches = find_layers(mod["main"], params, layer_names)
    chooser = _LayerChooser(plan, dense, backends, vector_isa(tvm_tgt))
    matches, chooser = with_blocks(fuse_blocks, mod["main"], params, matches, chooser, LayerKernel)
    mod, _ = rewrite_layers(mod, matches, chooser, vector_isa(tvm_tgt))
    mod, _ = rewrite_pools(mod, vector_isa(tvm_tgt))
    notes = chooser.notes + chooser.unused_notes()
    mod = _bind_params(mod, params)
    try:
        with tvm.transform.PassContext(opt_level=3):
            ex = tvm.compile(mod, tvm_tgt, relax_pipeline=relax_pipeline(tvm_tgt))
    except Exception as e:  # noqa: BLE001  (TVM's InternalError names no op: say what we know)
        raise build_error(e, mod) from e
    return CompiledModel(ex, tgt, in_specs, _output_specs(mod["main"]), chooser.layers, notes)


def _refuse_sparse_inputs(model: nn.Module, inputs) -> None:
    """A sparse input (a GNN's adjacency) has no compiled form: the artifact's inputs are dense
    buffers, and TVM imports no torch.sparse op. Run such a model on the host runtime."""
    names = input_names(model, len(inputs))
    for name, t in zip(names, inputs):
        if isinstance(t, torch.Tensor) and t.layout != torch.strided:
            raise CompileError(f"input {name!r} is a {t.layout} tensor: a compiled module takes "
                               f"dense inputs only (TVM has no sparse tensors); run the model "
                               f"with the host runtime, opt(...), which keeps torch.sparse ops")


class _LayerChooser:
    """rewrite_layers' callback: the kernel each matched conv / linear gets (see
    compile_model's docstring), with the notes and the LayerKernel list it records."""

    def __init__(self, plan, dense: str, backends: str, isa: VectorISA):
        self.choices = {c.layer: c for c in plan} if plan is not None else {}
        self.dense, self.backends, self.isa = dense, backends, isa
        self.notes: list = []
        self.layers: list = []
        self.used: set = set()
        self.first_name: dict = {}  # structure key -> the name of the PrimFunc layers share

    def __call__(self, m: LayerMatch) -> Optional[Replacement]:
        choice = self.choices.get(m.layer)
        sparse = choice is not None and choice.pruned and choice.backend in SPARSE_BACKENDS
        if sparse and m.groups != 1:
            self.notes.append(f"{m.layer}: plan prunes a grouped conv; compiled as grouped "
                              f"(dense)")
            sparse = False
        native = self.backends == "plan" and choice is not None and choice.backend == "native"
        if not sparse and not native and self.dense == "tvm":
            return None
        self.used.add(m.layer)
        rows = token_rows(m)   # a linear over many rows: a 1x1 conv over them (token_linear)
        if rows:
            m = as_pixel_conv(m)
        rep = self._native(m, choice, sparse) if native else None
        if rep is None:
            rep = self._generated(m, choice, sparse)
        if rows:
            rep.tokens = rows
            self.layers[-1].op = "linear"
        return rep

    def _native(self, m: LayerMatch, choice, sparse: bool) -> Optional[Replacement]:
        rep = native_replacement(m, choice if sparse else None,
                                 None if sparse else dense_algo(choice.kernel))
        if rep is None:
            if sparse:
                self.notes.append(f"{m.layer}: backend 'native' needs a conv with symmetric "
                                  f"padding; compiled as generated TIR")
            return None
        if rep.extern == DEPTHWISE_EXTERN:
            stats = {"depthwise": True, "density": 1.0, "pruned": False}
        elif rep.extern == DENSE_EXTERN:
            stats = {"dense": dense_algo(choice.kernel), "density": 1.0, "pruned": False}
        else:
            stats = {"rows": int(rep.tables[2][0]), "density": _density(rep.tables, m.weight),
                     "pruned": sparse}
        self.layers.append(LayerKernel(m.layer, m.op, "native", rep.extern, rep.extern,
                                       tuple(m.fused), stats))
        return rep

    def _generated(self, m: LayerMatch, choice, sparse: bool) -> Replacement:
        k = kernel_for(m, self.isa, sparse, choice, len(self.layers))
        if choice is not None and choice.backend == "native" and sparse:
            k.stats["requested_backend"] = "native"
        fname = self.first_name.setdefault(k.structure_key, k.name)
        self.layers.append(LayerKernel(m.layer, m.op, _kind(m, sparse), k.label, fname,
                                       tuple(m.fused), k.stats, k.source))
        return Replacement(k.prim_func(), k.tables, k.has_residual, k.structure_key)

    def unused_notes(self) -> list:
        notes = [f"{name}: pruned in the plan but not found as a conv / linear with constant "
                 f"weights in the exported graph; compiled by TVM as is"
                 for name, c in self.choices.items() if c.pruned and name not in self.used]
        if self.backends == "tir" and any(c.pruned and c.backend == "native"
                                          for c in self.choices.values()):
            notes.append("layers the plan runs on backend 'native' run generated TIR here "
                         "(backends='plan' calls the C++ kernels instead)")
        return notes


def _density(tables: list, weight: np.ndarray) -> float:
    return float(tables[5].size) / float(weight.size)


def _kind(m: LayerMatch, sparse: bool) -> str:
    return "sparse" if sparse else ("grouped" if m.groups != 1 else "dense")


def kernel_for(m: LayerMatch, isa: VectorISA, sparse: bool, choice, index: int) -> Kernel:
    name = f"engine_{m.op}_{index}_{m.layer}"
    if sparse:
        block_rows = choice.block[0] if choice.block else 1
        rows = group_rows_for(int(block_rows))
        rg = RowGroups.sparse(m.weight, rows)
    elif m.groups != 1:
        og = m.weight.shape[0] // m.groups
        rows = next(r for r in (4, 2, 1) if og % r == 0)
        rg = RowGroups.grouped(m.weight, m.groups, rows)
    else:
        rows = DENSE_CONV_ROWS if m.op == "conv2d" else isa.lanes
        rg = RowGroups.dense(m.weight, rows)
    if m.op == "conv2d":
        n, c, h, w = m.in_shape
        kh, kw = m.weight.shape[2:]
        geom = ConvGeometry(c, h, w, (int(kh), int(kw)), m.stride, m.padding, m.dilation)
        if (n, m.weight.shape[0], geom.out_h, geom.out_w) != tuple(m.out_shape):
            raise RuntimeError(f"{m.layer}: geometry {geom} disagrees with the graph's output "
                               f"shape {m.out_shape}")
        return conv_kernel(name, geom, rg, isa, batch=n, bias=m.bias, act=m.act,
                           residual=m.residual is not None)
    return linear_kernel(name, rg, isa, batch=m.in_shape[0], bias=m.bias, act=m.act)


def _import(model: nn.Module, example_inputs: tuple):
    """torch.export -> Relax with params as named inputs; returns (mod, params, layer names,
    input specs [(name, shape, dtype)] of the tensor inputs)."""
    tensors = tuple(ModelInputs(example_inputs).tensors)
    bound = has_settings(example_inputs)
    root = TensorInputs(model, example_inputs) if bound else model
    prefix = "model." if bound else ""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # torch's own pytree deprecations
            ep = torch.export.export(root, tensors, strict=False)
    except Exception as e:  # noqa: BLE001  (re-raised as the engine's capture error)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CaptureError(f"torch.export could not capture the model: "
                           f"{type(e).__name__}: {first}") from e
    finally:
        model.train(was_training)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        mod, failure = import_exported_program(ep, keep_params_as_input=True)
    if failure is not None:
        raise compile_error(*failure) from failure[0]
    main = mod["main"]
    n_in = int(main.attrs["num_input"])
    values = main.attrs["params"] if "params" in main.attrs else []
    params = {v.name: np.asarray(t.numpy()) for v, t in zip(main.params[n_in:], values)}
    layer_names = {}
    for placeholder, fqn in ep.graph_signature.inputs_to_parameters.items():
        fqn = fqn[len(prefix):] if fqn.startswith(prefix) else fqn
        layer_names[placeholder] = fqn[:-len(".weight")] if fqn.endswith(".weight") else fqn
    names = input_names(model, len(example_inputs))
    in_specs = [(n, tuple(t.shape), str(t.dtype).replace("torch.", ""))
                for n, t in named_tensors(names, example_inputs)]
    return mod, params, layer_names, in_specs


def _bind_params(mod, params: dict):
    """Params become constants; the duplicate copy in the function's attrs is dropped."""
    main = mod["main"]
    if "params" in main.attrs:
        mod[mod.get_global_var("main")] = main.without_attr("params")
    used = {p.name for p in mod["main"].params}
    mod = relax.transform.BindParams("main", {k: v for k, v in params.items() if k in used})(mod)
    return relax.transform.DeadCodeElimination()(mod)


def _output_specs(main) -> list:
    ty = main.ret_ty
    fields = list(getattr(ty, "fields", [ty]))
    out = []
    for i, f in enumerate(fields):
        shape = tuple(int(d) for d in f.shape.values)
        out.append((f"output{i}" if len(fields) > 1 else "output", shape, str(f.dtype)))
    return out
