"""engine.optimize: prune a model where, and only where, it is measurably faster on the target.

    opt = engine.optimize(model, example_inputs=(x,), target="host",
                          scheme="block", block=(4, 1), sparsity=0.8)
    y = opt(x)              # native kernels
    opt.pruned_model        # masked dense torch copy: the numerical reference
    opt.plan                # per-layer choices with reasons (mapping.Plan, JSON round-trip)

Steps: capture check (torch.export) -> layer list -> candidate masks per layer -> lower the
candidate model to native kernels and measure each layer against dense -> keep sparse only the
layers at least `min_speedup` faster -> final masked model + lowering -> verify outputs.
The user's model is never modified.
"""
from __future__ import annotations

import copy
import numbers
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import torch
from torch import nn

from mapping import Choice, Plan
from mapping.plan import DENSE

from . import __version__, options
from .errors import CaptureError, ConfigError, MismatchError
from .graph.inputs import check_inputs
from .graph.layers import LayerInfo, get_module, list_layers
from .runtime import measure as _measure
from .runtime.lower import lower, native_modules
from .runtime.packing import group_rows_for
from .schemes import apply_mask, check_sparsity, get_scheme
from .schemes.base import MaskScheme
from .targets import get_target


@dataclass
class OptimizeConfig:
    """Everything optimize() decides with; one place to validate it."""

    target: str = "host"
    scheme: str = "block"
    block: tuple = (4, 1)
    sparsity: float = 0.8
    importance: Union[str, Callable, None] = "l2"
    exclude: tuple = ()
    threads: Optional[int] = None
    min_speedup: float = 1.1
    measure: bool = True
    capture: bool = True
    verify_rtol: float = 1e-3
    isa: str = "auto"
    backends: Union[str, tuple] = "auto"
    scheme_options: dict = field(default_factory=dict)

    def validate(self) -> None:
        check_sparsity(self.sparsity, " (option 'sparsity')")
        self.sparsity = float(self.sparsity)
        get_target(self.target)
        self.threads = options.integer("threads", self.threads, lo=1, hi=MAX_THREADS,
                                       none_ok=True)
        # >= 1: a layer is pruned only if measured at least this much faster than dense, so a
        # value below 1 would let the engine pick kernels slower than dense
        self.min_speedup = options.number("min_speedup", self.min_speedup, lo=1.0)
        self.measure = options.flag("measure", self.measure)
        self.capture = options.flag("capture", self.capture)
        self.verify_rtol = options.number("verify_rtol", self.verify_rtol, lo=0.0, lo_open=True)
        self.isa = options.text("isa", self.isa)
        self.exclude = options.names("exclude", self.exclude)
        self.block = parse_block(self.block)
        self.backends = parse_backends(self.backends)


# More kernel threads than this is a typo (and asks the OS for that many threads).
MAX_THREADS = 256


SPARSE_BACKENDS = ("native", "tir")


def parse_backends(backends) -> tuple:
    """The sparse backends a layer may be measured on: "auto" (native, plus generated TIR when
    tvm is installed), one name, or a tuple of names from SPARSE_BACKENDS."""
    if backends == "auto":
        return ("native", "tir") if _tvm_available() else ("native",)
    names = options.names("backends", backends)
    bad = [b for b in names if b not in SPARSE_BACKENDS]
    if bad or not names:
        raise ConfigError(f"backends must be 'auto' or a subset of {SPARSE_BACKENDS}, got "
                          f"{backends!r}")
    if "tir" in names and not _tvm_available():
        raise ConfigError("backend 'tir' needs apache-tvm==0.27.0.post1 "
                          "(pip install apache-tvm==0.27.0.post1)")
    return names


def _tvm_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("tvm") is not None


