"""The optimize pipeline (engine.optimize is its facade): named stages over one config."""
from .config import MapConfig, OptimizeConfig, parse_backends, parse_block
from .result import OptimizedModel
from .run import STAGES, run

__all__ = ["MapConfig", "OptimizeConfig", "OptimizedModel", "STAGES", "parse_backends",
           "parse_block", "run"]
