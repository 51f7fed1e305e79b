"""Validation of a model and its example inputs, shared by optimize() and the compiler path,
and the binding of a call's inputs to the ones the model was optimized with.

A model takes its inputs as positional tensors (`example_inputs`) and, optionally, keyword ones
(`example_kwargs`: BERT's attention_mask, GPT-2's use_cache=False). Keyword TENSORS are bound to
their positions in the model's forward() signature, so the engine carries one positional tuple
of tensors through every stage, torch.export and the compiled artifact:

    forward(input_ids, attention_mask=None, token_type_ids=None, ...)
    example_inputs=(ids,), example_kwargs={"token_type_ids": tt}  ->  (ids, None, tt)

A parameter skipped between two given ones takes its default. A keyword value that is not a
tensor (None, bool, int, float, str) is a setting: it stays a keyword (ModelInputs.kwargs; a
decorator such as transformers' merge_with_config_defaults fills settings in as keywords, so
passing them by position would collide), is captured as a constant, baked into the artifact,
and applied by opt(...) when a call does not give it. A keyword tensor forward() takes only as
a keyword (after `*` or into `**kwargs`) has no position in the artifact and is refused.

Input tensors: CPU, non-empty; float32 / float16 / bfloat16 (finite) or integer / bool (token
ids, masks). float64 is refused: the kernels compute in float32.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from ..errors import ConfigError, InputError
from .containers import fresh, is_container, leaves, same_structure
from .containers import tensors as _leaf_tensors

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)
CONSTANT_TYPES = (type(None), bool, int, float, str)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class ModelInputs(tuple):
    """The example inputs: a tuple of positional values (tensors, or None / settings between
    them) and `.kwargs`, the settings passed as keywords. call(model, inputs) runs a model."""

    kwargs: dict

    def __new__(cls, args, kwargs=None):
        obj = super().__new__(cls, args)
        obj.kwargs = dict(kwargs or {})
        return obj

    def __reduce__(self):
        return (ModelInputs, (tuple(self), self.kwargs))

    def __deepcopy__(self, memo):
        import copy
        return ModelInputs(copy.deepcopy(tuple(self), memo), copy.deepcopy(self.kwargs, memo))

    @property
    def tensors(self) -> tuple:
        """The input tensors in torch.export's order (a container's leaves in its place)."""
        return tuple(t for v in self for t in _leaf_tensors(v))


def is_input(v) -> bool:
    """A tensor or a container of tensors (engine.graph.containers): an input, not a setting."""
    return isinstance(v, torch.Tensor) or is_container(v)


def call(model, inputs, rebuild: bool = True):
    """model(*inputs, **settings): how every stage runs a model on its example inputs. A
    container input (a KV cache) is rebuilt for the call (an in-place update stays in the
    copy), unless `rebuild` is False: a user's call updates the user's cache as torch would."""
    args = [fresh(v) for v in inputs] if rebuild else list(inputs)
    return model(*args, **getattr(inputs, "kwargs", {}))


def run_hooked(model, inputs, handles: list) -> None:
    """Run `model` once on `inputs` (call(), no grad) for the hooks `handles` registered,
    then remove them, whatever the run raised."""
    try:
        with torch.no_grad():
            call(model, inputs)
    finally:
        for h in handles:
            h.remove()


def check_inputs(model, example_inputs, example_kwargs=None) -> tuple:
    """The example inputs as one positional tuple (keywords bound to their positions); each
    tensor a non-empty CPU tensor of a supported dtype. ConfigError naming the problem."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if example_kwargs is not None and not isinstance(example_kwargs, dict):
        raise ConfigError(f"example_kwargs must be a dict of keyword inputs, got "
                          f"{type(example_kwargs).__name__}")
    kwargs = dict(example_kwargs or {})
    if not isinstance(example_inputs, (tuple, list)) or (not example_inputs and not kwargs):
        raise ConfigError("example_inputs must be a non-empty tuple of tensors, e.g. (x,)")
    for i, t in enumerate(example_inputs):
        if isinstance(t, (type(None), bool, int, float)):
            continue       # a positional setting: forward(ids, None, token_type_ids)
        if is_container(t):
            for name, leaf in leaves(t, f"example_inputs[{i}]"):
                _check_tensor(name, leaf)
            continue
        if not isinstance(t, torch.Tensor):
            raise ConfigError(f"example_inputs[{i}] is {type(t).__name__}, expected a Tensor "
                              f"(or None / a bool / int / float setting)")
        _check_tensor(f"example_inputs[{i}]", t)
    for k, v in kwargs.items():
        if not isinstance(k, str):
            raise ConfigError(f"example_kwargs keys must be parameter names, got {k!r}")
        if isinstance(v, torch.Tensor):
            _check_tensor(f"example_kwargs[{k!r}]", v)
        elif is_container(v):
            for name, leaf in leaves(v, f"example_kwargs[{k!r}]"):
                _check_tensor(name, leaf)
        elif not isinstance(v, CONSTANT_TYPES):
            raise ConfigError(f"example_kwargs[{k!r}] is {type(v).__name__}: a keyword input is "
                              f"a tensor, a container of tensors (tuple, list, dict, a "
                              f"DynamicCache) or a constant setting (None, bool, int, float, "
                              f"str)")
    if isinstance(example_inputs, ModelInputs):
        kwargs = {**example_inputs.kwargs, **kwargs}
    bound, settings = tuple(example_inputs), {}
    if kwargs:
        bound, settings = bind(model, bound, kwargs, lambda i, p: p.default, "example_kwargs")
    if not any(is_input(v) for v in bound):
        raise ConfigError("the example inputs hold no tensor: give at least one input tensor")
    # containers held as the engine's own objects: a user's later decode step that updates
    # their cache in place does not change the example the model was optimized with
    return ModelInputs(tuple(fresh(v) for v in bound), settings)


