"""The adapter: the one module of the engine that imports tvm (TVM's API churns between
releases; everything version-specific is reached through here). Pinned to apache-tvm 0.27.
"""
from __future__ import annotations

import os

from ..errors import ConfigError

SUPPORTED = "0.27"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


# TVM sizes its thread pool once, on first use, from TVM_NUM_THREADS, else half the hardware
# threads (it assumes SMT): 1 thread on a 2-vCPU machine. Default to every CPU we may run on;
# set_num_threads() can lower it later, never raise it past this.
os.environ.setdefault("TVM_NUM_THREADS", str(_cpus()))
# TVM's idle workers spin a long while after each parallel loop before sleeping; on a small
# machine that steals the cores from whatever runs next in the process (the C++ kernels' pool,
# torch): ResNet-50 with C++ kernels in the module ran 58 ms spinning vs 12 ms with a short
# spin, and the short spin costs generated-TIR modules nothing (11.1-11.3 ms vs 12.0 ms).
os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "10000")

try:
    import tvm  # noqa: F401
    from tvm import relax, tirx  # noqa: F401
    from tvm import s_tir  # noqa: F401
    from tvm.s_tir import dlight  # noqa: F401
    from tvm.relax.frontend.torch import from_exported_program  # noqa: F401
    from tvm.target import codegen as llvm_info  # noqa: F401
    from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline  # noqa: F401
    from tvm import rpc  # noqa: F401
    from tvm.support import cc as tvm_cc  # noqa: F401
    import tvm_ffi  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the install
    raise ConfigError(f"the compile path needs apache-tvm=={SUPPORTED}.* "
                      f"(pip install apache-tvm==0.27.0.post1): {e}") from e

if not str(tvm.__version__).startswith(SUPPORTED):  # pragma: no cover
    raise ConfigError(f"engine.codegen is written against apache-tvm {SUPPORTED}; found "
                      f"{tvm.__version__} (pip install apache-tvm==0.27.0.post1)")


def version() -> str:
    return str(tvm.__version__)


def set_num_threads(n: int) -> int:
    """Threads the compiled modules' parallel loops use in this process (at most the pool size
    fixed at first use: TVM_NUM_THREADS, default all CPUs). Returns the count now in effect."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"threads must be a positive int, got {n!r}")
    tvm.get_global_func("runtime.config_threadpool")(1, n)
    return get_num_threads()


def get_num_threads() -> int:
    return int(tvm.get_global_func("runtime.NumThreads")())




def import_exported_program(ep, keep_params_as_input: bool = True):
    """from_exported_program, with the failing node known: (mod, None) or (None, (error, node
    or None, graph nodes it holds)). TVM's importer reports an op it cannot convert without
    saying which node (or source line) it was; the importer object tells which node it was
    converting (the first call_function node not yet in its env)."""
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter
    try:
        ep = ep.run_decompositions()
    except Exception as e:  # noqa: BLE001  (torch's decomposition; reported like an import)
        return None, (e, None, [])
    _explicit_scan_dtypes(ep)
    _positive_select_indices(ep)
    importer = ExportedProgramImporter()
    try:
        mod = importer.from_exported_program(ep, keep_params_as_input, False, False, None)
        return mod, None
    except Exception as e:  # noqa: BLE001  (TVM raises TypeError / AssertionError / TVMError)
        nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
        convert = getattr(importer, "convert_map", {})
        unsupported = [n for n in nodes if n.target.__name__ not in convert]
        if unsupported:
            return None, (e, unsupported[0], unsupported)
        env = getattr(importer, "env", {})
        failing = next((n for n in nodes if n not in env), None)
        return None, (e, failing, [failing] if failing is not None else [])


def _positive_select_indices(ep) -> None:
    """torch's select(x, dim, -1) is the last element; TVM's importer turns it into
    take(x, -1, mode="fast"), which reads before the tensor (garbage: `out[:, -1]`, a
    classifier reading an LSTM's last step, gave 1e31). Name the index from the front."""
    import torch
    for node in ep.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.aten.select.int:
            continue
        src, dim, index = node.args[0], node.args[1], node.args[2]
        val = getattr(src, "meta", {}).get("val")
        if isinstance(index, int) and index < 0 and val is not None:
            size = int(val.shape[dim])
            node.args = (src, dim, index + size)


def _explicit_scan_dtypes(ep) -> None:
    """torch's cumsum / cumprod of a bool or small-int tensor returns int64 (dtype=None means
    "promote"); TVM's importer keeps the input's dtype and LLVM then fails adding bools
    (transformers' packed-sequence mask: (position_diff != 1).cumsum(-1)). Name the dtype the
    node returns (its meta) wherever torch promotes."""
    import torch
    for node in ep.graph.nodes:
        if node.op != "call_function" or "dtype" in node.kwargs:
            continue
        if node.target not in (torch.ops.aten.cumsum.default, torch.ops.aten.cumprod.default):
            continue
        out, src = node.meta.get("val"), getattr(node.args[0], "meta", {}).get("val")
        if out is not None and src is not None and out.dtype != src.dtype:
            node.kwargs = {**node.kwargs, "dtype": out.dtype}
