"""A model's output structure: its tensors in the order torch.export flattens them, each with a
name, and the structure as JSON, so an artifact can return what the model returns.

    out = BertModel(...)(ids, mask)          # BaseModelOutputWithPooling...
    leaves, tree = flatten_outputs(out)
    leaves  -> [("last_hidden_state", t0), ("pooler_output", t1)]
    tree    -> {"kind": "mapping", "type": "transformers....BaseModelOutputWith...",
                "items": [["last_hidden_state", {"kind": "tensor", "index": 0}], ...]}
    rebuild(tree, [t0, t1])  -> Outputs(last_hidden_state=t0, pooler_output=t1)

Order: tuples / lists in order, dicts and ModelOutputs in insertion order (their non-None
fields, as torch's pytree and transformers' registration flatten them), dataclasses in field
order. Names: "output" for a lone tensor, "output{i}" for a flat tuple (the names artifacts had
before structures), else the path of keys and indices joined by "." ("hidden_states.2").
rebuild() needs neither torch nor the Python class of the model: tuples and lists come back as such, dicts as
dicts, and ModelOutputs / dataclasses as an Outputs (a dict that also answers out.field and
out[0] the way a ModelOutput does); the class's name is recorded under "type".
"""
from __future__ import annotations

import dataclasses

from ..errors import ConfigError


class Outputs(dict):
    """A ModelOutput / dataclass output rebuilt without its class: out["logits"], out.logits,
    out[0] (the i-th field, as ModelOutput indexes) and out.to_tuple() all work."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        return tuple(self.values())


def _is_mapping_output(out) -> bool:
    return isinstance(out, dict) or (dataclasses.is_dataclass(out) and not isinstance(out, type))


def _items(out) -> list:
    if isinstance(out, dict):        # ModelOutput is an OrderedDict of its non-None fields
        return [(k, v) for k, v in out.items() if v is not None]
    return [(f.name, getattr(out, f.name)) for f in dataclasses.fields(out)
            if getattr(out, f.name) is not None]


def flatten_outputs(out) -> tuple:
    """(leaves [(name, tensor)], structure JSON); ConfigError for a value that is neither a
    tensor, a container of them, nor None."""
    import torch   # here: the artifact loader rebuilds structures without torch
    leaves: list = []

    def walk(v, path: tuple):
        if isinstance(v, torch.Tensor):
            leaves.append((path, v))
            return {"kind": "tensor", "index": len(leaves) - 1}
        if v is None:
            return {"kind": "none"}
        if isinstance(v, (tuple, list)):
            return {"kind": "tuple" if isinstance(v, tuple) else "list",
                    "items": [walk(x, path + (str(i),)) for i, x in enumerate(v)]}
        if _is_mapping_output(v):
            node = {"kind": "dict" if type(v) is dict else "mapping",
                    "items": [[str(k), walk(x, path + (str(k),))] for k, x in _items(v)]}
            if type(v) is not dict:
                node["type"] = f"{type(v).__module__}.{type(v).__qualname__}"
            return node
        children = _pytree_children(v)
        if children is not None:    # a class pytree knows (a KV cache): its children by key
            return {"kind": "mapping", "type": f"{type(v).__module__}.{type(v).__qualname__}",
                    "items": [[k, walk(x, path + (k,))] for k, x in children]}
        where = ".".join(path) or "the output"
        raise ConfigError(f"model output {where!r} is a {type(v).__name__}: outputs must be "
                          f"tensors, or tuples / lists / dicts / ModelOutputs / DynamicCaches "
                          f"of them (another transformers cache: pass use_cache=False in "
                          f"example_kwargs)")

    tree = walk(out, ())
    if tree["kind"] == "tensor":
        names = ["output"]
    elif tree["kind"] in ("tuple", "list") and all(i["kind"] == "tensor" for i in tree["items"]):
        names = [f"output{i}" for i in range(len(leaves))]
    else:
        names = [".".join(p) for p, _ in leaves]
    return [(n, t) for n, (_, t) in zip(names, leaves)], tree


def _pytree_children(v):
    """[(key, child)] of an object of a class registered with torch's pytree (transformers'
    DynamicCache once engine.graph.containers registered it), None for any other."""
    from .containers import is_container, key_name
    if not is_container(v):
        return None
    import torch.utils._pytree as pytree
    node = pytree.SUPPORTED_NODES[type(v)]
    if node.flatten_with_keys_fn is not None:
        pairs, _ = node.flatten_with_keys_fn(v)
        return [(key_name(k), x) for k, x in pairs]
    children, _ = node.flatten_fn(v)
    return [(str(i), x) for i, x in enumerate(children)]


def rebuild(tree: dict, leaves: list):
    """The output structure `tree` (flatten_outputs' JSON) holding `leaves` in order."""
    kind = tree["kind"]
    if kind == "tensor":
        return leaves[tree["index"]]
    if kind == "none":
        return None
    if kind in ("tuple", "list"):
        items = [rebuild(t, leaves) for t in tree["items"]]
        return tuple(items) if kind == "tuple" else items
    items = [(k, rebuild(t, leaves)) for k, t in tree["items"]]
    return dict(items) if kind == "dict" else Outputs(items)


def check_structure(tree, n_leaves: int, where: str = "structure") -> None:
    """ValueError unless `tree` is a structure whose tensor indices are exactly 0..n-1."""
    seen: list = []

    def walk(t, path):
        if not isinstance(t, dict) or t.get("kind") not in (
                "tensor", "none", "tuple", "list", "dict", "mapping"):
            raise ValueError(f"{path}: not an output structure node")
        if t["kind"] == "tensor":
            if type(t.get("index")) is not int:
                raise ValueError(f"{path}.index must be an int")
            seen.append(t["index"])
        elif t["kind"] in ("tuple", "list"):
            for i, c in enumerate(_list(t, path)):
                walk(c, f"{path}.items[{i}]")
        elif t["kind"] != "none":
            for i, kv in enumerate(_list(t, path)):
                if not (isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str)):
                    raise ValueError(f"{path}.items[{i}] must be [name, node]")
                walk(kv[1], f"{path}.items[{i}][1]")

    walk(tree, where)
    if sorted(seen) != list(range(n_leaves)):
        raise ValueError(f"{where}: its tensors are {sorted(seen)}, the outputs 0..{n_leaves - 1}")


def _list(t: dict, path: str) -> list:
    items = t.get("items")
    if not isinstance(items, list):
        raise ValueError(f"{path}.items must be a list")
    return items