def parse_block(block) -> tuple:
    """(rows, cols) from a tuple or a "4x1" string; errors name the option."""
    if isinstance(block, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", block)
        if not m:
            raise ConfigError(f"block must look like '4x1', got {block!r}")
        block = (int(m.group(1)), int(m.group(2)))
    try:
        rows, cols = block
    except (TypeError, ValueError):
        raise ConfigError(f"block must be (rows, cols), got {block!r}") from None
    for v in (rows, cols):     # no silent int(4.7) == 4, no True == 1
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ConfigError(f"block must be (rows, cols) of ints >= 1, got {block!r}")
    return int(rows), int(cols)


class OptimizedModel:
    """The result of optimize(): callable like the model, running the native kernels."""

    def __init__(self, runtime: nn.Module, pruned_model: nn.Module, plan: Plan,
                 layers: list, example_inputs: tuple, config: OptimizeConfig, notes: list):
        self.runtime = runtime
        self.pruned_model = pruned_model
        self.plan = plan
        self.layers = layers
        self.example_inputs = example_inputs
        self.config = config
        self.notes = notes
        self._native = any(c.backend in SPARSE_BACKENDS for c in plan)
        self._dense = None
        self.mapping = None      # the mapping.Problem when optimize(mapper=...) made the plan

    def __call__(self, *inputs):
        # Torch glue ops run on one thread inside the call: torch's OpenMP workers spin after
        # every op and would take both cores from the kernels' pool (ResNet-18-CIFAR, 2 cores:
        # 2.5 ms this way, 5.5 ms with torch at 2 threads).
        prev = torch.get_num_threads()
        if prev != 1 and self._native:
            torch.set_num_threads(1)
        try:
            with torch.no_grad():
                return self.runtime(*inputs)
        finally:
            if prev != 1 and self._native:
                torch.set_num_threads(prev)

    @property
    def sparsity(self) -> float:
        """Fraction of all prunable-layer weights pruned."""
        total = sum(_numel(l.weight_shape) for l in self.layers)
        pruned = sum(c.sparsity * _numel(self._info(c.layer).weight_shape)
                     for c in self.plan if c.pruned and self._info(c.layer) is not None)
        return pruned / total if total else 0.0

    def _info(self, name: str) -> Optional[LayerInfo]:
        return next((l for l in self.layers if l.name == name), None)

    def compile(self, target: Optional[str] = None):
        """The model compiled by TVM for `target` (default: the plan's): every conv / linear
        runs the backend its plan Choice names, "tir" a kernel generated for that layer,
        "native" the C++ kernels linked into the module; layers the Python runtime runs in
        torch get a generated dense kernel. Returns an engine.codegen.CompiledModel."""
        from .codegen import compile_model
        tgt = get_target(target or self.plan.target)
        # torch does not exist in the module: layers the host runtime runs in torch get the
        # C++ dense kernel (convs; 8-row tiles; depthwise convs the direct depthwise kernel)
        # or a generated dense kernel (linear)
        plan = copy.deepcopy(self.plan)
        moved = [c.layer for c in plan if c.backend == "torch" and not c.pruned]
        for c in plan:
            if c.layer in moved:
                c.backend = "native"
        cm = compile_model(self.pruned_model, self.example_inputs, plan, tgt, backends="plan")
        if moved:
            cm.notes.append(f"{len(moved)} layer(s) the host runtime runs in torch run the C++ "
                            f"dense kernel (conv) or a generated dense kernel (linear) here")
        cm.inputs = [(f"input{i}", shape, dtype) for i, (_, shape, dtype) in enumerate(cm.inputs)]
        cm.outputs = [(f"output{i}", shape, dtype)
                      for i, (_, shape, dtype) in enumerate(cm.outputs)]
        return cm

    def save(self, directory, target: Optional[str] = None, *, signing_key=None,
             overwrite: bool = False):
        """Compile for `target` (default: the plan's) and write an artifact directory
        atomically (model.so, manifest.json with sha256 of every file, plan.json); see
        engine/artifact/ and examples/ for loading it without Python.

        signing_key: an Ed25519 private key (cryptography object, 32 raw bytes, or a PEM /
        64-hex key file) to sign the manifest with (manifest.sig; engine.load(dir,
        trusted_keys=[...]) then verifies it). overwrite: also replace a non-empty directory
        that is not an artifact, or an artifact holding other files (see
        engine.artifact.check_save_destination). The destination and the key are checked
        before compiling."""
        from .artifact import check_save_destination, load_signing_key, save_artifact
        check_save_destination(directory, overwrite)
        key = load_signing_key(signing_key) if signing_key is not None else None
        compiled = self.compile(target)
        return save_artifact(directory, compiled, compiled.target, compiled.inputs,
                             compiled.outputs, plan=self.plan,
                             extra={"kernels": _kernels_summary(compiled),
                                    "notes": self.notes + list(compiled.notes)},
                             overwrite=overwrite, signing_key=key)

    def benchmark(self, dense_model: Optional[nn.Module] = None, min_time: float = 1.0) -> dict:
        """Median latency of this model vs the dense torch model (and the masked reference),
        interleaved in one run: {"optimized": s, "dense": s}."""
        x = self.example_inputs
        dense = dense_model if dense_model is not None else self._dense
        cands = {"optimized": lambda: self(*x)}
        if dense is not None:
            cands["dense"] = lambda: dense(*x)
        return _measure.compare(cands, min_time=min_time)

    def __repr__(self) -> str:
        return (f"OptimizedModel(target={self.plan.target!r}, layers={len(self.plan)}, "
                f"pruned={len(self.plan.pruned)}, sparsity={self.sparsity:.3f})")


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def optimize(model: nn.Module, example_inputs, target: str = "host", scheme: str = "block",
             block=(4, 1), sparsity: float = 0.8, *, importance="l2", exclude=(),
             threads: Optional[int] = None, min_speedup: float = 1.1, measure: bool = True,
             capture: bool = True, plan: Optional[Plan] = None, isa: str = "auto",
             backends="auto", mapper=None, latency_budget: Optional[float] = None,
             min_proxy="reference", data=None, device=None, space=None, costs=None,
             search_time: float = 120.0, seed: int = 0, progress: bool = True,
             finetune=None, **scheme_options) -> OptimizedModel:
    """Prune and lower `model` for `target`; see the module docstring. backends: the sparse
    kernels a pruned layer is measured on ("auto": the C++ kernels and, when tvm is installed,
    a TIR kernel generated for the layer); each layer records the faster one in the plan.

    mapper: None (one scheme / block / sparsity for every layer, as given), or "rule",
    "search" (evolutionary), "rl", or a mapping mapper object: per-layer scheme, block and
    sparsity chosen from measured costs (engine.automap) over the layers not in `exclude`
    (those stay dense and out of the budget) under the budget "global sparsity >=
    `sparsity`" (and latency <= `latency_budget` ms when given), with an accuracy floor
    `min_proxy` ("reference": the proxy of `scheme`/`block` at `sparsity` on every layer; a
    number; None). data: held-out data for the accuracy proxy (engine.accuracy.DataProxy;
    default: kept weight energy). device: a profiler measuring on the target (e.g.
    engine.profile.RPCProfiler; default: this host). space: the candidate space
    (mapping.CandidateSpace or candidate keys; default mapping.default_space()). costs: a
    mapping.CostTable or JSON path (default: the per-target cache). search_time: seconds for
    "search" / "rl". The mapped plan is then applied like plan=...; with measure=True each
    pruned layer is measured again in place and kept only if still faster than dense.

    finetune: recover accuracy once the plan is made: a dict for the built-in trainer
    (engine.train: {"train": batches of (x, y), "val": held-out batches (top-1 logged per
    epoch; with a mapper and no `data`, also the mappers' accuracy proxy), "loss": fn (default
    cross entropy), "teacher": True (distil from the dense model) or a model, and any
    engine.train.TrainConfig field such as "epochs", "lr", "method" ("gradual", "admm",
    "lasso", "soft")}), or a callable (model, plan) -> trained model. The plan's masks
    are then taken from the trained weights (same scheme, block and sparsity per layer, so the
    measured latencies stand)."""
    cfg = OptimizeConfig(target, scheme, block, sparsity, importance, exclude, threads,
                         min_speedup, measure, capture, isa=isa, backends=backends,
                         scheme_options=scheme_options)
    cfg.validate()
    plan = options.plan(plan)
    options.mapping_options(latency_budget, min_proxy, search_time, seed, progress)
    tgt = get_target(cfg.target)
    example_inputs = check_inputs(model, example_inputs)
    if not tgt.is_host:
        # Latencies are measured on this machine as a stand-in for the target's until device
        # measurement (TVM RPC) is wired in; opt(x) runs here, opt.save() compiles for `tgt`.
        notes_target = (f"plan measured on this host ({_host_arch()}) as a proxy for target "
                        f"{tgt.name!r}; opt.save() compiles for {tgt.name!r}")
    else:
        notes_target = ""
    from . import _kernels
    if cfg.threads is not None:
        _kernels.set_num_threads(cfg.threads)
    if cfg.isa != "auto" and not _kernels.isa_available(cfg.isa):
        raise ConfigError(f"isa {cfg.isa!r} is not available on this CPU/build; "
                          f"available: {_kernels.available_isas()}")

    work = copy.deepcopy(model).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    _dry_run(work, example_inputs)
    if cfg.capture:
        _capture(work, example_inputs)
    notes: list = [notes_target] if notes_target else []

    scheme_obj = get_scheme(cfg.scheme, **_scheme_kwargs(cfg))
    mapping_problem = None
    if mapper is not None and data is None and isinstance(finetune, dict) and \
            finetune.get("val") is not None and finetune.get("train") is not None:
        # the same data for the mapper's accuracy proxy: BN recalibrated on a few training
        # batches, scored on the held-out ones
        import itertools
        data = (list(itertools.islice(iter(finetune["train"]), 8)), list(finetune["val"]))
    if mapper is not None:
        if plan is not None:
            raise ConfigError("pass either plan=... or mapper=..., not both")
        if not isinstance(scheme_obj, MaskScheme):
            raise ConfigError(f"mapper=... chooses per-layer mask schemes; scheme "
                              f"{cfg.scheme!r} prunes whole channels (use mapper=None)")
        plan, mapping_problem = _map(work, example_inputs, cfg, scheme_obj, dict(
            mapper=mapper, latency_budget_ms=latency_budget, min_proxy=min_proxy, data=data,
            device=device, space=space, costs=costs, search_time=search_time, seed=seed,
            progress=progress))
        notes.append(_mapping_note(plan))
    if isinstance(scheme_obj, MaskScheme):
        base = work
        layers = list_layers(base, example_inputs)
        _check_exclude(cfg.exclude, layers)
        candidates, choices = _mask_candidates(base, layers, scheme_obj, cfg, plan)
    else:  # group scheme: physically smaller dense model, then per-layer dense backend choice
        base, record = scheme_obj.prune(work, example_inputs, cfg.sparsity, cfg.importance,
                                        cfg.exclude)
        notes.append(f"{cfg.scheme} pruning record: {len(record.get('groups', {}))} groups cut, "
                     f"{len(record.get('skipped', {}))} skipped")
        layers = list_layers(base, example_inputs)
        candidates, choices = {}, {}
        for info in layers:
            w = get_module(base, info.name).weight.detach()
            if info.groups != 1:
                candidates[info.name] = (torch.ones_like(w, dtype=torch.bool), 1)
                choices[info.name] = Choice(info.name, DENSE, None, 0.0, "native", reason=(
                    f"grouped/depthwise conv (groups={info.groups}): not pruned"))
                continue
            candidates[info.name] = (torch.ones_like(w, dtype=torch.bool), 8)
            choices[info.name] = Choice(info.name, cfg.scheme, None, 0.0, "native",
                                        reason=f"layer shrunk by {cfg.scheme} pruning")

    native, notes2 = _decide(base, layers, candidates, choices, cfg)
    notes += notes2
    final_masks = {n: candidates[n][0] for n, c in choices.items() if c.pruned}
    pruned_model = _masked_copy(base, final_masks) if final_masks else copy.deepcopy(base)
    lowered = lower(pruned_model, native, cfg.isa)
    if not lowered.traced:
        notes.append(lowered.note)
    ordered = [choices[l.name] for l in layers]
    out_plan = Plan(tgt.name, ordered, {
        "engine": __version__, "scheme": scheme_obj.describe(), "sparsity": cfg.sparsity,
        "min_speedup": cfg.min_speedup, "threads": _kernels.get_num_threads(),
        "isa": _kernels.best_isa() if cfg.isa == "auto" else cfg.isa})
    opt = OptimizedModel(lowered.module, pruned_model, out_plan, layers, example_inputs, cfg,
                         notes)
    if finetune is not None:
        if isinstance(finetune, dict) and "progress" not in finetune:
            finetune = dict(finetune, progress=progress)     # epoch lines on stderr
        return _finetuned(model, work, example_inputs, out_plan, finetune, notes, cfg,
                          mapping_problem, plan)
    opt._dense = work
    opt.mapping = mapping_problem
    if mapping_problem is not None:
        out_plan.meta["mapping"] = plan.meta
    _verify(opt, example_inputs, cfg.verify_rtol)
    return opt


def _finetuned(model, work, example_inputs, out_plan, spec, notes, cfg, mapping_problem,
               mapped_plan) -> OptimizedModel:
    """optimize(finetune=...): train `work` under the plan's masks, then replay the plan on the
    trained weights (no new measurement: same scheme, block and sparsity per layer)."""
    import torch.nn.functional as F
    from .train import PruneTrainer, TrainConfig, targets_from_plan
    targets = targets_from_plan(out_plan)
    if callable(spec) and not isinstance(spec, dict):
        trained = spec(copy.deepcopy(work), copy.deepcopy(out_plan))
        if not isinstance(trained, nn.Module):
            raise ConfigError(f"finetune callable must return the trained nn.Module, got "
                              f"{type(trained).__name__}")
        how = "the user's training callable"
    elif isinstance(spec, dict):
        spec = dict(spec)
        if "train" not in spec:
            raise ConfigError("finetune dict needs 'train': batches of (x, y)")
        batches, loss = spec.pop("train"), spec.pop("loss", F.cross_entropy)
        val_batches = spec.pop("val", None)
        val = None
        if val_batches is not None:
            from .accuracy import accuracy
            val_batches = list(val_batches)

            def val(m):
                return accuracy(m, val_batches)
        teacher = spec.pop("teacher", None)
        teacher = work if teacher is True else (teacher or None)
        try:
            tcfg = TrainConfig(**spec)
        except TypeError as e:
            raise ConfigError(f"finetune: {e} (see engine.train.TrainConfig)") from None
        trainer = PruneTrainer(work, targets, tcfg, teacher=teacher)
        trained = trainer.fit(batches, loss, val=val)
        how = (f"engine.train ({tcfg.epochs} epochs, {tcfg.kind} "
               f"pruning{', distilled' if teacher is not None else ''}"
               + (f", held-out top-1 {trainer.history[-1]['val']:.4f}" if val else "") + ")")
    else:
        raise ConfigError(f"finetune must be a dict for engine.train or a callable (model, plan)"
                          f" -> model, got {type(spec).__name__}")
    for p in trained.parameters():
        p.requires_grad_(False)
    opt = optimize(trained.eval(), example_inputs, target=cfg.target, sparsity=cfg.sparsity,
                   threads=cfg.threads, min_speedup=cfg.min_speedup, measure=False,
                   capture=False, plan=out_plan, isa=cfg.isa, backends=cfg.backends,
                   exclude=cfg.exclude)
    for c in opt.plan:       # the latencies measured before training stand (same structure)
        if c.layer in out_plan:
            old = out_plan[c.layer]
            c.latency_us, c.dense_latency_us, c.reason = (old.latency_us, old.dense_latency_us,
                                                          old.reason)
    opt.plan.meta = dict(out_plan.meta)
    opt.notes = notes + [f"fine-tuned with {how}; masks re-derived from the trained weights"]
    opt._dense = copy.deepcopy(model).eval()
    opt.mapping = mapping_problem
    if mapping_problem is not None:
        opt.plan.meta["mapping"] = mapped_plan.meta
    return opt


def _map(work: nn.Module, example_inputs: tuple, cfg: OptimizeConfig, scheme_obj, kw: dict):
    """(the mapper's Plan, its mapping.Problem); see engine.automap."""
    from mapping import Candidate
    from .automap import MapSettings, map_model
    ref_kw = {"block": tuple(cfg.block)} if scheme_obj.name == "block" else {}
    options = tuple(sorted(cfg.scheme_options.items())) if scheme_obj.name == "nm" else ()
    try:
        ref = Candidate(scheme_obj.name, ref_kw.get("block"), cfg.sparsity or 0.5, "native",
                        options)
    except ValueError as e:
        raise ConfigError(f"mapper reference ({cfg.scheme}, block {cfg.block}): {e}") from None
    backends = tuple(b for b in cfg.backends if b == "native") or ("native",)
    settings = MapSettings(reference=ref, sparsity=cfg.sparsity if cfg.sparsity > 0 else None,
                           target=cfg.target,
                           min_speedup=cfg.min_speedup, threads=cfg.threads, isa=cfg.isa,
                           backends=backends, exclude=tuple(cfg.exclude), **kw)
    return map_model(work, example_inputs, settings)


def _mapping_note(plan: Plan) -> str:
    m, pred = plan.meta, plan.meta.get("predicted", {})
    info = m.get("mapping", {})
    txt = (f"mapper {m.get('mapper')}: {len(plan.pruned)} layers pruned, predicted "
           f"{(pred.get('latency_us') or 0) / 1e3:.2f} ms of layer time vs dense "
           f"{(m.get('dense', {}).get('latency_us') or 0) / 1e3:.2f} ms, global sparsity "
           f"{pred.get('sparsity', 0):.3f}, proxy {pred.get('proxy') or 0:.3f} (floor "
           f"{m.get('budget', {}).get('min_proxy')}), "
           f"{'feasible' if m.get('feasible') else 'NOT feasible: ' + '; '.join(m.get('violations', []))}"
           f"; costs {info.get('cost_table')} ({info.get('measurements_taken')} new measurements)")
    return txt


def _decide(base: nn.Module, layers: list, candidates: dict, choices: dict,
            cfg: OptimizeConfig):
    """Measure and choose every layer's execution; returns (native layer -> rows, notes).

    Per layer, on this machine, at its real input shape, interleaved: the sparse kernels of
    pruning candidates (native, and a generated TIR kernel when cfg.backends has "tir"), dense
    torch, and the dense native kernel on the unpruned weight. Torch is timed on one thread,
    as it runs inside the optimized model (OptimizedModel.__call__). A layer is pruned only if
    its faster sparse kernel beats the best dense by `min_speedup`; a layer kept dense runs on
    whichever dense backend measured faster. Values of the returned dict: group rows (native)
    or ("tir", rows).
    """
    notes: list = []
    probe = lower(_masked_copy(base, {n: m for n, (m, _) in candidates.items()}),
                  {n: r for n, (_, r) in candidates.items()}, cfg.isa)
    if not probe.traced:
        notes.append(probe.note)
    sparse_mods = native_modules(probe.module)
    native: dict = {}
    if not cfg.measure:
        # no timing: candidates run the sparse backend a given plan names (native by default,
        # "tir" when the plan says so and tir is allowed), the rest in torch
        for name, (_, rows) in candidates.items():
            mod, ch = sparse_mods.get(name), choices[name]
            if mod is None or not hasattr(mod, "kernel_name"):
                _keep_torch(ch, "no native kernel for this layer")
                continue
            ch.reason += "; not measured (measure=False)"
            if ch.backend == "tir" and "tir" in cfg.backends and _groups_of(layers, name) == 1:
                from .codegen.host import tir_module
                ch.kernel, native[name] = tir_module(mod).kernel_name, ("tir", rows)
            else:
                ch.backend, ch.kernel, native[name] = "native", mod.kernel_name, rows
        return native, notes
    # the "native dense" candidate: 8-row SpMM tiles; grouped convs 1 row, which lower() runs
    # on the direct depthwise kernel for depthwise convs and on the block-diagonal pack for others
    dense_rows = {l.name: (1 if l.groups != 1 else 8) for l in layers}
    dense_mods = native_modules(lower(base, dense_rows, cfg.isa).module)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _measure_layers(layers, choices, candidates, probe, sparse_mods, dense_mods,
                        dense_rows, native, notes, cfg)
    finally:
        torch.set_num_threads(prev_threads)
    return native, notes


def _measure_layers(layers, choices, candidates, probe, sparse_mods, dense_mods, dense_rows,
                    native, notes, cfg) -> None:
    for info in layers:
        name, ch = info.name, choices[info.name]
        dmod = dense_mods.get(name)
        if dmod is None or not hasattr(dmod, "kernel_name"):
            _keep_torch(ch, "no native kernel for this layer (lowering kept it in torch)")
            continue
        fused = probe.fused.get(name, {})
        cands = {"torch": dmod.dense_equivalent(), "native dense": dmod}
        smod = sparse_mods.get(name) if ch.pruned else None
        sparse = {}
        if smod is not None:
            if "native" in cfg.backends:
                sparse["native"] = smod
            if "tir" in cfg.backends and info.groups == 1:
                tmod, why = _tir_twin(smod, fused, info)
                if tmod is not None:
                    sparse["tir"] = tmod
                else:
                    notes.append(f"{name}: generated TIR kernel not used: {why}")
            if not sparse:
                sparse["native"] = smod
            cands.update(sparse)
        t = _time_layer(cands, fused, info)
        best = min(("torch", "native dense"), key=t.get)
        ch.dense_latency_us = t[best] * 1e6
        dense_txt = f"torch {t['torch'] * 1e6:.0f} us, native dense {t['native dense'] * 1e6:.0f} us"
        if sparse:
            fastest = min(sparse, key=t.get)
            speedup = t[best] / t[fastest]
            sparse_txt = ", ".join(f"{b} {t[b] * 1e6:.0f} us" for b in sparse)
            if speedup >= cfg.min_speedup:
                ch.latency_us, ch.backend = t[fastest] * 1e6, fastest
                ch.kernel = sparse[fastest].kernel_name
                ch.reason += (f"; {fastest} measured {speedup:.2f}x faster than the best dense "
                              f"({sparse_txt}; {dense_txt})")
                rows = candidates[name][1]
                native[name] = rows if fastest == "native" else ("tir", rows)
                continue
            ch.reason = (f"kept dense: {ch.scheme} {_blk(ch.block)} measured {speedup:.2f}x vs "
                         f"the best dense (needs >= {cfg.min_speedup:.2f}x; {sparse_txt})"
                         ).replace("  ", " ")
            ch.scheme, ch.block, ch.sparsity = DENSE, None, 0.0
        elif not ch.reason:
            ch.reason = "not pruned"
        ch.latency_us = ch.dense_latency_us
        if best == "native dense":
            ch.backend, ch.kernel = "native", dmod.kernel_name
            native[name] = dense_rows[name]
            ch.reason += f"; runs on the native dense kernel ({dense_txt})"
        else:
            ch.backend, ch.kernel = "torch", ""
            ch.reason += f"; runs in torch ({dense_txt})"


def _tir_twin(smod: nn.Module, fused: dict, info: LayerInfo):
    """(the generated-TIR twin of a lowered sparse layer, checked against it, None) or
    (None, why not)."""
    try:
        from .codegen.host import tir_module
        tmod = tir_module(smod)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(info.in_shape, generator=g)
        args = (x, torch.randn(info.out_shape, generator=g)) if fused.get("residual") else (x,)
        with torch.no_grad():
            ref, got = smod(*args), tmod(*args)
    except Exception as e:  # noqa: BLE001  (the layer keeps its native kernel; reason recorded)
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    err = (ref - got).abs().max().item()
    scale = ref.abs().max().item() + 1e-12
    if not err <= 1e-4 * scale:
        return None, f"differs from the native kernel (max abs err {err:.3g}, scale {scale:.3g})"
    return tmod, ""


def _kernels_summary(compiled) -> dict:
    kinds: dict = {}
    for lk in getattr(compiled, "layers", []):
        kinds[lk.kind] = kinds.get(lk.kind, 0) + 1
    return {"layers_by_kind": kinds,
            "native": "engine C++ kernels linked into model.so via the spe.v1 bridge"
            if any(lk.kind == "native" for lk in getattr(compiled, "layers", [])) else "unused",
            "tir": "kernels generated per layer by engine.codegen (TVM TIR)"}


def _keep_torch(ch: Choice, why: str) -> None:
    ch.scheme, ch.block, ch.sparsity, ch.backend, ch.kernel = DENSE, None, 0.0, "torch", ""
    ch.reason = why


def _host_arch() -> str:
    import platform
    return platform.machine()


def _blk(block) -> str:
    return "x".join(map(str, block)) if block else ""


def _scheme_kwargs(cfg: OptimizeConfig) -> dict:
    kw = dict(cfg.scheme_options)
    if cfg.scheme == "block":
        kw.setdefault("block", cfg.block)
    return kw




def _dry_run(model: nn.Module, example_inputs: tuple) -> None:
    """The model must run on its example inputs in eager mode; otherwise the inputs (or the
    model) are wrong, which no capture or pruning step should be left to report."""
    try:
        with torch.no_grad():
            model(*example_inputs)
    except Exception as e:  # noqa: BLE001  (re-raised naming the inputs and the model's error)
        shapes = ", ".join(str(tuple(t.shape)) for t in example_inputs)
        first = (str(e).strip().splitlines() or [""])[0]
        raise ConfigError(f"the model fails on example_inputs of shape {shapes}{_culprit(e)}: "
                          f"{type(e).__name__}: {first}") from e


def _capture(model: nn.Module, example_inputs: tuple) -> None:
    """torch.export must capture the model (the compile path needs it); name the culprit."""
    try:
        torch.export.export(model, example_inputs, strict=False)
    except Exception as e:  # noqa: BLE001  (re-raised with the op / source line named)
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        first = lines[0] if lines else type(e).__name__
        raise CaptureError(f"torch.export could not capture the model{_culprit(e)}: "
                           f"{type(e).__name__}: {first}") from e


def _culprit(e: BaseException) -> str:
    """' (at file:line in fn: `code`; op aten.x)' from the message or traceback, or ''."""
    import traceback
    text = str(e)
    where = ""
    for m in re.finditer(r'File "([^"]+)", line (\d+), in (\w+)', text):
        if "site-packages" not in m.group(1):
            where = f"{m.group(1)}:{m.group(2)} in {m.group(3)}"
            break
    if not where:
        pkg = os.path.dirname(os.path.abspath(__file__))
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if "site-packages" not in f.filename and not f.filename.startswith(pkg)]
        if frames:
            f = frames[-1]
            where = f"{f.filename}:{f.lineno} in {f.name}" + (f": `{f.line}`" if f.line else "")
    ops = re.findall(r"torch\.ops\.(aten\.\w+)", text)
    parts = ([where] if where else []) + ([f"op {ops[-1]}"] if ops else [])
    return f" (at {'; '.join(parts)})" if parts else ""


