"""engine.optimize: prune a model where, and only where, it is measurably faster on the target.

    opt = engine.optimize(model, example_inputs=(x,), target="host",
                          scheme="block", block=(4, 1), sparsity=0.8)
    y = opt(x)              # native kernels

    opt = engine.optimize(bert, (input_ids,), example_kwargs={"attention_mask": mask})
    out = opt(input_ids, attention_mask=mask)   # the model's own output type (ModelOutput)
    opt.pruned_model        # masked dense torch copy: the numerical reference
    opt.plan                # per-layer choices with reasons (mapping.Plan, JSON round-trip)

    opt = engine.optimize(model, (x,), block=(4, 4), bits=8, calibration=batches)
    opt = engine.optimize(model, (x,), mapper="rule", bits="auto", data=(xs, ys))

bits: 32 (fp32 kernels), 8 (every conv the int8 kernels run, pruned or not, runs int8; the
classifier and layers without an int8 kernel stay fp32, each with its reason) or "auto" (with
a mapper: fp32 or int8 per layer, whichever the measurements and the accuracy proxy favour,
the domain changes between layers counted). int8 layers are calibrated after pruning on
`calibration` (input batches: tensors or tuples of the forward's inputs; default: the
calibration part of `data`, else the first batches of finetune["train"]) and verified
against their fake-quantized simulation (engine.quant.simulate); opt.save() compiles them into
the artifact and the manifest records their quantization parameters
(engine/pipeline/int8.py).

A thin facade: the keyword arguments become one engine.pipeline.OptimizeConfig and the
pipeline's named stages do the work (engine/pipeline/run.py lists them). The user's model is
never modified.
"""
from __future__ import annotations

from typing import Optional

from torch import nn

from mapping import Plan

from .options import mapping_options
from .pipeline import MapConfig, OptimizeConfig, OptimizedModel, parse_backends, parse_block
from .pipeline import run

__all__ = ["OptimizeConfig", "OptimizedModel", "optimize", "parse_backends", "parse_block"]


def optimize(model: nn.Module, example_inputs=(), target: str = "host", scheme: str = "block",
             block=(4, 1), sparsity: float = 0.8, *, importance="l2", exclude=(),
             threads: Optional[int] = None, min_speedup: float = 1.1, measure: bool = True,
             capture: bool = True, plan: Optional[Plan] = None, isa: str = "auto",
             backends="auto", mapper=None, latency_budget: Optional[float] = None,
             min_proxy="reference", data=None, device=None, space=None, costs=None,
             search_time: float = 120.0, seed: int = 0, progress: bool = True,
             finetune=None, allow_infeasible: bool = False, guard: str = "keep",
             example_kwargs: Optional[dict] = None, bits=32, calibration=None, **scheme_options
             ) -> OptimizedModel:
    """Prune and lower `model` for `target`; see the module docstring.

    example_inputs / example_kwargs: positional / keyword inputs (int64 ids, bool masks, fp16;
    settings {"use_cache": False}): engine/graph/inputs.py, outputs.py say how opt(...) maps.

    backends: the sparse
    kernels a pruned layer is measured on ("auto": the C++ kernels and, when tvm is installed,
    a TIR kernel generated for the layer); each layer records the faster one in the plan.

    mapper: None (one scheme / block / sparsity for every layer, as given), or "rule",
    "search" (evolutionary), "rl", "gnn" (RL on a graph embedding), or a mapping mapper
    object: per-layer scheme, block and sparsity chosen from measured costs
    (engine.pipeline.automap) over the layers not in `exclude` (those stay dense and out of
    the budget) under the budget "global sparsity >= `sparsity`" (and latency <=
    `latency_budget` ms when given), with an accuracy floor
    `min_proxy` ("reference": the proxy of `scheme`/`block` at `sparsity` on every layer; a
    number; None). data: held-out data for the accuracy proxy (engine.accuracy.DataProxy;
    default: kept weight energy). device: where candidates are timed: None (this host, as
    opt(x) runs them), "artifact" (this host, compiled as opt.save() ships them), "rpc://..."
    (a device over TVM RPC) or a profiler object (e.g. engine.measure.RPCProfiler); the
    in-place check of the plan uses the same one. space: the candidate space
    (mapping.CandidateSpace or candidate keys; default mapping.default_space()). costs: a
    mapping.CostTable or JSON path (default: the per-target cache). search_time: seconds for
    "search" / "rl" / "gnn". The mapped plan is then applied like plan=...; with measure=True
    each pruned layer is measured again in place and kept only if still faster than dense.
    A budget the measured costs cannot meet raises engine.errors.InfeasibleError saying what
    is reachable (allow_infeasible=True returns the best plan, with a note instead); a mapped
    plan that ranks below the best feasible uniform plan on the same costs is replaced by it.

    finetune: recover accuracy once the plan is made: a dict for the built-in trainer
    (engine.train: {"train": batches of (x, y), "val": held-out batches (top-1 logged per
    epoch; with a mapper and no `data`, also the mappers' accuracy proxy), "loss": fn (default
    cross entropy), "teacher": True (distil from the dense model) or a model, and any
    engine.train.TrainConfig field such as "epochs", "lr", "method" ("gradual", "admm",
    "lasso", "soft")}), or a callable (model, plan) -> trained model. The plan's masks
    are then taken from the trained weights (same scheme, block and sparsity per layer, so the
    measured latencies stand). guard: the whole-model check (engine.pipeline.guard): with measure=True the result is
    timed end to end against the dense model; if it is not faster, "keep" (default) returns
    the dense configuration with the measurement as every layer's reason, "warn" keeps the
    optimized model with a warning, "off" skips the check (figures: opt.plan.meta["guard"]);
    bits, calibration: int8 (see the module docstring)."""
    mapping_options(latency_budget, min_proxy, search_time, seed, progress)
    cfg = OptimizeConfig(target, scheme, block, sparsity, importance, exclude, threads,
                         min_speedup, measure, capture, isa=isa, backends=backends,
                         scheme_options=scheme_options, plan=plan, finetune=finetune,
                         progress=progress, guard=guard, bits=bits, calibration=calibration)
    if mapper is not None:
        cfg.map = MapConfig(mapper, latency_budget, min_proxy, data, device, space, costs,
                            search_time, seed, allow_infeasible)
    return run(model, example_inputs, cfg, example_kwargs=example_kwargs)
