"""The Relax pipeline after the layer rewrite: a named list of passes (one registry, no repeats).

It is TVM's CPU default pipeline (relax.backend.cpu_generic) with one pass added: the glue
schedules (schedules.py) between fusion and lowering, where the default schedules nothing.
The generated layer kernels are marked scheduled + opaque, so fusion and scheduling skip them.
"""
from __future__ import annotations

from ._tvm import cpu_pipeline as _cpu, relax, tvm
from .schedules import apply_glue_schedules


def _named_passes(target) -> list:
    cpu = _cpu
    steps = [
        ("library_dispatch", cpu.library_dispatch_passes(target)),
        ("decompose_for_inference", [relax.transform.DecomposeOpsForInference()]),
        ("legalize_and_fuse", cpu.legalize_passes(target)),
        ("dead_code", [relax.transform.DeadCodeElimination()]),
        ("glue_schedules", [apply_glue_schedules()]),
        ("dataflow_lower", cpu.dataflow_lower_passes(target)),
        ("finalize", cpu.finalize_passes(target)),
    ]
    names = [n for n, _ in steps]
    if len(set(names)) != len(names):  # pragma: no cover - a programming error
        raise RuntimeError(f"pipeline step names repeat: {names}")
    return steps


def step_names(target) -> list:
    return [n for n, _ in _named_passes(target)]


def relax_pipeline(target):
    """The module pass tvm.compile runs (relax_pipeline=...)."""

    @tvm.transform.module_pass(opt_level=0, name="engine_codegen_pipeline")
    def _pipeline(mod, _ctx):
        with target:
            for _, passes in _named_passes(target):
                mod = tvm.transform.Sequential(passes)(mod)
        return mod

    return _pipeline


def run_until(mod, target, last_step: str):
    """Apply the pipeline's steps up to and including `last_step` (tests, debugging)."""
    names = step_names(target)
    if last_step not in names:
        raise ValueError(f"unknown step {last_step!r}; steps: {names}")
    with target:
        for name, passes in _named_passes(target):
            mod = tvm.transform.Sequential(passes)(mod)
            if name == last_step:
                break
    return mod
