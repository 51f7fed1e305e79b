"""What an optimize() run decides with: one config, with nested configs for the mapping and
finetuning stages, validated in one place before any work.

    cfg = OptimizeConfig(target="host", sparsity=0.8, map=MapConfig(mapper="rule"))
    cfg.validate()
    opt = engine.pipeline.run(model, (x,), cfg)

engine.optimize(...) fills it from its keyword arguments (a thin facade over the pipeline).
"""
from __future__ import annotations

import importlib.util
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

from ..options import flag, integer, mapping_options, number, text
from ..options import names as name_list
from ..options import plan as plan_option
from ..errors import ConfigError
from ..schemes import check_sparsity
from ..targets import get_target

# More kernel threads than this is a typo (and asks the OS for that many threads).
MAX_THREADS = 256
SPARSE_BACKENDS = ("native", "tir")
MAPPERS = ("rule", "search", "evolution", "rl", "gnn")


def tvm_available() -> bool:
    return importlib.util.find_spec("tvm") is not None


def parse_backends(backends) -> tuple:
    """The sparse backends a layer may be measured on: "auto" (native, plus generated TIR when
    tvm is installed), one name, or a tuple of names from SPARSE_BACKENDS."""
    if backends == "auto":
        return ("native", "tir") if tvm_available() else ("native",)
    names = name_list("backends", backends)
    bad = [b for b in names if b not in SPARSE_BACKENDS]
    if bad or not names:
        raise ConfigError(f"backends must be 'auto' or a subset of {SPARSE_BACKENDS}, got "
                          f"{backends!r}")
    if "tir" in names and not tvm_available():
        raise ConfigError("backend 'tir' needs apache-tvm==0.27.0.post1 "
                          "(pip install apache-tvm==0.27.0.post1)")
    return names


