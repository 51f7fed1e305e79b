"""The result of optimize(): callable like the model (host runtime), with the plan, the masked
reference, and compile / save for the artifact an app embeds."""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from mapping import Plan

from ..graph.inputs import bind_call, call
from ..graph.layers import LayerInfo, conv1d_as_conv2d
from ..graph.outputs import flatten_outputs
from ..runtime import measure as _measure
from ..targets import get_target
from .config import SPARSE_BACKENDS, OptimizeConfig


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
        self._compiled: dict = {}   # target name -> CompiledModel (the guard's, reused by save)
        self.reference = None       # int8: the fake-quantized model the result was verified on

    def __call__(self, *inputs, **kwargs):
        """The model's output for these inputs (the same structure the model returns): the
        inputs it was optimized with, by position or forward()'s names; a tensor input must
        keep its example's dtype, settings given in example_kwargs are kept (InputError)."""
        inputs = bind_call(self.pruned_model, self.example_inputs, inputs, kwargs)
        # Torch glue ops run on one thread inside the call: torch's OpenMP workers spin after
        # every op and would take both cores from the kernels' pool (ResNet-18-CIFAR, 2 cores:
        # 2.5 ms this way, 5.5 ms with torch at 2 threads).
        prev = torch.get_num_threads()
        if prev != 1 and self._native:
            torch.set_num_threads(1)
        try:
            with torch.no_grad():
                return call(self.runtime, inputs, rebuild=False)
        finally:
            if prev != 1 and self._native:
                torch.set_num_threads(prev)

    @property
    def sparsity(self) -> float:
        """Fraction of all the model's weight-layer parameters pruned: the layers in the plan
        and its other weight layers (plan.other_layers: embeddings, recurrent layers, ...,
        left dense), each shared weight once; biases and norm scales are not counted."""
        total = sum(_numel(l.weight_shape) for l in self.layers)
        total += sum(int(o.get("params", 0)) for o in self.plan.other_layers)
        pruned = sum(c.sparsity * _numel(self._info(c.layer).weight_shape)
                     for c in self.plan if c.pruned and self._info(c.layer) is not None)
        return pruned / total if total else 0.0

    def weight_layers(self) -> list:
        """Every weight layer of the user's model once, under the user's name, in plan order
        then plan.other_layers: {"layer", "kind", "pruned", "sparsity", "params", "reason",
        "runs_as"}; a ConvTranspose2d run as phase convs is one row (its sparsity over all of
        them, runs_as naming them, the reason theirs), a layer left dense has its reason."""
        user = {s: n for n, d in self.plan.meta.get("decomposed", {}).items()
                for s in d["layers"]}
        rows: dict = {}
        for c in self.plan:
            name, info = user.get(c.layer, c.layer), self._info(c.layer)
            n = _numel(info.weight_shape) if info is not None else 0
            r = rows.setdefault(name, {"layer": name, "kind": "ConvTranspose2d" if name in
                                       self.plan.meta.get("decomposed", {}) else
                                       (info.kind if info is not None else "?"),
                                       "pruned": False, "sparsity": 0.0, "params": 0,
                                       "reason": "", "runs_as": []})
            r["sparsity"] = (r["sparsity"] * r["params"] + (c.sparsity if c.pruned else 0.0)
                             * n) / max(r["params"] + n, 1)
            r["params"] += n
            r["pruned"] = r["pruned"] or c.pruned
            r["runs_as"].append(c.layer)
            r["reason"] = "; ".join(filter(None, [r["reason"], (
                f"{c.layer}: {c.reason}" if name != c.layer else c.reason)]))
        out = list(rows.values())
        out += [{"layer": o["layer"], "kind": o.get("kind", ""), "pruned": False,
                 "sparsity": 0.0, "params": int(o.get("params", 0)), "reason": o["reason"],
                 "runs_as": []} for o in self.plan.other_layers]
        return out

    def _info(self, name: str) -> Optional[LayerInfo]:
        return next((l for l in self.layers if l.name == name), None)

    def compile(self, target: Optional[str] = None):
        """The model compiled by TVM for `target` (default: the plan's): every conv / linear
        runs the backend its plan Choice names, "tir" a kernel generated for that layer,
        "native" the C++ kernels linked into the module; layers the Python runtime runs in
        torch get a generated dense kernel. Returns an engine.codegen.CompiledModel."""
        from ..codegen import compile_model
        tgt = get_target(target or self.plan.target)
        if tgt.name in self._compiled:
            return self._compiled[tgt.name]
        if self.int8:
            return self._compile_int8(tgt)
        # torch does not exist in the module: layers the host runtime runs in torch get the
        # C++ dense kernel (convs; 8-row tiles; depthwise convs the direct depthwise kernel)
        # or a generated dense kernel (linear)
        plan = copy.deepcopy(self.plan)
        moved = [c.layer for c in plan if c.backend == "torch" and not c.pruned]
        for c in plan:
            if c.layer in moved:
                c.backend = "native"
        # nn.Conv1d exported as the (1, K) Conv2d the plan describes (the graph's conv2d)
        cm = compile_model(conv1d_as_conv2d(self.pruned_model), self.example_inputs, plan, tgt,
                           backends="plan")
        if moved:
            cm.notes.append(f"{len(moved)} layer(s) the host runtime runs in torch run the C++ "
                            f"dense kernel (conv) or a generated dense kernel (linear) here")
        self._name_outputs(cm)
        self._compiled[tgt.name] = cm
        return cm

    @property
    def int8(self) -> bool:
        """Whether layers run on the int8 kernels (plan choices with bits=8)."""
        return any(c.bits == 8 for c in self.plan)

    def _compile_int8(self, tgt):
        """The int8-lowered runtime compiled as it is (engine.quant.compile_int8)."""
        from ..quant import compile_int8
        cm = compile_int8(self.runtime, self.example_inputs, tgt)
        self._name_outputs(cm)
        self._compiled[tgt.name] = cm
        return cm

    def _name_outputs(self, cm) -> None:
        """cm.outputs named after the model's output structure (engine.graph.outputs), which
        cm.structure records for the manifest; a flat output{i} list (structure None, a note)
        where the compiled module's outputs do not line up with the model's tensors."""
        with torch.no_grad():
            leaves, tree = flatten_outputs(call(self.pruned_model, self.example_inputs))
        ok = len(leaves) == len(cm.outputs) and all(
            tuple(t.shape) == tuple(shape) and _dtype(t) == dtype
            for (_, t), (_, shape, dtype) in zip(leaves, cm.outputs))
        if ok:
            cm.outputs = [(n, shape, dtype) for (n, _), (_, shape, dtype) in zip(leaves, cm.outputs)]
            cm.structure = tree
        else:
            cm.outputs = [(f"output{i}", shape, dtype)
                          for i, (_, shape, dtype) in enumerate(cm.outputs)]
            cm.structure = None
            cm.notes.append(f"the compiled module's {len(cm.outputs)} output(s) do not line up "
                            f"with the model's {len(leaves)} output tensor(s): the artifact "
                            f"returns them as a flat tuple")

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
        from ..artifact import check_save_destination, load_signing_key, save_artifact
        check_save_destination(directory, overwrite)
        key = load_signing_key(signing_key) if signing_key is not None else None
        compiled = self.compile(target)
        extra = {"kernels": _kernels_summary(compiled), "notes": self.notes + list(compiled.notes)}
        if self.int8:
            from ..quant import int8_manifest
            extra["int8"] = int8_manifest(self.runtime)
        return save_artifact(directory, compiled, compiled.target, compiled.inputs,
                             compiled.outputs, plan=self.plan, extra=extra,
                             structure=compiled.structure,
                             overwrite=overwrite, signing_key=key)

    def benchmark(self, dense_model: Optional[nn.Module] = None, min_time: float = 1.0) -> dict:
        """Median latency of this model vs the dense torch model (and the masked reference),
        interleaved in one run: {"optimized": s, "dense": s}."""
        x = self.example_inputs
        dense = dense_model if dense_model is not None else self._dense
        cands = {"optimized": lambda: call(self, x)}
        if dense is not None:
            cands["dense"] = lambda: call(dense, x)
        return _measure.compare(cands, min_time=min_time)

    def __repr__(self) -> str:
        return (f"OptimizedModel(target={self.plan.target!r}, layers={len(self.plan)}, "
                f"pruned={len(self.plan.pruned)}, other weight layers="
                f"{len(self.plan.other_layers)}, sparsity={self.sparsity:.3f})")


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _kernels_summary(compiled) -> dict:
    kinds: dict = {}
    for lk in getattr(compiled, "layers", []):
        kinds[lk.kind] = kinds.get(lk.kind, 0) + 1
    return {"layers_by_kind": kinds,
            "native": "engine C++ kernels linked into model.so via the spe.v1 bridge"
            if any(lk.kind == "native" for lk in getattr(compiled, "layers", [])) else "unused",
            "tir": "kernels generated per layer by engine.codegen (TVM TIR)"}
