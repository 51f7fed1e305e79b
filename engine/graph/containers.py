"""Inputs and outputs that are containers of tensors: tuples, lists and dicts of them, and
classes torch's pytree knows, such as transformers' DynamicCache (a decoder's KV cache).

    cache = model(ids, use_cache=True).past_key_values     # DynamicCache: 2 tensors a layer
    optimize(model, (next_id,), example_kwargs={"past_key_values": cache, "use_cache": True})

A container input takes one position of the model's forward() like a tensor; its tensors are
the leaves torch.export flattens it into, in that order, and the artifact's inputs are those
leaves, named by their path ("past_key_values.key_cache.0"). A container is rebuilt from its
leaves for every call (fresh()): a model that updates a cache in place (DynamicCache.update
appends the new key / value) never changes the example the engine measures and verifies with,
nor the user's object.

transformers' DynamicCache is not a pytree node until transformers' own export support
registers it (transformers.integrations.executorch.register_dynamic_cache_export_support);
register_known() does that when such a cache is passed. Other cache classes (StaticCache,
EncoderDecoderCache, ...) are refused with the reason: their update writes into preallocated
tensors, which the engine's capture does not carry.
"""
from __future__ import annotations

import functools

import torch
import torch.utils._pytree as pytree

from ..errors import ConfigError

_DYNAMIC_CACHES = ("DynamicCache",)


def is_container(v) -> bool:
    """A value that is neither a tensor nor a constant setting, that pytree flattens."""
    if isinstance(v, (torch.Tensor, type(None), bool, int, float, str)):
        return False
    register_known(v)
    return not pytree.tree_is_leaf(v)


def register_known(v) -> None:
    """Register the pytree flattening of a known class that does not register itself."""
    cls = type(v)
    if not cls.__module__.startswith("transformers.") or not cls.__name__.endswith("Cache"):
        return
    if cls.__name__ not in _DYNAMIC_CACHES:
        raise ConfigError(f"a transformers {cls.__name__} cannot be an example input: the engine "
                          f"takes a DynamicCache (the default cache: model(ids, use_cache=True)"
                          f".past_key_values), or use_cache=False")
    _check_dynamic_cache(v)
    if cls not in pytree.SUPPORTED_NODES:
        pytree.register_pytree_node(
            cls, _cache_flatten, functools.partial(_cache_unflatten, cls),
            serialized_type_name=f"{cls.__module__}.{cls.__name__}",
            flatten_with_keys_fn=_cache_flatten_with_keys)


def _check_dynamic_cache(c) -> None:
    kinds = {type(layer).__name__ for layer in c.layers}
    if not c.layers or kinds != {"DynamicLayer"} or \
            any(layer.keys is None or layer.keys.numel() == 0 for layer in c.layers):
        raise ConfigError(f"the {type(c).__name__} input holds {len(c.layers)} layer(s) of "
                          f"{sorted(kinds) or 'none'}: the engine takes a cache of DynamicLayers, "
                          f"each holding the keys / values of at least one token (a decode step's "
                          f"cache); for the prompt, pass use_cache=False")


# A DynamicCache as pytree children [keys of every layer, values of every layer]: the same
# leaves, in the same order, as transformers' own registration (key_cache, then value_cache).
# Unflattening sets each layer's tensors directly: transformers' concatenates them onto an empty
# tensor (a copy of the whole cache per call, and a constant that torch.export cannot keep).
def _cache_flatten(c):
    return [[layer.keys for layer in c.layers], [layer.values for layer in c.layers]], None


def _cache_flatten_with_keys(c):
    children, ctx = _cache_flatten(c)
    return [(pytree.MappingKey("key_cache"), children[0]),
            (pytree.MappingKey("value_cache"), children[1])], ctx


def _cache_unflatten(cls, children, ctx):
    keys, values = children
    return dynamic_cache(cls, keys, values)


def dynamic_cache(cls, keys: list, values: list):
    """A `cls` (transformers' DynamicCache) holding the given tensors, without copying them."""
    from transformers.cache_utils import Cache, DynamicLayer
    layers = []
    for k, v in zip(keys, values):
        layer = DynamicLayer()
        layer.keys, layer.values, layer.device, layer.is_initialized = k, v, k.device, True
        layers.append(layer)
    cache = cls.__new__(cls)       # DynamicCache's own __init__ would copy them in (update)
    Cache.__init__(cache, layers=layers)
    return cache


def leaves(v, path: str) -> list:
    """[(name, leaf)] of container v in pytree order, names its path under `path`; a leaf
    that is not a tensor is a ConfigError naming it."""
    flat, _ = pytree.tree_flatten_with_path(v)
    out = []
    for keys, leaf in flat:
        name = ".".join([path] + [key_name(k) for k in keys])
        if not isinstance(leaf, torch.Tensor):
            raise ConfigError(f"input {name!r} is a {type(leaf).__name__}: a container input "
                              f"must hold tensors only")
        out.append((name, leaf))
    return out


def key_name(k) -> str:
    """A pytree key entry as a name: a dict key, a list index or an attribute name."""
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def tensors(v) -> list:
    """v's tensors: [v] for a tensor, a container's leaves, [] for a setting."""
    if isinstance(v, torch.Tensor):
        return [v]
    return pytree.tree_leaves(v) if is_container(v) else []


def fresh(v):
    """A container rebuilt from its leaves (the same tensors, new container objects), so a
    call that updates it in place leaves v as it was; anything else as it is."""
    if not is_container(v):
        return v
    if type(v).__name__ in _DYNAMIC_CACHES:
        keys, values = _cache_flatten(v)[0]
        return dynamic_cache(type(v), keys, values)
    flat, spec = pytree.tree_flatten(v)
    return pytree.tree_unflatten(flat, spec)


def same_structure(a, b) -> bool:
    """Whether container a has b's structure (its tensors may differ in shape)."""
    try:
        return pytree.tree_structure(a) == pytree.tree_structure(b)
    except Exception:  # noqa: BLE001  (an object pytree cannot flatten: not the same)
        return False


def rebuild_like(example, flat: list):
    """A container of example's structure holding the tensors `flat` in order."""
    if type(example).__name__ in _DYNAMIC_CACHES:
        n = len(flat) // 2
        return dynamic_cache(type(example), list(flat[:n]), list(flat[n:]))
    return pytree.tree_unflatten(list(flat), pytree.tree_structure(example))
