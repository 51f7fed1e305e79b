"""A model already lowered onto the kernels' torch modules, compiled as it is (its native layers
calls into the bridge): engine.quant.compile_int8's path, and the lowered-model tests'.
"""
from __future__ import annotations

from typing import Optional, Union

from torch import nn

from ..graph.export_inputs import has_settings, named_tensors
from ..graph.inputs import input_names

from ..targets import Target
from ._tvm import tvm
from .compile import CompiledModel, _output_specs
from .import_errors import build_error
from .pipeline import relax_pipeline
from .targets import as_target, cross_compiler, tvm_target, vector_isa
from .token_int8 import stream_qlinears


def compile_lowered(lowered: nn.Module, example_inputs: tuple, target: Union[str, Target] = "host",
                    layers: Optional[list] = None) -> CompiledModel:
    """A model already lowered onto the kernels' torch modules (engine.lowering, or
    engine.quant.lower_int8: every native layer one spe custom op) compiled as it is: its
    native layers calls into the bridge, the rest TVM's (the glue schedules included); int8
    linears over a transformer's tokens in the token stream (token_int8).
    layers: the LayerKernel list to report (a native one makes export link the bridge)."""
    from .native_lowering import import_lowered
    tgt = as_target(target)
    cross_compiler(tgt)
    tvm_tgt = tvm_target(tgt)
    mod = stream_qlinears(import_lowered(lowered, example_inputs, vector_isa(tvm_tgt)),
                          vector_isa(tvm_tgt))
    try:
        with tvm.transform.PassContext(opt_level=3):
            ex = tvm.compile(mod, tvm_tgt, relax_pipeline=relax_pipeline(tvm_tgt))
    except Exception as e:  # noqa: BLE001
        raise build_error(e, mod) from e
    if has_settings(example_inputs):   # settings bound: the tensors by name
        names = input_names(lowered, len(example_inputs))
        ins = [(n, tuple(t.shape), str(t.dtype).replace("torch.", ""))
               for n, t in named_tensors(names, example_inputs)]
    else:
        ins = [(f"input{i}" if len(example_inputs) > 1 else "input", tuple(x.shape),
                str(x.dtype).replace("torch.", "")) for i, x in enumerate(example_inputs)]
    return CompiledModel(ex, tgt, ins, _output_specs(mod["main"]), list(layers or []))