def _check_exclude(exclude: tuple, layers: list) -> None:
    names = {l.name for l in layers}
    for e in exclude:
        if e not in names and not any(n.startswith(e + ".") for n in names):
            raise ConfigError(f"exclude names {e!r}, which is not a conv/linear layer of the "
                              f"model (layers: {sorted(names)[:8]}...)")


def _excluded(name: str, exclude: tuple) -> bool:
    return any(name == e or name.startswith(e + ".") for e in exclude)


def _mask_candidates(model, layers, scheme: MaskScheme, cfg: OptimizeConfig,
                     plan: Optional[Plan]):
    """Per layer: (mask, group rows) for layers the scheme can prune, and a Choice for all."""
    candidates, choices = {}, {}
    fits = 0
    for info in layers:
        sch, sparsity, given_reason = scheme, cfg.sparsity, ""
        if plan is not None and info.name in plan:
            given = plan[info.name]
            if not given.pruned:
                choices[info.name] = ch = Choice(info.name, DENSE, reason=f"plan: {given.reason}")
                if given.backend in SPARSE_BACKENDS and not _excluded(info.name, cfg.exclude):
                    # kept dense on the dense native kernel the plan measured fastest (replayed
                    # when measure=False; measured again otherwise)
                    w = get_module(model, info.name).weight.detach()
                    candidates[info.name] = (torch.ones_like(w, dtype=torch.bool),
                                             1 if info.groups != 1 else 8)
                    ch.backend = "native"
                continue
            kw = dict(given.options)
            if given.scheme == "block":
                kw["block"] = given.block
            sch, sparsity = get_scheme(given.scheme, **kw), given.sparsity
            given_reason = given.reason.split("; ")[0]
        backend = "native"
        if plan is not None and info.name in plan and plan[info.name].backend in SPARSE_BACKENDS:
            backend = plan[info.name].backend   # replayed when measure=False
        ch = Choice(info.name, sch.name, sch.block if sch.name == "block" else None, sparsity,
                    backend)
        choices[info.name] = ch
        reason = None
        if _excluded(info.name, cfg.exclude):
            reason = "excluded by the user"
        elif info.groups != 1:
            # not pruned; a candidate for the native dense kernel (depthwise: the direct
            # depthwise kernel; other grouped convs: the block-diagonal SpMM pack)
            w = get_module(model, info.name).weight.detach()
            candidates[info.name] = (torch.ones_like(w, dtype=torch.bool), 1)
            ch.scheme, ch.block, ch.sparsity = DENSE, None, 0.0
            ch.reason = f"grouped/depthwise conv (groups={info.groups}): not pruned"
            continue
        else:
            reason = sch.check(info)
        if reason is None and sparsity == 0.0:
            reason = "sparsity 0"
        if reason is not None:
            ch.scheme, ch.block, ch.sparsity, ch.backend, ch.reason = DENSE, None, 0.0, "torch", reason
            continue
        fits += 1
        w = get_module(model, info.name).weight.detach()
        mask = sch.mask(w, None if sch.name == "nm" else sparsity, cfg.importance)
        ch.sparsity = 1.0 - mask.float().mean().item()
        rows = sch.block[0] if sch.name == "block" else 1
        candidates[info.name] = (mask, group_rows_for(rows) if rows <= 8 else rows)
        ch.reason = f"{sch.name} {_blk(ch.block)} at {ch.sparsity:.0%}".replace("  ", " ")
        if given_reason:
            ch.reason = f"plan: {given_reason}"
    if fits == 0 and layers and cfg.sparsity > 0 and plan is None:
        why = "; ".join(sorted({c.reason for c in choices.values()})[:3])
        raise ConfigError(f"scheme {cfg.scheme!r} with block {_blk(cfg.block)} fits no layer "
                          f"of the model ({why})")
    return candidates, choices


