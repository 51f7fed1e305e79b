"""Mapping: choose, per layer, the pruning scheme, block size, sparsity and kernel backend.

This package does not import `engine`: the layer list (LayerSpec), measurement (a Profiler
filling a CostTable) and the accuracy proxy are injected.

    problem = Problem.from_space(target, specs, default_space(), costs, TableProxy(retained),
                                 Budget(sparsity=0.8))
    plan = RuleMapper().map(problem)            # explicit rules, a reason per layer
    plan = EvolutionMapper(seed=0).map(problem) # or RLMapper; both start from the rule plan
    best_uniform(problem)                       # the baseline: one scheme everywhere
    require_feasible(plan)                      # InfeasibleBudget if the budget was not met

The search mappers (mapping.search) need numpy; everything else is plain Python.
"""
from .budget import Budget, Totals
from .cost import CostTable, Measurement, Profiler, ensure_costs
from .layer import LayerSpec
from .plan import Choice, Plan
from .feasible import InfeasibleBudget, require_feasible
from .problem import Mapper, Problem, Rejection
from .proxy import AccuracyProxy, CallableProxy, TableProxy
from .rule import RULES, RuleConfig, RuleMapper
from .space import DENSE, Candidate, CandidateSpace, default_space, why_not
from .uniform import best_uniform, uniform_assignments, uniform_plans

__all__ = ["Choice", "Plan", "LayerSpec", "Candidate", "CandidateSpace", "DENSE",
           "default_space", "why_not", "CostTable", "Measurement", "Profiler", "ensure_costs",
           "Budget", "Totals", "Problem", "Rejection", "InfeasibleBudget", "Mapper",
           "require_feasible", "AccuracyProxy", "TableProxy", "CallableProxy", "RuleMapper",
           "RuleConfig", "RULES", "uniform_plans", "uniform_assignments", "best_uniform"]