def _check_tensor(what: str, t: torch.Tensor) -> None:
    if t.device.type != "cpu":
        raise ConfigError(f"{what} must be a CPU tensor, got one on {t.device}")
    if t.dtype not in FLOAT_DTYPES + INT_DTYPES:
        raise ConfigError(f"{what} must be a float32, float16 or bfloat16 tensor, or an integer "
                          f"/ bool one (ids, masks), got {t.dtype}"
                          + (": the kernels compute in float32; pass x.float() and a float32 "
                             "model" if t.dtype == torch.float64 else ""))
    if t.numel() == 0:
        raise ConfigError(f"{what} is empty (shape {tuple(t.shape)}): layers are measured and "
                          f"outputs verified on it; give a batch of at least 1")
    if not t.is_floating_point():
        return
    if t.layout != torch.strided:    # a sparse input (a graph's adjacency): its stored values
        t = t._values() if t.layout == torch.sparse_coo else t.values()
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        what_bad = " and ".join(w for w, n in (("NaN", n_nan), ("Inf", n_inf)) if n)
        raise ConfigError(f"{what} holds {what_bad} ({n_nan} NaN, {n_inf} Inf of {t.numel()} "
                          f"values): outputs are verified on it; pass real data or torch.randn "
                          f"of the input shape")


def forward_params(model: nn.Module) -> list:
    """forward()'s parameters (without self), [] when it has no inspectable signature."""
    try:
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return []


def bind(model: nn.Module, args: tuple, kwargs: dict, fill, what: str,
         error=ConfigError) -> tuple:
    """(positional tuple, keyword settings): `args`, then every tensor of `kwargs` at its
    position in forward() (a skipped parameter i takes fill(i, parameter)); a setting stays a
    keyword unless its position falls inside the tuple. `error` names the problem (a tensor
    forward() takes only as a keyword, an input given twice, no default for a gap)."""
    params = forward_params(model)
    positional = [p for p in params if p.kind in _POSITIONAL]
    index = {p.name: i for i, p in enumerate(positional)}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params)
    slots = dict(enumerate(args))
    settings = {}
    for k, v in kwargs.items():
        if k in index and index[k] in slots:
            raise error(f"{what}[{k!r}]: input {index[k]} of forward() is given twice, by "
                        f"position and as {k!r}")
        if not is_input(v):
            if k not in index and not var_kw and all(p.name != k for p in params):
                raise error(f"{what}[{k!r}] is not a parameter of {type(model).__name__}"
                            f".forward(): {[p.name for p in params]}")
            settings[k] = v
            continue
        if k not in index:
            known = [p.name for p in positional]
            why = ("is not a parameter of" if all(p.name != k for p in params) else
                   "is keyword-only in")
            raise error(f"{what}[{k!r}] {why} {type(model).__name__}.forward(): the engine "
                        f"binds keyword tensors to forward()'s positional parameters {known}")
        slots[index[k]] = v
    n = max(slots) + 1 if slots else 0
    if n > len(positional) and not any(p.kind == p.VAR_POSITIONAL for p in params):
        raise error(f"{type(model).__name__}.forward() takes {len(positional)} input(s) "
                    f"{[p.name for p in positional]}, got {n}")
    for k in [k for k in settings if k in index and index[k] < n]:
        slots[index[k]] = settings.pop(k)     # inside the tuple: by position
    out = []
    for i in range(n):
        if i in slots:
            out.append(slots[i])
            continue
        p = positional[i]
        v = fill(i, p)
        if v is inspect.Parameter.empty:
            raise error(f"forward()'s parameter {p.name!r} (input {i}) has no default and is "
                        f"not given: pass it in example_inputs or {what}")
        out.append(v)
    return tuple(out), settings


