"""Mapping: choose, per layer, the pruning scheme, block size, sparsity and kernel backend.

This package does not import `engine`: the layer list (LayerSpec), measurement (a Profiler
filling a CostTable) and the accuracy proxy are injected.
"""
from .cost import CostTable, Measurement, Profiler, ensure_costs
from .layer import LayerSpec
from .plan import Choice, Plan
from .space import DENSE, Candidate, CandidateSpace, default_space, why_not

__all__ = ["Choice", "Plan", "LayerSpec", "Candidate", "CandidateSpace", "DENSE",
           "default_space", "why_not", "CostTable", "Measurement", "Profiler", "ensure_costs"]
