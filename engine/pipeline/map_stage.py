"""Stage "map" (optimize(mapper=...)): the mapper's per-layer plan, made from measured costs
(engine.pipeline.automap), which the later stages then replay like plan=...."""
from __future__ import annotations

import itertools

from torch import nn

from mapping import Candidate, Plan
from mapping.space import BLOCKED

from ..errors import ConfigError
from ..schemes.base import MaskScheme
from .automap import MapSettings, map_model
from .budget import check_feasible, no_worse_than_uniform
from .config import OptimizeConfig
from .state import RunState


def map_stage(state: RunState) -> None:
    """state.plan_in, .mapping_problem, .mapped_plan."""
    cfg, mc = state.config, state.config.map
    if not isinstance(state.scheme, MaskScheme):
        raise ConfigError(f"mapper=... chooses per-layer mask schemes; scheme "
                          f"{cfg.scheme!r} prunes whole channels (use mapper=None)")
    data, ft = mc.data, cfg.finetune
    if data is None and isinstance(ft, dict) and ft.get("val") is not None and \
            ft.get("train") is not None:
        # the same data for the mapper's accuracy proxy: BN recalibrated on a few training
        # batches, scored on the held-out ones
        data = (list(itertools.islice(iter(ft["train"]), 8)), list(ft["val"]))
    plan, problem = _map(state.work, state.example_inputs, cfg, state.scheme, dict(
        mapper=mc.mapper, latency_budget_ms=mc.latency_budget_ms, min_proxy=mc.min_proxy,
        data=data, device=mc.device, space=mc.space, costs=mc.costs,
        search_time=mc.search_time, seed=mc.seed, progress=cfg.progress))
    check_feasible(problem, plan, cfg.min_speedup, mc.allow_infeasible, state.notes)
    plan = no_worse_than_uniform(problem, plan, state.notes)
    state.notes.append(mapping_note(plan))
    state.plan_in, state.mapped_plan, state.mapping_problem = plan, plan, problem
    state.timer = getattr(problem, "profiler", None)


def _map(work: nn.Module, example_inputs: tuple, cfg: OptimizeConfig, scheme_obj, kw: dict):
    """(the mapper's Plan, its mapping.Problem); see engine.pipeline.automap."""
    ref_kw = {"block": tuple(cfg.block)} if scheme_obj.name in BLOCKED else {}
    options = tuple(sorted(cfg.scheme_options.items())) if scheme_obj.name == "nm" else ()
    try:
        ref = Candidate(scheme_obj.name, ref_kw.get("block"), cfg.sparsity or 0.5, "native",
                        options)
    except ValueError as e:
        raise ConfigError(f"mapper reference ({cfg.scheme}, block {cfg.block}): {e}") from None
    # every backend that can ship is in the candidate space (a batch-1 linear layer may be
    # faster only as a generated TIR kernel)
    backends = tuple(cfg.backends)
    settings = MapSettings(reference=ref, sparsity=cfg.sparsity if cfg.sparsity > 0 else None,
                           target=cfg.target,
                           min_speedup=cfg.min_speedup, threads=cfg.threads, isa=cfg.isa,
                           backends=backends, exclude=tuple(cfg.exclude),
                           bits=(32, 8) if cfg.bits == "auto" else (32,), **kw)
    return map_model(work, example_inputs, settings)


def mapping_note(plan: Plan) -> str:
    m, pred = plan.meta, plan.meta.get("predicted", {})
    info = m.get("mapping", {})
    txt = (f"mapper {m.get('mapper')}: {len(plan.pruned)} layers pruned, predicted "
           f"{(pred.get('latency_us') or 0) / 1e3:.2f} ms of layer time vs dense "
           f"{(m.get('dense', {}).get('latency_us') or 0) / 1e3:.2f} ms, global sparsity "
           f"{pred.get('sparsity', 0):.3f}, proxy {pred.get('proxy') or 0:.3f} (floor "
           f"{m.get('budget', {}).get('min_proxy')}), "
           f"{'feasible' if m.get('feasible') else 'NOT feasible: ' + '; '.join(m.get('violations', []))}"
           f"; costs {info.get('cost_table')} ({info.get('measurements_taken')} new measurements)")
    return txt
