"""Stage "finetune" (optimize(finetune=...)): recover accuracy under the plan's masks, then
take the masks from the trained weights: the same scheme, block and sparsity per layer (so the
latencies measured before training stand), nothing measured again, nothing exported again.
Group schemes (filter / channel) train the shrunk model itself (its layers are dense).

finetune is a dict for the built-in trainer (engine.train: "train" batches of (x, y), "val"
held-out batches, "loss", "teacher": True or a model, and any engine.train.TrainConfig field),
or a callable (model, plan) -> trained model."""
from __future__ import annotations

import copy

from torch import nn

from ..errors import ConfigError
from ..schemes.base import MaskScheme
from .candidates import candidates
from .config import OptimizeConfig
from .decide import decide
from .state import RunState


def finetune(state: RunState) -> None:
    """Train state.work under state.plan; the later stages prune, lower and verify the
    trained model."""
    cfg = state.config
    spec = cfg.finetune
    if isinstance(spec, dict) and "progress" not in spec:
        spec = dict(spec, progress=cfg.progress)     # epoch lines on stderr
    if not isinstance(state.scheme, MaskScheme):
        return _finetune_shrunk(state, spec)
    trained, how = _train(state.work, state.plan, spec)
    for p in trained.parameters():
        p.requires_grad_(False)
    replay = RunState(trained.eval(), state.example_inputs, _replay_config(cfg, state.plan),
                      state.target, work=trained.eval(), scheme=state.scheme,
                      plan_in=state.plan)
    replay.scheme = _replay_scheme()
    candidates(replay)
    decide(replay)
    for name, c in replay.choices.items():  # the latencies measured before training stand
        if name in state.plan:
            old = state.plan[name]
            c.latency_us, c.dense_latency_us, c.reason = (old.latency_us, old.dense_latency_us,
                                                          old.reason)
    state.notes += replay.notes
    state.notes.append(f"fine-tuned with {how}; masks re-derived from the trained weights")
    state.work, state.base, state.layers = trained.eval(), replay.base, replay.layers
    state.candidates, state.choices, state.backends = (replay.candidates, replay.choices,
                                                       replay.backends)
    state.dense_model = copy.deepcopy(state.model).eval()


def _finetune_shrunk(state: RunState, spec) -> None:
    """Group schemes (filter / channel): the physically shrunk model (state.base: its layers
    are dense, nothing to mask) is what gets trained, and what the later stages lower."""
    trained, how = _train(state.base, state.plan, spec, dense=state.work)
    for p in trained.parameters():
        p.requires_grad_(False)
    state.base = trained.eval()
    state.notes.append(f"fine-tuned with {how}: the {state.config.scheme}-pruned (shrunk) "
                       f"model")


def _replay_config(cfg: OptimizeConfig, plan) -> OptimizeConfig:
    """The plan replayed on the trained weights: masks from each layer's plan choice, the
    backend the plan names, nothing timed."""
    out = OptimizeConfig(target=cfg.target, sparsity=cfg.sparsity, threads=cfg.threads,
                         min_speedup=cfg.min_speedup, measure=False, capture=False, plan=plan,
                         isa=cfg.isa, backends=cfg.backends, exclude=cfg.exclude,
                         progress=cfg.progress)
    out.validate()
    return out


def _replay_scheme():
    from ..schemes import get_scheme
    return get_scheme("block", block=(4, 1))


def _train(work: nn.Module, plan, spec, dense: nn.Module = None) -> tuple:
    """(trained model, how it was trained: for the notes). dense: the model teacher=True
    distils from (default: `work`, the full-size model the masks apply to)."""
    if callable(spec) and not isinstance(spec, dict):
        trained = spec(copy.deepcopy(work), copy.deepcopy(plan))
        if not isinstance(trained, nn.Module):
            raise ConfigError(f"finetune callable must return the trained nn.Module, got "
                              f"{type(trained).__name__}")
        return trained, "the user's training callable"
    if not isinstance(spec, dict):
        raise ConfigError(f"finetune must be a dict for engine.train or a callable (model, plan)"
                          f" -> model, got {type(spec).__name__}")
    return _train_builtin(work, plan, dict(spec), work if dense is None else dense)


def _train_builtin(work: nn.Module, plan, spec: dict, dense: nn.Module) -> tuple:
    import torch.nn.functional as F

    from ..train import PruneTrainer, TrainConfig, targets_from_plan
    if "train" not in spec:
        raise ConfigError("finetune dict needs 'train': batches of (x, y)")
    batches, loss = spec.pop("train"), spec.pop("loss", F.cross_entropy)
    val_batches, val = spec.pop("val", None), None
    if val_batches is not None:
        from ..accuracy import accuracy
        val_batches = list(val_batches)

        def val(m):
            return accuracy(m, val_batches)
    teacher = spec.pop("teacher", None)
    teacher = dense if teacher is True else (teacher or None)
    try:
        tcfg = TrainConfig(**spec)
    except TypeError as e:
        raise ConfigError(f"finetune: {e} (see engine.train.TrainConfig)") from None
    trainer = PruneTrainer(work, targets_from_plan(plan), tcfg, teacher=teacher)
    trained = trainer.fit(batches, loss, val=val)
    how = (f"engine.train ({tcfg.epochs} epochs, {tcfg.kind} "
           f"pruning{', distilled' if teacher is not None else ''}"
           + (f", held-out top-1 {trainer.history[-1]['val']:.4f}" if val else "") + ")")
    return trained, how
