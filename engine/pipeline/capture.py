"""Stage "capture": the working copy of the user's model, checked to run in eager mode on the
example inputs and (unless capture=False) to be captured by torch.export, which the compile
path needs; every failure names the culprit (source line, aten op). Recurrent layers (nn.LSTM /
nn.GRU / nn.RNN) of the copy are decomposed into prunable linears (engine.graph.recurrent) for
mask schemes; the dense model the result is timed against keeps torch's layers."""
from __future__ import annotations

import copy
import os
import re

import torch
from torch import nn

from ..errors import CaptureError, ConfigError
from ..graph.inputs import call
from ..graph.transposed import decompose_transposed
from ..graph.recurrent import decompose_recurrent, keep_all
from ..schemes.base import MaskScheme
from .state import RunState


def capture(state: RunState) -> None:
    """state.work: an eval-mode copy without gradients (the user's model is never touched),
    its transposed convs as phase convs for a mask scheme (engine.graph.transposed) and its
    recurrent layers decomposed (state.recurrent says which, and why not the others); the
    dense model the guard times against is then the copy as given."""
    work = copy.deepcopy(state.model).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    dry_run(work, state.example_inputs)
    baked = bake_parametrizations(work)
    if baked:
        state.notes.append(f"weight parametrizations (weight_norm, ...) of {len(baked)} "
                           f"layer(s) baked into plain weights in the engine's copy: "
                           f"{', '.join(baked[:4])}{', ...' if len(baked) > 4 else ''}")
    if isinstance(state.scheme, MaskScheme) and any(
            isinstance(m, nn.ConvTranspose2d) for m in work.modules()):
        dense = copy.deepcopy(work)
        state.decomposed = decompose_transposed(work, state.example_inputs)
        if state.decomposed and state.dense_model is None:
            state.dense_model = dense
    _decompose(state, work)
    if state.config.capture:
        export_check(work, state.example_inputs)
    state.work = work


def bake_parametrizations(model: nn.Module) -> list:
    """Every parametrized tensor of `model` (torch.nn.utils.parametrize: weight_norm, spectral
    norm, ...; Wav2Vec2's positional conv) replaced by its value, a plain parameter: for
    inference the weight is a constant, and a mask must land on the weight the layer computes
    with (writing into a parametrized `weight` would change a temporary). Returns the layers."""
    from torch.nn.utils import parametrize
    baked = [(n, m) for n, m in model.named_modules() if parametrize.is_parametrized(m)]
    for _, mod in baked:
        for tensor in list(mod.parametrizations.keys()):
            parametrize.remove_parametrizations(mod, tensor, leave_parametrized=True)
    return [n for n, _ in baked]


def _decompose(state: RunState, work: nn.Module) -> None:
    """Recurrent layers -> linears (engine.graph.recurrent) when the scheme prunes by masks;
    group schemes (filter / channel) do not cut recurrent layers."""
    if not any(isinstance(m, nn.RNNBase) for m in work.modules()):
        return
    if not isinstance(state.scheme, MaskScheme):
        state.recurrent = keep_all(work, f"scheme {state.config.scheme!r} prunes whole "
                                         f"channels and does not cut recurrent layers")
        return
    dense = copy.deepcopy(work)
    state.recurrent = decompose_recurrent(work, state.example_inputs, state.config.exclude)
    if state.recurrent.decomposed and state.dense_model is None:   # timed against torch's own
        state.dense_model = dense
        state.notes.append("recurrent layers decomposed into prunable linears: " + ", ".join(
            f"{n} ({d['kind']}: {', '.join(d['layers'])})"
            for n, d in state.recurrent.decomposed.items()))


def dry_run(model: nn.Module, example_inputs: tuple) -> None:
    """The model must run on its example inputs in eager mode; otherwise the inputs (or the
    model) are wrong, which no capture or pruning step should be left to report."""
    try:
        with torch.no_grad():
            call(model, example_inputs)
    except Exception as e:  # noqa: BLE001  (re-raised naming the inputs and the model's error)
        shapes = ", ".join(
            (str(tuple(t.shape)) + ("" if t.dtype == torch.float32 else f" {t.dtype}"))
            if isinstance(t, torch.Tensor) else repr(t) for t in example_inputs)
        first = (str(e).strip().splitlines() or [""])[0]
        raise ConfigError(f"the model fails on example_inputs of shape {shapes}{culprit(e)}: "
                          f"{type(e).__name__}: {first}") from e


def export_check(model: nn.Module, example_inputs: tuple) -> None:
    """torch.export must capture the model (the compile path needs it); name the culprit."""
    try:
        torch.export.export(model, tuple(example_inputs), getattr(example_inputs, "kwargs", None),
                            strict=False)
    except Exception as e:  # noqa: BLE001  (re-raised with the op / source line named)
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        first = lines[0] if lines else type(e).__name__
        raise CaptureError(f"torch.export could not capture the model{culprit(e)}: "
                           f"{type(e).__name__}: {first}") from e


def culprit(e: BaseException) -> str:
    """' (at file:line in fn: `code`; op aten.x)' from the message or traceback, or ''."""
    import traceback
    text = str(e)
    where = ""
    for m in re.finditer(r'File "([^"]+)", line (\d+), in (\w+)', text):
        if "site-packages" not in m.group(1):
            where = f"{m.group(1)}:{m.group(2)} in {m.group(3)}"
            break
    if not where:
        pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if "site-packages" not in f.filename and not f.filename.startswith(pkg)]
        if frames:
            f = frames[-1]
            where = f"{f.filename}:{f.lineno} in {f.name}" + (f": `{f.line}`" if f.line else "")
    ops = re.findall(r"torch\.ops\.(aten\.\w+)", text)
    parts = ([where] if where else []) + ([f"op {ops[-1]}"] if ops else [])
    return f" (at {'; '.join(parts)})" if parts else ""
