"""Search-based mappers: evolutionary (MetaPruning-style), RL (AMC / Galen-style) and GNN
(AGMC / GNN-RL-style: the RL agent on a graph embedding of the network).

All search over one allowed candidate per layer (never anything slower than dense), rank by
Problem.rank (feasible first, then: max proxy under a latency budget, else min latency), start
from the rule and uniform plans, are seeded, time-bounded and report progress, and return a
Plan through Problem.to_plan with a reason per layer.
"""
from .evolution import EvolutionConfig, EvolutionMapper
from .genome import Evaluation, Evaluator, GenomeSpace
from .gnn import GNNConfig, GNNMapper
from .progress import Progress
from .rl import RLConfig, RLMapper

__all__ = ["EvolutionConfig", "EvolutionMapper", "RLConfig", "RLMapper", "GNNConfig",
           "GNNMapper", "Progress", "GenomeSpace", "Evaluator", "Evaluation"]