def _masked_copy(model: nn.Module, masks: dict) -> nn.Module:
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, mask in masks.items():
            mod = get_module(out, name)
            mod.weight.copy_(apply_mask(mod.weight, mask))
    return out


def _groups_of(layers, name) -> int:
    return next((l.groups for l in layers if l.name == name), 1)


def _info_of(layers, name) -> LayerInfo:
    return next(l for l in layers if l.name == name)


def _time_layer(cands: dict, fused: dict, info: LayerInfo) -> dict:
    """name -> seconds for lowered layer modules at the layer's real input shape."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(info.in_shape, generator=g)
    if fused.get("residual"):
        r = torch.randn(info.out_shape, generator=g)
        fns = {k: (lambda m=m: m(x, r)) for k, m in cands.items()}
    else:
        fns = {k: (lambda m=m: m(x)) for k, m in cands.items()}
    return _measure.compare(fns, min_time=0.02, min_runs=6, block=3)


def _verify(opt: OptimizedModel, example_inputs: tuple, rtol: float) -> None:
    with torch.no_grad():
        ref = opt.pruned_model(*example_inputs)
        got = opt(*example_inputs)
    refs, gots = _flat(ref), _flat(got)
    if len(refs) != len(gots):
        raise MismatchError(f"optimized model returns {len(gots)} outputs, reference {len(refs)}")
    for i, (r, g) in enumerate(zip(refs, gots)):
        if r.shape != g.shape:
            raise MismatchError(f"output {i}: shape {tuple(g.shape)} != reference {tuple(r.shape)}")
        scale = r.abs().max().item() + 1e-12
        err = (r - g).abs().max().item()
        if not err <= rtol * scale:
            raise MismatchError(f"output {i}: max |optimized - masked reference| = {err:.3g} "
                                f"exceeds {rtol:g} x max|reference| ({scale:.3g})")


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flat(out[k])]
    return []
