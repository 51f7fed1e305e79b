"""engine.codegen: the compiler path (the only part of the engine that imports tvm).

    from engine.codegen import compile_model
    cm = compile_model(opt.pruned_model, (x,), opt.plan, target="host")   # or "arm64", ...
    y, = cm.run(x)                     # host targets: numpy outputs
    cm.export_library("model.so")      # cross compiler for arm64 / Android

Each pruned conv / linear becomes a TIR kernel generated from its sparsity structure
(spmm_tir.py); dense convs use the same generator; glue gets CPU schedules (schedules.py).
"""
from .compile import CompiledModel, LayerKernel, compile_model

__all__ = ["CompiledModel", "LayerKernel", "compile_model"]
