"""Mapping: choose, per layer, the pruning scheme, block size, sparsity and kernel backend.

This package does not import `engine`: measurement and the layer list are injected.
"""
from .plan import Choice, Plan

__all__ = ["Choice", "Plan"]
