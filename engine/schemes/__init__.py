"""Pruning schemes, one registered class each (see base.py for the API, registry.py for the
list)."""
from .base import SCHEMES, MaskScheme, apply_mask, check_sparsity, register_scheme
from .registry import get_scheme, load_all

__all__ = ["SCHEMES", "MaskScheme", "apply_mask", "get_scheme", "register_scheme",
           "check_sparsity", "load_all"]
