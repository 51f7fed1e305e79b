"""The optimize pipeline: a named list of stages run in order over one RunState.

    capture     eval copy of the model; eager run and torch.export capture checked
    map         (mapper=...) the mapper's per-layer plan from measured costs
    candidates  per-layer masks and kernel group heights (plan, or the one scheme given)
    decide      each layer measured in place: kept sparse only where faster than dense
    budget      (mapper=...) the mapper's sparsity budget still met after the in-place check
    plan        the plan the result runs (choices, target, engine, threads, isa)
    finetune    (finetune=...) train under the masks, masks re-derived from trained weights
    prune       the masked torch model (the numerical reference)
    lower       the host runtime: native / generated kernels with fused epilogues
    quantize    (int8 choices) calibrated on the calibration batches, the int8 layers on the
                int8 kernels (engine.pipeline.int8)
    verify      outputs of the result against the masked reference (int8: its simulation)
    check guard layers the in-place check kept dense: the checked result against the plan as
                mapped, end to end, the faster kept (engine.pipeline.check_guard)
    int8 guard  (int8 choices) the result against its fp32 twin end to end (engine.pipeline.int8)
    guard       the result timed end to end against the dense model: not faster, the dense
                configuration is returned instead (guard="keep"; "warn", "off")

Compiling for the target and writing the artifact are the result's (opt.compile / opt.save),
run on demand. A stage is one function of the state; `STAGES` names them, and a name appears
once."""
from __future__ import annotations

from typing import Callable

from mapping import Plan

from .._version import __version__
from ..errors import ConfigError
from ..graph.inputs import check_inputs
from ..lowering import fuse_blocks, lower
from ..runtime import native
from ..schemes import get_scheme
from ..targets import get_target
from ..targets.toolchain import host_arch
from .budget import check_in_place
from .candidates import candidates, kept_as_is, masked_copy, scheme_kwargs
from .capture import capture
from .check_guard import check_guard
from .config import OptimizeConfig
from .decide import decide
from .finetune import finetune
from .guard import guard
from .int8 import assign_bits, int8_guard, quantize_stage
from .map_stage import map_stage
from .result import OptimizedModel
from .state import RunState
from .verify import verify


def make_plan(state: RunState) -> None:
    cfg, meta = state.config, dict(state.plan.meta) if state.plan is not None else None
    state.plan = Plan(state.target.name, [state.choices[l.name] for l in state.layers], meta or {
        "engine": __version__, "scheme": state.scheme.describe(), "sparsity": cfg.sparsity,
        "min_speedup": cfg.min_speedup, "threads": native.get_threads(),
        "isa": native.best_isa() if cfg.isa == "auto" else cfg.isa})
    # every weight layer the engine does not prune, with why (engine.graph.weights)
    state.plan.meta["other_layers"] = state.other_layers
    if state.decomposed:     # the user's ConvTranspose2d layers -> the phase convs listed
        state.plan.meta["decomposed"] = {
            name: {"kind": "ConvTranspose2d", "layers": subs, "as": "stride-1 phase convs, "
                   "outputs interleaved (engine.graph.transposed)"}
            for name, subs in state.decomposed.items()}
    if state.recurrent is not None:   # recurrent layers: layer names -> torch's weight names
        state.plan.meta["recurrent"] = state.recurrent.to_meta()


def candidates_and_bits(state: RunState) -> None:
    candidates(state)
    if state.config.bits != 32 or (state.plan_in is not None and state.plan_in.int8):
        assign_bits(state)       # int8 choices (engine.pipeline.int8)


def prune(state: RunState) -> None:
    masks = {n: state.candidates[n][0] for n, c in state.choices.items() if c.pruned}
    state.pruned_model = masked_copy(state.base, masks)


def lower_stage(state: RunState) -> None:
    state.lowered = lower(state.pruned_model, state.backends, state.config.isa,
                          keep=kept_as_is(state))
    if not state.lowered.traced:
        if state.lowered.note not in state.notes:   # decide's probe may have said it already
            state.notes.append(state.lowered.note)
    else:  # inverted-residual blocks of native layers: fused where it measures faster
        fuse_blocks(state.lowered.module, state.config.isa)


def _finetune_and_replan(state: RunState) -> None:
    finetune(state)
    make_plan(state)


# (name, stage, runs when): the order is the pipeline
STAGES: tuple = (
    ("capture", capture, lambda s: True),
    ("map", map_stage, lambda s: s.config.map is not None),
    ("candidates", candidates_and_bits, lambda s: True),
    ("decide", decide, lambda s: True),
    ("budget", check_in_place, lambda s: s.mapped_plan is not None and s.config.measure),
    ("plan", make_plan, lambda s: True),
    ("finetune", _finetune_and_replan, lambda s: s.config.finetune is not None),
    ("prune", prune, lambda s: True),
    ("lower", lower_stage, lambda s: True),
    ("quantize", quantize_stage, lambda s: any(c.bits == 8 for c in s.choices.values())),
)
assert len({name for name, _, _ in STAGES}) == len(STAGES), "stage names must be unique"


def run(model, example_inputs, config: OptimizeConfig,
        on_stage: Callable[[str], None] = None, example_kwargs=None) -> OptimizedModel:
    """Validate `config`, run the stages, verify, return the OptimizedModel. example_kwargs:
    keyword inputs, bound to forward()'s positions (engine.graph.inputs)."""
    config.validate()
    state = RunState(model, check_inputs(model, example_inputs, example_kwargs), config,
                     get_target(config.target), plan_in=config.plan)
    _setup_kernels(config)
    on_device = config.map is not None and config.map.device not in (None, "artifact")
    if not state.target.is_host and not on_device:
        state.notes.append(f"plan measured on this host ({host_arch()}) as a proxy for target "
                           f"{state.target.name!r}; opt.save() compiles for "
                           f"{state.target.name!r}")
    state.scheme = get_scheme(config.scheme, **scheme_kwargs(config))
    for name, stage, when in STAGES:
        if when(state):
            if on_stage is not None:
                on_stage(name)
            stage(state)
    opt = OptimizedModel(state.lowered.module, state.pruned_model, state.plan, state.layers,
                         state.example_inputs, config, state.notes)
    opt._dense = state.dense_model if state.dense_model is not None else state.work
    opt.mapping = state.mapping_problem
    if state.mapped_plan is not None:
        opt.plan.meta["mapping"] = state.mapped_plan.meta
    if state.int8 is not None:
        opt.plan.meta["int8"] = state.int8
        opt.reference = state.reference
    verify(state, opt)
    opt = check_guard(state, opt, lambda cfg: run(model, state.example_inputs, cfg))
    return guard(state, int8_guard(state, opt))


def _setup_kernels(cfg: OptimizeConfig) -> None:
    k = native.lib()
    if cfg.threads is not None:
        k.set_num_threads(cfg.threads)
    if cfg.isa != "auto" and not k.isa_available(cfg.isa):
        raise ConfigError(f"isa {cfg.isa!r} is not available on this CPU/build; "
                          f"available: {k.available_isas()}")
