"""Search-based mappers: evolutionary (MetaPruning-style) and RL (AMC / Galen-style).

Both search over one allowed candidate per layer (never anything slower than dense), rank by
Problem.rank (feasible first, then: max proxy under a latency budget, else min latency), start
from the rule and uniform plans, are seeded, time-bounded and report progress, and return a
Plan through Problem.to_plan with a reason per layer.
"""
from .evolution import EvolutionConfig, EvolutionMapper
from .genome import Evaluation, Evaluator, GenomeSpace
from .progress import Progress
from .rl import RLConfig, RLMapper

__all__ = ["EvolutionConfig", "EvolutionMapper", "RLConfig", "RLMapper", "Progress",
           "GenomeSpace", "Evaluator", "Evaluation"]