def input_names(model: nn.Module, n: int) -> list:
    """Names of the first n positional inputs (forward()'s parameters; input{i} beyond them)."""
    positional = [p.name for p in forward_params(model) if p.kind in _POSITIONAL]
    return [positional[i] if i < len(positional) else f"input{i}" for i in range(n)]


def bind_call(model: nn.Module, example: tuple, args: tuple, kwargs: dict) -> ModelInputs:
    """A call's inputs as the example's form: keyword tensors at their positions as in
    optimize(), the example's settings (use_cache=False) kept where the call does not give
    them, and every input that was a tensor in the example a tensor of its dtype now.
    InputError naming the input otherwise (shapes may differ: the host runtime takes any)."""
    settings = dict(getattr(example, "kwargs", {}))
    if kwargs:
        def fill(i, p):
            if i < len(example) and not is_input(example[i]):
                return example[i]
            return p.default
        args, given = bind(model, tuple(args), kwargs, fill, "input", InputError)
        settings.update(given)
    names = None
    if len(args) < len(example):
        for i in range(len(args), len(example)):
            if is_input(example[i]):
                names = input_names(model, len(example))
                raise InputError(f"input {i} {names[i]!r} is missing: the model was optimized "
                                 f"with the inputs {_describe(names, example)}")
        args = tuple(args) + tuple(example[len(args):])
    if len(args) > len(example) and any(a is not None for a in args[len(example):]):
        names = input_names(model, len(args))
        raise InputError(f"{len(args)} inputs given ({names}); the model was optimized with "
                         f"{len(example)}: {_describe(names, example)}")
    for i, (a, e) in enumerate(zip(args, example)):
        if is_container(e):
            _check_container(model, i, a, e, example)
            continue
        if not isinstance(e, torch.Tensor):
            continue
        if not isinstance(a, torch.Tensor):
            names = names or input_names(model, len(example))
            raise InputError(f"input {i} {names[i]!r} is {type(a).__name__}; the model was "
                             f"optimized with a {e.dtype} tensor there (example inputs: "
                             f"{_describe(names, example)})")
        if a.dtype != e.dtype:
            names = names or input_names(model, len(example))
            raise InputError(f"input {i} {names[i]!r} is {a.dtype}, but the model was optimized "
                             f"for {e.dtype} (example inputs: {_describe(names, example)})")
        if a.layout != torch.strided and e.layout == torch.strided:
            names = names or input_names(model, len(example))
            raise InputError(f"input {i} {names[i]!r} is a {a.layout} tensor, but the model was "
                             f"optimized with a dense one there: the kernels read dense inputs")
    return ModelInputs(args, settings)


def _check_container(model, i: int, a, e, example) -> None:
    """Input i, a container in the example, is one of the same structure and leaf dtypes."""
    names = input_names(model, len(example))
    if not same_structure(a, e):
        raise InputError(f"input {i} {names[i]!r} is a {type(a).__name__} not structured like "
                         f"the example's {type(e).__name__} (example inputs: "
                         f"{_describe(names, example)})")
    for (leaf_name, x), (_, y) in zip(leaves(a, names[i]), leaves(e, names[i])):
        if x.dtype != y.dtype:
            raise InputError(f"input {leaf_name!r} is {x.dtype}, but the model was optimized "
                             f"for {y.dtype}")


def _describe(names: list, example: tuple) -> str:
    def one(n, e):
        if is_container(e):
            return f"{n}: {type(e).__name__} of {len(_leaf_tensors(e))} tensors"
        return f"{n}: {str(e.dtype).replace('torch.', '')}{list(e.shape)}"
    return ", ".join(one(n, e) for n, e in zip(names, example) if is_input(e))
