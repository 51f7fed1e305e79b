"""Problem: one mapping task (layers, candidates, measured costs, accuracy proxy, budget).

Every mapper (rule/, search/) takes a Problem and returns a Plan through `to_plan`. The
Problem is where the "never slower than dense" guarantee lives: `allowed(layer)` is DENSE plus
only the candidates that are applicable, MEASURED on the target and at least `min_speedup`
faster than the layer's dense latency. Mappers only ever see allowed candidates, and `to_plan`
refuses anything else. What was rejected and why (not applicable / not measured / measured
0.93x vs dense) stays available for reasons and reports.

Objective (shared by every search mapper and by best_uniform):
    budget.latency_us set  ->  maximise the proxy subject to every bound ("max-proxy")
    otherwise              ->  minimise total latency subject to every bound ("min-latency")
Ranking is feasibility first: a feasible assignment beats any infeasible one; two infeasible
ones compare by how far outside the budget they are (Budget.excess); two feasible ones by the
objective.

Mixed precision: a candidate with bits=8 runs the layer on the int8 kernels; an assignment's
latency is its layers' plus the domain changes between them (`conversions`, domains.py).

Infeasible budgets: mappers never raise for them; they flag the plan (meta["feasible"],
meta["violations"], meta["unreachable"]), see feasible.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

from .budget import Budget, Totals
from .cost import CostTable
from .domains import Conversions
from .feasible import InfeasibleBudget, require_feasible  # noqa: F401 (importable here too)
from .layer import LayerSpec
from .plan import Choice, Plan
from .space import DENSE, DENSE_KEY, Candidate, CandidateSpace, why_not
from .unique import repeated

MAX_PROXY = "max-proxy"
MIN_LATENCY = "min-latency"


class Mapper(Protocol):
    """Turns a Problem into a Plan (RuleMapper, EvolutionMapper, RLMapper)."""

    name: str

    def map(self, problem: "Problem") -> Plan:
        ...


@dataclass(frozen=True)
class Rejection:
    """A candidate a layer may not use, and why."""

    layer: str
    key: str
    why: str
    speedup: Optional[float] = None    # dense / candidate latency, when measured

    def __str__(self) -> str:
        return f"{self.key} {self.why}"


class Problem:
    """Layers, their allowed candidates with measured latencies, the proxy and the budget."""

    def __init__(self, target: str, layers: list, candidates: dict, costs: CostTable, proxy,
                 budget: Optional[Budget] = None, min_speedup: float = 1.1,
                 conversions: Optional[Conversions] = None):
        if not layers:
            raise ValueError("Problem needs at least one layer")
        names = [spec.name for spec in layers]
        dup = repeated(names)
        if dup:
            raise ValueError(f"Problem lists layer(s) more than once: {dup}")
        unknown = sorted(set(candidates) - set(names))
        if unknown:
            raise ValueError(f"candidates given for unknown layer(s): {unknown}")
        if not callable(getattr(proxy, "score", None)):
            raise TypeError("proxy must have a score(assignment) method (see mapping.proxy)")
        if isinstance(min_speedup, bool) or not float(min_speedup) >= 1.0:
            # Below 1.0 the filter would admit candidates slower than dense.
            raise ValueError(f"min_speedup must be >= 1.0, got {min_speedup}")
        self.target = target
        self.layers = list(layers)
        self.costs = costs
        self.proxy_fn = proxy
        self.budget = budget if budget is not None else Budget()
        self.min_speedup = float(min_speedup)
        self.conversions = conversions if conversions is not None else Conversions()
        self._spec = {spec.name: spec for spec in self.layers}
        self._dense_us = self._dense_latencies()
        self._allowed: dict = {}
        self._rejected: dict = {}
        self._latency: dict = {}       # layer -> {key: us} for allowed candidates (DENSE too)
        self._space: list = []         # every candidate key offered, first-seen order
        for spec in self.layers:
            self._filter(spec, candidates.get(spec.name, []))

    @classmethod
    def from_space(cls, target: str, layers: list, space: CandidateSpace, costs: CostTable,
                   proxy, budget: Optional[Budget] = None, min_speedup: float = 1.1,
                   conversions: Optional[Conversions] = None) -> "Problem":
        """Candidates = space.for_layer(spec) for every layer."""
        return cls(target, layers, {s.name: space.for_layer(s) for s in layers}, costs, proxy,
                   budget, min_speedup, conversions)

    # -- construction --------------------------------------------------------------------------
    def _dense_latencies(self) -> dict:
        out, missing = {}, []
        for spec in self.layers:
            us = self.costs.dense(self.target, spec.shape_key)
            if us is None:
                missing.append(spec.name)
            out[spec.name] = us
        if missing:
            # Without the dense latency neither the speedup filter nor the totals mean anything.
            raise ValueError(f"dense latency not measured on target {self.target!r} for "
                             f"layer(s) {missing}; run mapping.ensure_costs first")
        return out

    def _filter(self, spec: LayerSpec, cands: list) -> None:
        """Split one layer's candidates into allowed and rejected (with the reason)."""
        dense_us = self._dense_us[spec.name]
        allowed, rejected, seen = [DENSE], [], {DENSE_KEY}
        latency = {DENSE_KEY: dense_us}
        for cand in cands:
            if cand.key in seen:
                continue
            seen.add(cand.key)
            if cand.key not in self._space:
                self._space.append(cand.key)
            why = why_not(spec, cand)
            if why is not None:
                rejected.append(Rejection(spec.name, cand.key, f"not applicable: {why}"))
                continue
            us = self.costs.latency(self.target, spec.shape_key, cand.key)
            if us is None:
                rejected.append(Rejection(spec.name, cand.key,
                                          f"not measured on {self.target}"))
                continue
            speedup = dense_us / us
            # "At least min_speedup": a candidate exactly at the threshold is allowed; the
            # tolerance keeps a measured 1.1000000001 vs 1.1 from flipping on rounding.
            if speedup < self.min_speedup * (1 - 1e-12):
                rejected.append(Rejection(
                    spec.name, cand.key,
                    f"measured {speedup:.2f}x vs dense (< min {self.min_speedup:.2f}x)",
                    speedup))
                continue
            allowed.append(cand)
            latency[cand.key] = us
        self._allowed[spec.name] = allowed
        self._rejected[spec.name] = rejected
        self._latency[spec.name] = latency

    # -- per layer -----------------------------------------------------------------------------
    @property
    def names(self) -> list:
        return [spec.name for spec in self.layers]

    def spec(self, layer: str) -> LayerSpec:
        try:
            return self._spec[layer]
        except KeyError:
            raise KeyError(f"layer {layer!r} is not in the problem") from None

    def allowed(self, layer: str) -> list:
        """DENSE first, then the allowed candidates in the order they were given."""
        self.spec(layer)
        return list(self._allowed[layer])

    def rejected(self, layer: str) -> list:
        """Rejection per candidate the layer may not use."""
        self.spec(layer)
        return list(self._rejected[layer])

    def is_allowed(self, layer: str, cand: Candidate) -> bool:
        return cand.key in self._latency[self.spec(layer).name]

    def dense_latency(self, layer: str) -> float:
        return self._dense_us[self.spec(layer).name]

    def layer_latency(self, layer: str, cand: Candidate) -> float:
        """Measured latency of `cand` on `layer` (DENSE = the table's dense entry)."""
        spec = self.spec(layer)
        us = self._latency[layer].get(cand.key)
        if us is None:
            us = self.costs.latency(self.target, spec.shape_key, cand.key)
        if us is None:
            raise KeyError(f"layer {layer!r}: {cand.key} is not measured on {self.target}")
        return us

    def speedup(self, layer: str, cand: Candidate) -> float:
        return self.dense_latency(layer) / self.layer_latency(layer, cand)

    def pruned_weights(self, layer: str, cand: Candidate) -> float:
        return self.spec(layer).params * cand.sparsity

    def remaining_flops(self, layer: str, cand: Candidate) -> float:
        return self.spec(layer).flops * (1.0 - cand.sparsity)

    def describe(self, layer: str, cand: Candidate) -> str:
        """What a choice is, in the words a reason uses."""
        if not cand.is_dense:
            return f"{cand.key} measured {self.speedup(layer, cand):.2f}x vs dense"
        n = len(self._allowed[layer]) - 1
        if n:
            return f"dense ({n} allowed sparse candidate{'s' if n > 1 else ''} not used)"
        return "dense: " + self.rejection_summary(layer)

    def rejection_summary(self, layer: str, limit: int = 3) -> str:
        """Why a layer has no allowed sparse candidate, fastest rejections first."""
        rej = self._rejected[layer]
        if not rej:
            return "no sparse candidate offered"
        ordered = sorted(rej, key=lambda r: -(r.speedup or 0.0))
        text = "; ".join(str(r) for r in ordered[:limit])
        more = f" (+{len(rej) - limit} more)" if len(rej) > limit else ""
        return f"nothing allowed: {text}{more}"

    # -- totals --------------------------------------------------------------------------------
    @property
    def total_params(self) -> int:
        return sum(spec.params for spec in self.layers)

    @property
    def dense_flops(self) -> float:
        return float(sum(spec.flops for spec in self.layers))

    @property
    def dense_latency_total(self) -> float:
        return float(sum(self._dense_us.values()))

    def dense_assignment(self) -> dict:
        return {name: DENSE for name in self.names}

    def _complete(self, assignment: dict) -> None:
        extra = sorted(set(assignment) - set(self._spec))
        missing = [n for n in self.names if n not in assignment]
        if extra or missing:
            raise ValueError(f"assignment must name every layer of the problem exactly: "
                             f"missing {missing}, unknown {extra}")

    def latency(self, assignment, cand: Optional[Candidate] = None) -> float:
        """latency(layer, cand): one layer's measured latency; latency(assignment): the sum."""
        if isinstance(assignment, str):
            if cand is None:
                raise TypeError("latency(layer, cand) needs a candidate")
            return self.layer_latency(assignment, cand)
        self._complete(assignment)
        return float(sum(self.layer_latency(n, c) for n, c in assignment.items())) + \
            self.conversions.cost_of(assignment)

    @property
    def has_int8(self) -> bool:
        """Whether any layer may run int8."""
        return any(c.is_int8 for n in self.names for c in self._allowed[n])

    def sparsity(self, assignment: dict) -> float:
        self._complete(assignment)
        return sum(self.pruned_weights(n, c) for n, c in assignment.items()) / self.total_params

    def flops(self, assignment: dict) -> float:
        self._complete(assignment)
        return float(sum(self.remaining_flops(n, c) for n, c in assignment.items()))

    def proxy(self, assignment: dict) -> float:
        self._complete(assignment)
        return float(self.proxy_fn.score(dict(assignment)))

    def totals(self, assignment: dict, with_proxy: bool = True) -> Totals:
        return Totals(self.latency(assignment), self.sparsity(assignment),
                      self.flops(assignment),
                      self.proxy(assignment) if with_proxy else None)

    def not_allowed(self, assignment: dict) -> list:
        """One sentence per layer whose candidate is not allowed."""
        out = []
        for name, cand in assignment.items():
            if name in self._spec and not self.is_allowed(name, cand):
                why = next((r.why for r in self._rejected[name] if r.key == cand.key),
                           "not offered for this layer")
                out.append(f"layer {name}: {cand.key} not allowed ({why})")
        return out

    def violations(self, assignment: dict, with_proxy: bool = True) -> list:
        """Everything wrong with an assignment ([] = feasible). The proxy is evaluated only if
        the budget bounds it and with_proxy is set."""
        self._complete(assignment)
        bad = self.not_allowed(assignment)
        if bad:
            return bad
        need_proxy = with_proxy and self.budget.min_proxy is not None
        return self.budget.violations(self.totals(assignment, with_proxy=need_proxy))

    def feasible(self, assignment: dict) -> tuple:
        """(True, "") or (False, why)."""
        v = self.violations(assignment)
        return (not v, "; ".join(v))

    # -- objective -----------------------------------------------------------------------------
    @property
    def objective(self) -> str:
        return MAX_PROXY if self.budget.latency_us is not None else MIN_LATENCY

    @property
    def needs_proxy(self) -> bool:
        """Whether ranking feasible assignments needs the (possibly expensive) proxy."""
        return self.objective == MAX_PROXY or self.budget.min_proxy is not None

    def rank(self, totals: Totals) -> tuple:
        """Sort key, lower is better: feasible first, then the objective (see module doc).
        totals.proxy must be set when `needs_proxy`."""
        excess = self.budget.excess(totals)
        if excess > 0:
            return (1, excess, totals.latency_us)
        if self.objective == MAX_PROXY:
            return (0, -totals.proxy, totals.latency_us)
        # Equal latency: the one that prunes less keeps more accuracy.
        return (0, totals.latency_us, totals.sparsity)

    def bounds(self) -> Totals:
        """Each total at its best over all allowed assignments, taken one total at a time:
        most sparsity, least latency, fewest FLOPs (proxy not bounded)."""
        lat = sp = fl = 0.0
        for spec in self.layers:
            allowed = self._allowed[spec.name]
            lat += min(self._latency[spec.name].values())
            smax = max(c.sparsity for c in allowed)
            sp += spec.params * smax
            fl += spec.flops * (1.0 - smax)
        return Totals(lat, sp / self.total_params, fl, None)

    def unreachable(self) -> list:
        """Bounds no allowed assignment can meet, each with the best that is possible."""
        return [f"unreachable: {v} (the best any allowed assignment reaches)"
                for v in self.budget.violations(self.bounds())]

    def space_keys(self) -> list:
        return list(self._space)

    # -- output --------------------------------------------------------------------------------
    def to_plan(self, assignment: dict, mapper_name: str, reasons: Optional[dict] = None,
                seed: Optional[int] = None, meta: Optional[dict] = None) -> Plan:
        """The Plan for a complete assignment of allowed candidates, with predicted totals and
        feasibility in meta. Refuses a candidate that is not allowed (the guarantee)."""
        self._complete(assignment)
        bad = self.not_allowed(assignment)
        if bad:
            raise ValueError(f"{mapper_name}: refusing to plan candidates that are not "
                             f"allowed: " + "; ".join(bad))
        reasons = reasons or {}
        choices = [self._choice(spec, assignment[spec.name], reasons.get(spec.name))
                   for spec in self.layers]
        totals = self.totals(assignment, with_proxy=True)
        violations = self.budget.violations(totals)
        info = {
            "mapper": mapper_name,
            "objective": self.objective,
            "budget": self.budget.to_dict(),
            "min_speedup": self.min_speedup,
            "feasible": not violations,
            "violations": violations,
            "unreachable": self.unreachable(),
            "predicted": totals.to_dict(),
            "dense": {"latency_us": self.dense_latency_total, "flops": self.dense_flops,
                      "params": self.total_params},
            "predicted_speedup": self.dense_latency_total / totals.latency_us,
            "conversions_us": self.conversions.cost_of(assignment),
            "space": self.space_keys(),
            "seed": seed,
        }
        info.update(meta or {})
        return Plan(self.target, choices, info)

    def _choice(self, spec: LayerSpec, cand: Candidate, reason: Optional[str]) -> Choice:
        m = self.costs.get(self.target, spec.shape_key, cand.key)
        return Choice(
            layer=spec.name,
            scheme=cand.scheme,
            block=cand.block,
            sparsity=cand.sparsity,
            backend=_dense_backend(m) if cand.is_dense else cand.backend,
            kernel=m.kernel if m is not None else "",
            latency_us=self.layer_latency(spec.name, cand),
            dense_latency_us=self.dense_latency(spec.name),
            reason=reason or self.describe(spec.name, cand),
            options=dict(cand.options),
            bits=cand.bits,
        )


def _dense_backend(m) -> str:
    """The backend a DENSE choice runs on: the dense kernel the profiler measured fastest
    ("torch", a native kernel name, or a generated "tir_..." kernel)."""
    kernel = m.kernel if m is not None else ""
    if not kernel or kernel == "torch":
        return "torch"
    return "tir" if kernel.startswith("tir") else "native"
