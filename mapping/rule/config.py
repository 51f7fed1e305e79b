"""RuleConfig: the rule mapper's knobs, checked when made (what each does: mapping.rule)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class RuleConfig:
    """Knobs of the rule mapper (each documented in mapping.rule and its rule module)."""

    sparsity: Optional[float] = None   # per-layer target; None: budget's, else lowest offered
    max_block_elems: int = 16          # accuracy guard on block size
    tie_tolerance: float = 0.03        # speedups this close count as equal
    compensate: bool = True            # run the global compensation rule
    proxy_guard: bool = True           # run the global proxy-guard rule (budget.min_proxy)
    guard_proxy_calls: int = 400       # most full proxy evaluations per global proxy rule
                                       # (proxy-guard, proxy-spend; not used for a TableProxy)
    proxy_spend: bool = True           # run the global proxy-spend rule (budget.min_proxy)
    first_layer_share: float = 0.03    # first layer dense only below this dense-latency share
                                       # (1.0: always dense, the old rule)
    int8: bool = True                  # run the global int8 rule (when int8 is offered)
    int8_first: bool = True            # let the first layer run int8 (its measured proxy
                                       # loss decides, as every layer's; the peers' int8 too)
    int8_ends: bool = False            # let the last layer (the classifier) run int8 too
    int8_max_drop: float = 0.01        # most proxy a layer's int8 twin alone may lose

    def __post_init__(self):
        if self.sparsity is not None and not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"RuleConfig.sparsity must be in (0, 1), got {self.sparsity}")
        if self.max_block_elems < 1:
            raise ValueError("RuleConfig.max_block_elems must be >= 1")
        if not 0.0 <= self.tie_tolerance < 1.0:
            raise ValueError("RuleConfig.tie_tolerance must be in [0, 1)")
        calls = self.guard_proxy_calls
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
            raise ValueError("RuleConfig.guard_proxy_calls must be an int >= 1")
        for flag in ("int8", "int8_first", "int8_ends"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"RuleConfig.{flag} must be True or False, got "
                                 f"{getattr(self, flag)!r}")
        if not 0.0 <= self.int8_max_drop <= 1.0:
            raise ValueError(f"RuleConfig.int8_max_drop must be in [0, 1], got "
                             f"{self.int8_max_drop}")
        share = self.first_layer_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or \
                not 0.0 <= share <= 1.0:
            raise ValueError(f"RuleConfig.first_layer_share must be in [0, 1], got {share}")
