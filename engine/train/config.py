"""What a pruning-aware training run is told: TrainConfig (the run) and Target (one layer's goal).

TrainConfig.method picks the pruning method ("gradual", "soft", "admm", "lasso", "lth", "rigl",
"set"; each is a trainer class of its own, see trainer.py); Target adds "filter" (whole output
filters) to the schemes a mapping.Candidate can name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import ConfigError

METHODS = ("gradual", "soft", "admm", "lasso", "lth", "rigl", "set")


@dataclass
class TrainConfig:
    epochs: int = 10
    method: str = "gradual"             # "gradual", "soft" (SFP), "admm", "lasso", "lth",
                                        # "rigl" or "set" (dynamic sparse training, rigl.py)
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"             # "adam" or "sgd" (momentum 0.9)
    lr_schedule: str = "constant"       # "constant" or "cosine" (per batch, to 0 at the end)
    prune_epochs: Optional[int] = None  # epochs over which sparsity ramps up, or of the ADMM /
                                        # lasso phase before hard pruning (None: 2/3)
    prune_every: int = 1                # pruning steps happen every this many batches
    importance: str = "l2"
    checkpoint: Optional[str] = None    # path; resumed from when it exists
    seed: int = 0
    progress: bool = False
    soft: bool = False                  # SFP-style: pruned weights keep learning until the end
    distill_alpha: float = 0.0          # weight of the distillation term (needs a teacher)
    distill_temperature: float = 4.0
    rho: float = 1e-2                   # ADMM: initial penalty
    rho_max: float = 10.0               # ADMM: final penalty
    rho_growth: Optional[float] = None  # ADMM: rho *= this at every Z/U update (None: the
                                        # factor that reaches rho_max at the phase's end)
    admm_every: Optional[int] = None    # ADMM: batches between Z/U updates (None: 4 per epoch)
    lasso: float = 1e-4                 # group lasso: lambda
    lasso_eps: float = 1e-3             # group lasso: reweighting epsilon
    imp_rounds: int = 3                 # lth: IMP rounds (prune, rewind, retrain) in prune_epochs
    rewind_epoch: int = 1               # lth: weights rewound to those after this epoch (0: start)
    imp_global: bool = False            # lth: one magnitude threshold over all targets
    regrow_every: Optional[int] = None  # rigl / set: batches between mask updates (None: the
                                        # prune_epochs batches // 20: ~19 updates)
    regrow_fraction: float = 0.3        # rigl / set: share of kept units dropped and regrown at
                                        # the first update (cosine-decayed to 0)

    @property
    def kind(self) -> str:
        """The effective method ("soft" when soft=True)."""
        return "soft" if self.soft else self.method

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}; got "
                              f"{self.method!r}")
        if self.soft and self.method not in ("gradual", "soft"):
            raise ConfigError(f"soft=True is SFP; it cannot be combined with method "
                              f"{self.method!r}")
        for name in ("rho", "rho_max", "lasso", "lasso_eps"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"{name} must be > 0, got {v!r}")
        if self.rho_max < self.rho:
            raise ConfigError(f"rho_max ({self.rho_max}) must be >= rho ({self.rho})")
        if self.rho_growth is not None and not self.rho_growth >= 1.0:
            raise ConfigError(f"rho_growth must be >= 1, got {self.rho_growth}")
        _check_regrow(self)
        if self.admm_every is not None and self.admm_every < 1:
            raise ConfigError(f"admm_every must be >= 1 batch, got {self.admm_every}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', got "
                              f"{self.lr_schedule!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.prune_epochs is not None and not 0 <= self.prune_epochs <= self.epochs:
            raise ConfigError(f"prune_epochs must be in [0, epochs], got {self.prune_epochs}")
        for name, low in (("imp_rounds", 1), ("rewind_epoch", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{name} must be an int >= {low}, got {v!r}")
        if self.rewind_epoch > self.epochs:
            raise ConfigError(f"rewind_epoch ({self.rewind_epoch}) must be <= epochs "
                              f"({self.epochs})")
        if self.prune_every < 1:
            raise ConfigError(f"prune_every must be >= 1, got {self.prune_every}")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ConfigError(f"distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if self.distill_temperature <= 0:
            raise ConfigError(f"distill_temperature must be > 0, got "
                              f"{self.distill_temperature}")


def _check_regrow(cfg: TrainConfig) -> None:
    """rigl / set options (engine/train/rigl.py)."""
    if cfg.regrow_every is not None and (isinstance(cfg.regrow_every, bool) or
                                         not isinstance(cfg.regrow_every, int) or
                                         cfg.regrow_every < 1):
        raise ConfigError(f"regrow_every must be an int >= 1 batch or None, got "
                          f"{cfg.regrow_every!r}")
    if not isinstance(cfg.regrow_fraction, (int, float)) or not 0 < cfg.regrow_fraction <= 1:
        raise ConfigError(f"regrow_fraction must be in (0, 1], got {cfg.regrow_fraction!r}")


@dataclass(frozen=True)
class Target:
    """What one layer is trained towards: like mapping.Candidate (which also works as a
    target), plus scheme "filter": whole output filters, the SFP unit."""
    scheme: str
    block: Optional[tuple] = None
    sparsity: float = 0.0
    options: tuple = ()

    def __post_init__(self):
        if self.scheme not in ("filter", "block", "unstructured", "pattern", "nm"):
            raise ConfigError(f"train target scheme must be filter, block, unstructured, "
                              f"pattern or nm; got {self.scheme!r}")
        if not 0.0 < self.sparsity < 1.0:
            raise ConfigError(f"train target sparsity must be in (0, 1), got {self.sparsity}")

    @property
    def key(self) -> str:
        head = f"{self.scheme}{self.block[0]}x{self.block[1]}" if self.block else self.scheme
        return f"{head}@{self.sparsity:.2f}" + (f"{dict(self.options)}" if self.options else "")

