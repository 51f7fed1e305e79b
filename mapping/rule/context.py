"""What every rule of the rule mapper works with: the RuleContext it reads and the Decision it
makes for a layer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..layer import LayerSpec
from ..problem import Problem
from ..space import DENSE, Candidate
from .config import RuleConfig

BLOCK_SCHEMES = ("block", "unstructured")


@dataclass
class Decision:
    """One layer's choice, why, and whether compensation may change it."""

    cand: Candidate
    reason: str
    locked: bool = False


@dataclass
class RuleContext:
    """What every rule can look at."""

    problem: Problem
    config: RuleConfig
    target: float                       # target sparsity
    notes: list = field(default_factory=list)
    remarks: dict = field(default_factory=dict)   # layer -> (text, text if kept dense)
                                                  # appended to the deciding rule's reason
    bits: dict = field(default_factory=dict)      # layer -> 8 once the int8 rule flipped it

    def family(self, spec: LayerSpec) -> list:
        """The allowed candidates the rules consider for this layer, guard applied, at the
        layer's bits (fp32 until the int8 rule flips it: the global rules after it keep each
        layer's domain)."""
        schemes = BLOCK_SCHEMES + (("pattern",) if is_3x3(spec) else ())
        bits = self.bits.get(spec.name, 32)
        return [c for c in self.problem.allowed(spec.name)
                if c.scheme in schemes and c.block_elems <= self.config.max_block_elems
                and c.bits == bits]

    def dense(self, spec: LayerSpec) -> Candidate:
        """The unpruned candidate at the layer's bits (DENSE for fp32)."""
        if self.bits.get(spec.name, 32) == 8:
            return DENSE.with_bits(8)
        return DENSE

    def level(self, cands: list) -> Optional[float]:
        """The lowest sparsity level among cands at or above the target."""
        levels = [c.sparsity for c in cands if c.sparsity >= self.target - 1e-9]
        return min(levels) if levels else None

    def speedup(self, spec: LayerSpec, cand: Candidate) -> float:
        return self.problem.speedup(spec.name, cand)


def is_3x3(spec: LayerSpec) -> bool:
    return spec.op == "conv2d" and spec.kernel == (3, 3)
