"""The adapter: the one module of the engine that imports tvm (TVM's API churns between
releases; everything version-specific is reached through here). Pinned to apache-tvm 0.27.
"""
from __future__ import annotations

from ..errors import ConfigError

SUPPORTED = "0.27"

try:
    import tvm  # noqa: F401
    from tvm import relax, tirx  # noqa: F401
    from tvm import s_tir  # noqa: F401
    from tvm.s_tir import dlight  # noqa: F401
    from tvm.relax.frontend.torch import from_exported_program  # noqa: F401
    from tvm.target import codegen as llvm_info  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the install
    raise ConfigError(f"the compile path needs apache-tvm=={SUPPORTED}.* "
                      f"(pip install apache-tvm==0.27.0.post1): {e}") from e

if not str(tvm.__version__).startswith(SUPPORTED):  # pragma: no cover
    raise ConfigError(f"engine.codegen is written against apache-tvm {SUPPORTED}; found "
                      f"{tvm.__version__} (pip install apache-tvm==0.27.0.post1)")


def version() -> str:
    return str(tvm.__version__)
