"""Pruning schemes, one registered class each (see base.py for the API)."""
from .base import SCHEMES, MaskScheme, apply_mask, get_scheme, register_scheme, check_sparsity

_MODULES = ("importance", "unstructured", "block", "pattern", "nm", "channel")


def load_all() -> None:
    """Import every scheme module so each registers itself (idempotent)."""
    import importlib
    for m in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{m}")
        except ModuleNotFoundError as e:  # a scheme module not written yet
            if e.name != f"{__name__}.{m}":
                raise


__all__ = ["SCHEMES", "MaskScheme", "apply_mask", "get_scheme", "register_scheme",
           "check_sparsity", "load_all"]
