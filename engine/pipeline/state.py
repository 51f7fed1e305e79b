"""What the stages of one optimize() run hand each other (engine.pipeline.run)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from torch import nn

from mapping import Plan

from ..targets import Target
from .config import OptimizeConfig


@dataclass
class RunState:
    """One run's state; each stage reads what earlier ones wrote and adds its part."""

    model: nn.Module                     # the user's model (never modified)
    example_inputs: tuple
    config: OptimizeConfig
    target: Target
    notes: list = field(default_factory=list)
    work: Optional[nn.Module] = None     # eval copy, no grads: what is pruned
    plan_in: Optional[Plan] = None       # the plan to replay (given, or made by the mapper)
    scheme: Any = None                   # the scheme object optimize() was given
    base: Optional[nn.Module] = None     # the model masks apply to (shrunk for group schemes)
    layers: list = field(default_factory=list)
    other_layers: list = field(default_factory=list)   # weight layers not in `layers`
    decomposed: dict = field(default_factory=dict)     # ConvTranspose2d -> its phase convs
    candidates: dict = field(default_factory=dict)   # layer -> (mask, group rows)
    choices: dict = field(default_factory=dict)      # layer -> mapping.Choice
    backends: dict = field(default_factory=dict)     # layer -> rows | ("tir" | "dense", ...)
    pruned_model: Optional[nn.Module] = None
    lowered: Any = None                  # engine.lowering.LoweringResult
    plan: Optional[Plan] = None          # the plan the result runs
    mapping_problem: Any = None          # the mapping.Problem when a mapper made the plan
    mapped_plan: Optional[Plan] = None   # the mapper's own plan (meta: budget, feasibility)
    dense_model: Optional[nn.Module] = None   # what opt.benchmark() compares against
    timer: Any = None                    # the profiler the mapper measured with (decide reuses it)
    recurrent: Any = None                # engine.graph.recurrent.RecurrentRecord (capture)
    reference: Any = None                # int8: the fake-quantized model verify compares to
    int8: Optional[dict] = None          # int8: calibration and lowering report (plan meta)
    fp32_module: Any = None              # int8: stage lower's fp32 module (the int8 guard's twin)
    int8_costs: dict = field(default_factory=dict)   # int8: decide's measurements per layer
    budget_miss: Optional[dict] = None   # a sparsity budget the in-place check missed, its
    #                                      verdict left to the check guard (budget.check_in_place)