def parse_block(block) -> tuple:
    """(rows, cols) from a tuple or a "4x1" string; errors name the option."""
    if isinstance(block, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", block)
        if not m:
            raise ConfigError(f"block must look like '4x1', got {block!r}")
        block = (int(m.group(1)), int(m.group(2)))
    try:
        rows, cols = block
    except (TypeError, ValueError):
        raise ConfigError(f"block must be (rows, cols), got {block!r}") from None
    for v in (rows, cols):     # no silent int(4.7) == 4, no True == 1
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ConfigError(f"block must be (rows, cols) of ints >= 1, got {block!r}")
    return int(rows), int(cols)


def check_mapper(mapper) -> None:
    """A mapper name of MAPPERS, or an object with map(problem) -> Plan."""
    if isinstance(mapper, str) and mapper not in MAPPERS:
        raise ConfigError(f"mapper must be one of {MAPPERS} or an object with "
                          f"map(problem) -> Plan, got {mapper!r}")
    if not isinstance(mapper, str) and not hasattr(mapper, "map"):
        raise ConfigError(f"mapper {mapper!r} has no map(problem) method")


def sparsity_option(sparsity, scheme: str, mapped: bool):
    """One fraction in [0, 1); or, for the group schemes (filter / channel) without a mapper,
    a dict group or layer name -> fraction: per-group ratios (e.g. AutoBot's, engine.train)."""
    if not isinstance(sparsity, Mapping):
        return check_sparsity(sparsity, " (option 'sparsity')")
    if scheme not in ("filter", "channel") or mapped:
        raise ConfigError(f"sparsity per layer (a dict) needs scheme 'filter' or 'channel' and "
                          f"no mapper; got scheme {scheme!r}"
                          + (" with a mapper" if mapped else ""))
    out = {}
    for name, value in sparsity.items():
        if not isinstance(name, str):
            raise ConfigError(f"sparsity dict keys must be layer names, got {name!r}")
        out[name] = check_sparsity(value, f" (option 'sparsity', layer {name!r})")
    return out


BITS = (32, 8, "auto")


def check_bits(bits, mapped: bool) -> None:
    """optimize(bits=...): 32 (fp32), 8 (every layer the int8 kernels run, the classifier
    fp32) or "auto" (the mapper chooses per layer from measurements; needs mapper=...)."""
    if isinstance(bits, bool) or bits not in BITS:
        raise ConfigError(f"bits must be 32, 8 or 'auto', got {bits!r}")
    if bits == "auto" and not mapped:
        raise ConfigError("bits='auto' lets the mapper choose fp32 or int8 per layer: pass "
                          "mapper='rule' (or 'search', 'rl', 'gnn'), or bits=8 for int8 "
                          "everywhere")
    if bits == 8 and mapped:
        raise ConfigError("bits=8 runs every layer it can int8; with a mapper use "
                          "bits='auto' (the mapper then chooses fp32 or int8 per layer)")


@dataclass
class MapConfig:
    """optimize(mapper=...): per-layer choices from measured costs (engine.pipeline.automap).

    allow_infeasible: return the mapper's best plan even when it misses the budget (flagged in
    the plan's meta and the notes); by default such a budget is an InfeasibleError that says
    what is reachable."""

    mapper: Any = "rule"
    latency_budget_ms: Optional[float] = None
    min_proxy: Union[float, str, None] = "reference"
    data: Any = None
    device: Any = None
    space: Any = None
    costs: Any = None
    search_time: float = 120.0
    seed: int = 0
    allow_infeasible: bool = False

    def validate(self) -> None:
        check_mapper(self.mapper)
        mapping_options(self.latency_budget_ms, self.min_proxy, self.search_time,
                                self.seed, True)
        self.allow_infeasible = flag("allow_infeasible", self.allow_infeasible)


@dataclass
class OptimizeConfig:
    """Everything optimize() decides with; one place to validate it."""

    target: str = "host"
    scheme: str = "block"
    block: tuple = (4, 1)
    sparsity: Union[float, dict] = 0.8     # a dict: per group (filter / channel)
    importance: Union[str, Callable, None] = "l2"
    exclude: tuple = ()
    threads: Optional[int] = None
    min_speedup: float = 1.1
    measure: bool = True
    capture: bool = True
    verify_rtol: float = 1e-3
    isa: str = "auto"
    backends: Union[str, tuple] = "auto"
    scheme_options: dict = field(default_factory=dict)
    plan: Any = None                       # a mapping.Plan (or its path) to replay
    map: Optional[MapConfig] = None        # mapper=...: the mapping stage runs
    finetune: Any = None                   # dict for engine.train, or (model, plan) -> model
    progress: bool = True
    guard: str = "keep"                    # the whole-model check (engine.pipeline.guard)
    bits: Union[int, str] = 32             # 32, 8 or "auto" (the mapper's per-layer choice)
    calibration: Any = None                # int8: input batches to calibrate on

    def validate(self) -> None:
        self.sparsity = sparsity_option(self.sparsity, self.scheme, self.map is not None)
        get_target(self.target)
        self.threads = integer("threads", self.threads, lo=1, hi=MAX_THREADS,
                                       none_ok=True)
        # >= 1: a layer is pruned only if measured at least this much faster than dense, so a
        # value below 1 would let the engine pick kernels slower than dense
        self.min_speedup = number("min_speedup", self.min_speedup, lo=1.0)
        self.measure = flag("measure", self.measure)
        self.capture = flag("capture", self.capture)
        self.progress = flag("progress", self.progress)
        self.verify_rtol = number("verify_rtol", self.verify_rtol, lo=0.0, lo_open=True)
        self.isa = text("isa", self.isa)
        if self.guard not in ("keep", "warn", "off"):
            raise ConfigError(f"guard must be 'keep', 'warn' or 'off', got {self.guard!r}")
        self.exclude = name_list("exclude", self.exclude)
        self.block = parse_block(self.block)
        self.backends = parse_backends(self.backends)
        self.plan = plan_option(self.plan)
        check_bits(self.bits, self.map is not None)
        if self.map is not None:
            if self.plan is not None:
                raise ConfigError("pass either plan=... or mapper=..., not both")
            self.map.validate()
