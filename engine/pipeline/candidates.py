"""Stage "candidates": per layer, the mask the plan (or the one scheme optimize() was given)
asks for and the kernel group height it runs with, and a Choice for every layer saying what
happens to it and why (excluded, grouped, scheme does not fit, sparsity 0, ...).

Group schemes (filter / channel) instead shrink the model physically; its layers are then
candidates for the native dense kernel only."""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from mapping import Choice, Plan
from mapping.plan import DENSE
from mapping.space import BLOCKED

from ..errors import ConfigError
from ..graph.layers import custom_forward, gemm_weight, get_module, list_layers
from ..graph.weights import other_weight_layers, shared_weight
from ..runtime.dense import dense_algo
from ..runtime.packing import DENSE_TIR_ROWS, dense_rows, group_rows_for
from ..schemes import apply_mask, get_scheme
from ..schemes.base import MaskScheme
from ..schemes.options import candidate_options
from .config import SPARSE_BACKENDS, OptimizeConfig
from .state import RunState


def candidates(state: RunState) -> None:
    """state.base, .layers, .candidates, .choices."""
    cfg = state.config
    base = state.work
    if isinstance(state.scheme, MaskScheme):
        state.layers = list_layers(base, state.example_inputs)
        check_exclude(cfg.exclude, state.layers, _kept_recurrent(state))
        state.candidates, state.choices = mask_candidates(base, state.layers, state.scheme,
                                                          cfg, state.plan_in)
    else:
        base = _shrink(state)
    state.base = base
    state.other_layers = other_weight_layers(base, state.layers, _kept_recurrent(state))


def _kept_recurrent(state: RunState) -> dict:
    """Recurrent modules kept as torch's (name -> reason; engine.graph.recurrent)."""
    return dict(state.recurrent.kept) if state.recurrent is not None else {}


def _shrink(state: RunState) -> nn.Module:
    """Group scheme: a physically smaller dense model, its layers candidates for the native
    dense kernel (grouped convs stay as they are)."""
    cfg = state.config
    base, record = state.scheme.prune(state.work, state.example_inputs, cfg.sparsity,
                                      cfg.importance, cfg.exclude)
    state.notes.append(f"{cfg.scheme} pruning record: {len(record.get('groups', {}))} groups "
                       f"cut, {len(record.get('skipped', {}))} skipped")
    state.layers = list_layers(base, state.example_inputs)
    for info in state.layers:
        w = gemm_weight(get_module(base, info.name)).detach()
        state.candidates[info.name] = (torch.ones_like(w, dtype=torch.bool),
                                       dense_rows(info.groups))
        why = (f"grouped/depthwise conv (groups={info.groups}): not pruned" if info.groups != 1
               else f"layer shrunk by {cfg.scheme} pruning")
        state.choices[info.name] = Choice(info.name, DENSE if info.groups != 1 else cfg.scheme,
                                          None, 0.0, "native", reason=why)
    return base


def scheme_kwargs(cfg: OptimizeConfig) -> dict:
    kw = dict(cfg.scheme_options)
    if cfg.scheme in BLOCKED:
        kw.setdefault("block", cfg.block)
    return kw


def blk(block) -> str:
    return "x".join(map(str, block)) if block else ""


def check_exclude(exclude: tuple, layers: list, modules=()) -> None:
    """Each name of `exclude` is a layer, a prefix of layers, or one of `modules` (recurrent
    modules kept whole, engine.graph.recurrent)."""
    names = {l.name for l in layers} | set(modules)
    for e in exclude:
        if e not in names and not any(n.startswith(e + ".") for n in names):
            raise ConfigError(f"exclude names {e!r}, which is not a conv/linear/recurrent "
                              f"layer of the model (layers: {sorted(names)[:8]}...)")


def excluded(name: str, exclude: tuple) -> bool:
    return any(name == e or name.startswith(e + ".") for e in exclude)


def left_alone(model, name: str, exclude: tuple) -> Optional[str]:
    """Why layer `name` stays the model's own module (never measured, pruned or lowered):
    excluded by the user, or a subclass computing something of its own; else None."""
    if excluded(name, exclude):
        return "excluded by the user"
    return custom_forward(get_module(model, name))


def kept_as_is(state: RunState) -> set:
    """The layers the lowering leaves as the model's own modules (left_alone)."""
    return {l.name for l in state.layers
            if left_alone(state.base, l.name, state.config.exclude) is not None}


