"""The adapter: the one module of the engine that imports tvm (TVM's API churns between
releases; everything version-specific is reached through here). Pinned to apache-tvm 0.27.
"""
from __future__ import annotations

import os
import threading

from ..errors import ConfigError
from .export_fixes import apply_fixes

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


# TVM's thread pool (one per calling thread, made at its first parallel loop) does not survive
# fork: in the child the forking thread's pool still counts its workers, which do not exist
# there, and its next parallel loop waits for them forever (seen with an artifact whose mean
# pooling is a generated parallel loop); resetting the pool would join those threads, which
# hangs too. So in the child that thread's pool is switched to serial (TVM's one-worker path
# runs a parallel loop in the caller and never touches the pool: thread count 1 through
# config_threadpool with one CPU listed, TVM_BIND_THREADS=0 so no affinity is set on the
# parent's threads through the stale handles), and set_num_threads keeps it there. Threads
# the child starts get pools of their own; the C++ kernels' pool respawns its workers
# (kernels/src/common/threadpool.cc), so native layers keep every thread.
_serial_thread = None      # in a forked child: the thread whose TVM pool is serial


def _serial_pool() -> None:
    prev = os.environ.get("TVM_BIND_THREADS")
    os.environ["TVM_BIND_THREADS"] = "0"
    try:
        tvm.get_global_func("runtime.config_threadpool")(-3, 1, ["0"])
    finally:
        if prev is None:
            del os.environ["TVM_BIND_THREADS"]
        else:
            os.environ["TVM_BIND_THREADS"] = prev


def _after_fork_in_child() -> None:
    global _serial_thread
    _serial_thread = threading.get_ident()
    try:
        _serial_pool()
    except Exception:  # noqa: BLE001  (never fail a fork; the child's loops may then hang)
        pass


os.register_at_fork(after_in_child=_after_fork_in_child)


def set_num_threads(n: int) -> int:
    """Threads the compiled modules' parallel loops use in this process (at most the pool size
    fixed at first use: TVM_NUM_THREADS, default all CPUs). Returns the count now in effect
    (1 in a forked child's forking thread, whose TVM pool did not survive the fork)."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"threads must be a positive int, got {n!r}")
    if _serial_thread == threading.get_ident():
        _serial_pool()
    else:
        tvm.get_global_func("runtime.config_threadpool")(1, n)
    return get_num_threads()


def get_num_threads() -> int:
    return int(tvm.get_global_func("runtime.NumThreads")())


def import_exported_program(ep, keep_params_as_input: bool = True, custom_convert_map=None):
    """from_exported_program (custom_convert_map: op name -> converter, as TVM's), with the
    failing node known: (mod, None) or (None, (error, node
    or None, graph nodes it holds)). TVM's importer reports an op it cannot convert without
    saying which node (or source line) it was; the importer object tells which node it was
    converting (the first call_function node not yet in its env)."""
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter
    try:
        ep = ep.run_decompositions()
    except Exception as e:  # noqa: BLE001  (torch's decomposition; reported like an import)
        return None, (e, None, [])
    apply_fixes(ep)      # ops the importer rejects, rewritten (engine.codegen.export_fixes)
    importer = ExportedProgramImporter()
    try:
        mod = importer.from_exported_program(ep, keep_params_as_input, False, False,
                                             custom_convert_map)
        return mod, None
    except Exception as e:  # noqa: BLE001  (TVM raises TypeError / AssertionError / TVMError)
        nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
        convert = {**getattr(importer, "convert_map", {}), **(custom_convert_map or {})}
        unsupported = [n for n in nodes if n.target.__name__ not in convert]
        if unsupported:
            return None, (e, unsupported[0], unsupported)
        env = getattr(importer, "env", {})
        failing = next((n for n in nodes if n not in env), None)
        return None, (e, failing, [failing] if failing is not None else [])
