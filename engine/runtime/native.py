"""The one module that imports the C++ kernels' Python binding (engine._kernels, built from
python/bindings.cc). Everything else asks `lib()` for it, so a missing or stale build fails in
one place with one message, and the binding's name is written once.

The binding loads lazily: the engine package and its pure-Python layers stay usable (and
cheap) on a checkout whose kernels are not built yet."""
from __future__ import annotations

import importlib

from ..errors import ConfigError


def lib():
    """The engine._kernels module."""
    try:
        # by its full name: the compiled extension, not an attribute of the engine package
        # (whose __init__ sits on top of every layer)
        _kernels = importlib.import_module("engine._kernels")
    except ImportError as e:
        raise ConfigError(f"the C++ kernels are not built ({e}); run `pip install "
                          f"--no-build-isolation -e .` (or bash scripts/install.sh)") from e
    return _kernels


def set_threads(threads) -> None:
    """The kernels' thread count (None: leave it)."""
    if threads is not None:
        lib().set_num_threads(int(threads))


def get_threads() -> int:
    return int(lib().get_num_threads())


def best_isa() -> str:
    return str(lib().best_isa())