def mask_candidates(model, layers, scheme: MaskScheme, cfg: OptimizeConfig,
                    plan: Optional[Plan]):
    """Per layer: (mask, group rows) for layers the scheme can prune, and a Choice for all."""
    candidates, choices = {}, {}
    fits = 0
    for info in layers:
        given = plan[info.name] if plan is not None and info.name in plan else None
        if given is not None and not given.pruned:
            choices[info.name] = _kept_dense(model, info, given, cfg, candidates)
            continue
        sch, sparsity, given_reason = scheme, cfg.sparsity, ""
        if given is not None:
            sch, sparsity = get_scheme(given.scheme, **candidate_options(given)), given.sparsity
            given_reason = given.reason.split("; ")[0]
        # the backend a given plan names is replayed when measure=False
        backend = given.backend if given is not None and given.backend in SPARSE_BACKENDS \
            else "native"
        # the scheme's options go into the plan (a replay must build the same masks)
        options = dict(given.options) if given is not None else \
            {k: v for k, v in cfg.scheme_options.items() if k != "block"}
        ch = choices[info.name] = Choice(info.name, sch.name,
                                         sch.block if sch.name in BLOCKED else None, sparsity,
                                         backend, options=options)
        if _not_pruned(model, info, sch, sparsity, cfg, ch, candidates):
            continue
        fits += 1
        w = gemm_weight(get_module(model, info.name)).detach()
        mask = sch.mask(w, None if sch.name == "nm" else sparsity, cfg.importance)
        ch.sparsity = 1.0 - mask.float().mean().item()
        rows = sch.block[0] if sch.name in BLOCKED else 1
        candidates[info.name] = (mask, group_rows_for(rows) if rows <= 8 else rows)
        ch.reason = f"{sch.name} {blk(ch.block)} at {ch.sparsity:.0%}".replace("  ", " ")
        if given_reason:
            ch.reason = f"plan: {given_reason}"
    if fits == 0 and layers and cfg.sparsity > 0 and plan is None:
        why = "; ".join(sorted({c.reason for c in choices.values()})[:3])
        raise ConfigError(f"scheme {cfg.scheme!r} with block {blk(cfg.block)} fits no layer "
                          f"of the model ({why})")
    return candidates, choices


def _kept_dense(model, info, given: Choice, cfg: OptimizeConfig, candidates: dict) -> Choice:
    """A layer the plan keeps dense: on the dense native kernel when the plan measured that
    fastest (replayed when measure=False; measured again otherwise), else in torch."""
    ch = Choice(info.name, DENSE, reason=f"plan: {given.reason}")
    if given.backend in SPARSE_BACKENDS and left_alone(model, info.name, cfg.exclude) is None:
        w = gemm_weight(get_module(model, info.name)).detach()
        generated = (given.backend == "tir" and given.kernel.startswith("tir_")
                     and info.groups == 1)             # the generated dense kernel
        candidates[info.name] = (torch.ones_like(w, dtype=torch.bool),
                                 DENSE_TIR_ROWS if generated else dense_rows(info.groups))
        ch.backend = "tir" if generated else "native"
        if generated or dense_algo(given.kernel) is not None:   # the dense kernel it measured
            ch.kernel = given.kernel
    return ch


def _not_pruned(model, info, sch, sparsity: float, cfg: OptimizeConfig, ch: Choice,
                candidates: dict) -> bool:
    """True (and `ch` says why) when the layer is not pruned: excluded, grouped (then a
    candidate for the native dense kernel: depthwise convs the direct depthwise kernel, other
    grouped convs the block-diagonal SpMM pack), the scheme does not fit, or sparsity 0."""
    alone = left_alone(model, info.name, cfg.exclude)
    if info.groups != 1 and alone is None:
        w = gemm_weight(get_module(model, info.name)).detach()
        candidates[info.name] = (torch.ones_like(w, dtype=torch.bool), dense_rows(info.groups))
        ch.scheme, ch.block, ch.sparsity = DENSE, None, 0.0
        ch.reason = f"grouped/depthwise conv (groups={info.groups}): not pruned"
        return True
    reason = alone if alone is not None else sch.check(info) or _tied(model, info.name)
    if reason is None and sparsity == 0.0:
        reason = "sparsity 0"
    if reason is None:
        return False
    ch.scheme, ch.block, ch.sparsity, ch.backend, ch.reason = DENSE, None, 0.0, "torch", reason
    return True


def _tied(model, name: str):
    other = shared_weight(model, name)
    return (f"weight shared with {other!r} (tied): pruning it would change that layer too; "
            f"left dense") if other else None


def masked_copy(model: nn.Module, masks: dict) -> nn.Module:
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, mask in masks.items():
            w = gemm_weight(get_module(out, name))
            w.copy_(apply_mask(w, mask))
    return out
