"""engine.codegen: the compiler path (the only part of the engine that imports tvm).

    cm = engine.codegen.compile_model(opt.pruned_model, (x,), opt.plan, target="host")
    # target: "host", "arm64", ...
    y, = cm.run(x)                     # host targets: numpy outputs (relax VM on tvm.cpu())
    cm.export_library("model.so")      # the target's (cross) compiler; ConfigError if missing
    cm.inputs, cm.outputs              # [(name, shape, dtype)]
    print(cm.summary())                # per layer: kind, density, kernel, what was fused
    compile_model(..., backends="plan")  # per layer as the plan says: "tir" generated,
                                         # "native" the C++ kernels via the spe.v1 bridge

Which backend runs a layer is measured by engine.measure (one service for the pipeline, the
mappers and the benchmarks), never here.

Layout: geometry.py (phase planes), rowgroups.py (weight layout), spmm_tir.py (the kernel
generator, TVMScript text), rewrite.py (Relax: conv / linear chains -> call_tir, BN folded,
bias / residual / ReLU(6) fused), schedules.py (glue schedules), pipeline.py (the Relax pipeline),
compile.py (compile_model, CompiledModel), targets.py (engine Target -> TVM), host.py (generated
kernels as torch modules for the host runtime), _tvm.py (the tvm adapter).
"""
from ._tvm import get_num_threads, set_num_threads
from .compile import CompiledModel, LayerKernel, compile_model

__all__ = ["CompiledModel", "LayerKernel", "compile_model", "get_num_threads",
           "set_num_threads"]
