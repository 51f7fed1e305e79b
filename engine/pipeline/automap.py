"""optimize(mapper=...): measured costs -> accuracy proxy -> budget -> a mapper's Plan.

    plan, problem = map_model(model, (x,), MapSettings(mapper="search", sparsity=0.8))

The steps (engine side of DESIGN.md "Mapping"; the decisions themselves are mapping/'s):
1. LayerSpecs of every conv / linear at its traced shape and fused epilogue (engine.measure).
2. Costs: every candidate of the space for every distinct layer shape, measured by a profiler
   (this host as optimize() runs it, or a device over TVM RPC) into a cost table cached on
   disk, so a second run measures nothing new.
3. Accuracy proxy: held-out accuracy after BN recalibration when `data` is given
   (engine.accuracy), else the data-free kept-weight-energy proxy (mean over layers of the
   fraction of squared weight a candidate's mask keeps).
4. Budget: global sparsity >= `sparsity` (over every conv / linear weight), latency <=
   `latency_budget_ms` when given, and an accuracy floor: the proxy of the uniform reference
   plan (`reference` = the scheme/block optimize() was given, at `sparsity`, on every layer it
   applies to) unless `min_proxy` says otherwise. So by default a mapped plan is at least as
   sparse and (by the proxy) at least as accurate as "block 4x1 at 80% everywhere", and as fast
   as the mapper can make it.
5. The mapper ("rule", "evolution" / "search", "rl", "gnn", or any object with
   map(problem) -> Plan).
   Every mapper only sees candidates measured >= min_speedup faster than dense for that layer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from torch import nn

from mapping import Budget, Candidate, CandidateSpace, CostTable, Problem, TableProxy
from mapping import default_space
from mapping.space import DENSE

from ..progress import note as progress_note
from ..errors import ConfigError
from .config import MAPPERS, check_mapper  # noqa: F401  (MAPPERS re-exported)



@dataclass
class MapSettings:
    """What map_model decides with (optimize() fills it from its arguments)."""

    mapper: Any = "rule"
    sparsity: Optional[float] = 0.8
    latency_budget_ms: Optional[float] = None
    min_proxy: Union[float, str, None] = "reference"   # a number, "reference" or None
    reference: Candidate = field(default_factory=lambda: Candidate("block", (4, 1), 0.8))
    space: Union[CandidateSpace, list, None] = None
    costs: Union[CostTable, str, None] = None          # a table, a JSON path, None = cache
    device: Any = None            # None = this host's runtime; "artifact"; rpc://...; a profiler
    target: str = "host"                               # the engine target a device runs
    data: Any = None
    search_time: float = 120.0                         # seconds (search / rl / gnn)
    seed: int = 0
    min_speedup: float = 1.1
    threads: Optional[int] = None
    isa: str = "auto"
    backends: tuple = ("native",)
    bits: tuple = (32,)                                # (32, 8): int8 is a per-layer choice
    progress: bool = True
    exclude: tuple = ()                                # layers (or prefixes) kept dense

    def validate(self) -> None:
        check_mapper(self.mapper)
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise ConfigError(f"latency_budget must be > 0 ms, got {self.latency_budget_ms!r}")
        if self.sparsity is None and self.latency_budget_ms is None:
            raise ConfigError("a mapper needs a budget: sparsity=... or latency_budget=...")
        if isinstance(self.min_proxy, str) and self.min_proxy != "reference":
            raise ConfigError(f"min_proxy must be a number, 'reference' or None, got "
                              f"{self.min_proxy!r}")
        if self.search_time <= 0:
            raise ConfigError(f"search_time must be > 0 seconds, got {self.search_time!r}")


def _space(s: MapSettings) -> CandidateSpace:
    if s.space is None:
        return default_space(backends=tuple(s.backends), bits=tuple(s.bits))
    if isinstance(s.space, CandidateSpace):
        space = s.space
    else:
        try:
            space = CandidateSpace.from_keys(list(s.space))
        except ValueError as e:
            raise ConfigError(f"space: {e}") from None
    int8 = [c.key for c in space if c.is_int8]
    if int8 and 8 not in s.bits:
        raise ConfigError(f"space lists int8 candidates ({', '.join(int8[:3])}) but bits is "
                          f"fp32 only: pass bits='auto' to let the mapper choose them")
    return space


def parse_device(device: str) -> tuple:
    """"rpc://host:port" (one RPC server) or "rpc://host:port/key" (a tracker and the device
    key) -> (host, port, key or None)."""
    if not isinstance(device, str) or not device.startswith("rpc://"):
        raise ConfigError(f"device must look like rpc://host:port or rpc://tracker:port/key, "
                          f"got {device!r}")
    rest = device[len("rpc://"):]
    addr, _, key = rest.partition("/")
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"device {device!r}: expected host:port after rpc://")
    return host, int(port), key or None


def _profiler(s: MapSettings, weights: dict):
    from ..measure import CompiledProfiler, HostProfiler, RPCProfiler
    if s.device is None:
        return HostProfiler(weights, threads=s.threads, isa=s.isa, backends=tuple(s.backends))
    if s.device == "artifact":
        return CompiledProfiler(weights=weights, threads=s.threads, backends=tuple(s.backends))
    if isinstance(s.device, str):
        host, port, key = parse_device(s.device)
        return RPCProfiler(s.target, host, port, key, weights=weights,
                           backends=tuple(s.backends))
    if hasattr(s.device, "measure") and hasattr(s.device, "target"):
        if hasattr(s.device, "weights") and not s.device.weights:
            s.device.weights.update(weights)   # masks from the model's real weights
        return s.device                        # an RPCProfiler or any mapping.Profiler
    raise ConfigError(f"device must be None (this host's runtime), 'artifact' (this host, "
                      f"as the saved artifact runs), 'rpc://host:port[/key]' or a "
                      f"profiler such as engine.measure.RPCProfiler(...), got {s.device!r}")


def _table(s: MapSettings, target: str) -> CostTable:
    from ..measure import open_costs
    if isinstance(s.costs, CostTable):
        return s.costs
    return open_costs(target, s.costs)


def _progress_printer(label: str):
    last = [0.0]

    def show(p):
        now = time.monotonic()
        if now - last[0] >= 10.0 or p.step >= p.total:
            last[0] = now
            progress_note(f"  {p}")
    return show


def make_mapper(s: MapSettings):
    from mapping import RuleMapper
    from mapping.search import EvolutionMapper, GNNMapper, RLMapper
    if not isinstance(s.mapper, str):
        return s.mapper
    show = _progress_printer(s.mapper) if s.progress else None
    if s.mapper == "rule":
        return RuleMapper()
    if s.mapper in ("search", "evolution"):
        return EvolutionMapper(time_budget=s.search_time, generations=10 ** 6, seed=s.seed,
                               progress=show)
    agent = GNNMapper if s.mapper == "gnn" else RLMapper
    return agent(time_budget=s.search_time, episodes=10 ** 7, seed=s.seed, progress=show)


def reference_assignment(specs: list, candidates: dict, ref: Candidate) -> dict:
    """`ref` on every layer whose candidate list offers it (measured faster or not: this is
    the accuracy reference, not a plan to run), DENSE elsewhere."""
    out = {}
    for spec in specs:
        offered = {c.key for c in candidates.get(spec.name, [])}
        out[spec.name] = ref if ref.key in offered else DENSE
    return out


def build_problem(model: nn.Module, example_inputs: tuple, s: MapSettings,
                  specs: Optional[list] = None) -> Problem:
    """Steps 1-4 of the module docstring."""
    from ..measure import model_specs, model_weights, profile_costs, retained_energy
    s.validate()
    specs = specs if specs is not None else model_specs(model, example_inputs)
    if s.exclude:
        # excluded layers are not part of the problem: the mappers never see them, and the
        # budget (global sparsity, accuracy floor) is about the layers that may be pruned
        specs = [sp for sp in specs
                 if not any(sp.name == e or sp.name.startswith(e + ".") for e in s.exclude)]
        if not specs:
            raise ConfigError(f"exclude={list(s.exclude)} leaves no layer to map")
    weights = model_weights(model, specs)
    prof = _profiler(s, weights)
    table = _table(s, prof.target)
    space = _space(s)
    t0 = time.perf_counter()
    table, cands, taken = profile_costs(prof, specs, space, table,
                                        progress=None if s.progress else False)
    measured_s = time.perf_counter() - t0
    if s.data is not None:
        from ..accuracy import DataProxy
        proxy = DataProxy(model, s.data)
    else:
        masks = getattr(prof, "masks", None)
        proxy = TableProxy(retained_energy(weights, specs, cands, masks=masks))
    ref = s.reference
    if s.sparsity is not None and not ref.is_dense:
        ref = Candidate(ref.scheme, ref.block, s.sparsity, ref.backend, ref.options)
    ref_proxy = proxy.score(reference_assignment(specs, cands, ref))
    min_proxy = ref_proxy if s.min_proxy == "reference" else s.min_proxy
    budget = Budget(sparsity=s.sparsity,
                    latency_us=None if s.latency_budget_ms is None
                    else s.latency_budget_ms * 1e3,
                    min_proxy=min_proxy)
    conversions = _conversions(model, example_inputs, specs, space, table, prof, s)
    problem = Problem(prof.target, specs, cands, table, proxy, budget, s.min_speedup,
                      conversions)
    problem.profiler = prof     # the pipeline's decide stage checks the plan with it
    problem.info = {"cost_table": str(table.path) if table.path else None,
                    "measurements_taken": taken, "profiling_s": round(measured_s, 2),
                    "profiler": prof.target, "reference": ref.key,
                    "reference_proxy": ref_proxy,
                    "proxy": "held-out accuracy after BN recalibration" if s.data is not None
                    else "kept weight energy (mean over layers)",
                    "profiler_notes": list(getattr(prof, "notes", []))[:50]}
    return problem


def _conversions(model, example_inputs, specs, space, table, prof, s: MapSettings):
    """The domain changes between layers (engine.measure.domains), when int8 is offered."""
    if not any(c.is_int8 for c in space):
        return None
    from ..measure.domains import measure_conversions, model_tensors
    return measure_conversions(model_tensors(model, example_inputs, specs), table,
                               prof.target, threads=s.threads, profiler=prof)


def map_model(model: nn.Module, example_inputs: tuple, s: MapSettings,
              specs: Optional[list] = None) -> tuple:
    """(Plan, Problem): the mapper's plan for `model` and the problem it solved."""
    problem = build_problem(model, example_inputs, s, specs)
    t0 = time.perf_counter()
    plan = make_mapper(s).map(problem)
    plan.meta.setdefault("mapping", {}).update(problem.info)
    plan.meta["mapping"]["mapping_s"] = round(time.perf_counter() - t0, 2)
    return plan, problem
