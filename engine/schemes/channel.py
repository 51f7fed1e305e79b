"""Filter and channel pruning over coupled channel groups: a physically smaller dense model.

    new_model, record = get_scheme("filter").prune(model, (x,), sparsity=0.5)
    same = replay(fresh_model, record)            # the same cut on another copy of the model

Three steps, three places: engine/graph/dependency.py finds the coupled `ChannelGroup`s, this
file scores each group's channels and picks the lowest ones (the policy), and
engine/graph/shrink.py cuts the layers (the mechanics, run by `replay`).

A group's score per channel is the sum over its scoring members of the importance (default L2)
of that channel's weights in the member: "filter" scores the output filters of the producing
layers (rows of the GEMM view), "channel" the input channels of the consuming layers (columns;
for a linear after a flatten, all H*W features of the channel). Depthwise convs, whose rows are
also their input channels, score in both. Or the scores are given per channel
(`importance=ChannelScores`, e.g. AutoBot's gates: engine/train/autobot.py). Each group prunes round(sparsity * channels) channels,
lowest score first (ties: lower channel index first), keeping at least one channel in every
member. Groups the graph marks not prunable (model input / output, unsupported ops) and groups
touching an excluded module are left alone and listed in the record's "skipped".

The record is plain JSON: per pruned group, the kept channels and, per member (module, weight
dim), the indices kept along that dim. `replay` intersects those per (module, dim) and cuts.
"""
from __future__ import annotations

import copy
import numbers
from abc import ABC
from typing import Any, ClassVar, Iterable, Mapping, Optional, Union

import torch
from torch import nn

from ..errors import ConfigError, SchemeError
from ..graph.inputs import call
from ..graph.dependency import ChannelGroup, GroupMember, build_groups, evaluating
from ..graph.shrink import channel_count, keep_channels
from .base import Importance, check_sparsity, register_scheme
from .importance import ChannelScores, score_units
from .options import reject_unknown

RECORD_FORMAT = "engine.channel-pruning/1"
Sparsity = Union[float, Mapping[str, float]]


class GroupScheme(ABC):
    """A scheme removing whole channels of coupled groups; subclasses pick the scoring members."""

    name: ClassVar[str]
    scoring_roles: ClassVar[frozenset[str]]

    def __init__(self, **unknown: Any) -> None:
        reject_unknown(self.name, unknown, ())

    def describe(self) -> dict:
        return {"scheme": self.name, "scoring": sorted(self.scoring_roles)}

    def prune(self, model: nn.Module, example_inputs: tuple, sparsity: Sparsity,
              importance: Union[str, Importance, None] = None,
              exclude: Iterable[str] = ()) -> tuple[nn.Module, dict]:
        """A new, physically smaller copy of `model` and the JSON record of the cut.

        `sparsity`: one fraction in [0, 1) for every prunable group, or a dict from group name
        (its first producer) or any of its producing modules to a fraction (other groups keep
        every channel). `exclude`: module names (or name prefixes, e.g. "layer4") whose groups
        are not pruned. `model` itself is never modified.
        """
        groups = build_groups(model, example_inputs)
        targets, skipped = _targets(groups, sparsity, _excluded(model, exclude))
        record: dict = {"format": RECORD_FORMAT, "scheme": self.name, "groups": {},
                        "skipped": skipped}
        modules = dict(model.named_modules())
        for g in groups:
            if g.name not in targets:
                continue
            scores = self.channel_scores(modules, g, importance)
            pruned = _choose(g, scores, targets[g.name])
            record["groups"][g.name] = _group_record(g, targets[g.name], pruned)
        new = replay(model, record)
        _check_outputs(model, new, example_inputs)
        return new, record

    def channel_scores(self, modules: Mapping[str, nn.Module], group: ChannelGroup,
                       importance: Union[str, Importance, None] = None) -> torch.Tensor:
        """Score per channel of `group` (float64 [group.size]); higher is kept."""
        if isinstance(importance, ChannelScores):     # precomputed (e.g. AutoBot's gates)
            return importance.group_scores(group)
        weighted = [m for m in group.members if m.role in ("producer", "consumer", "depthwise")]
        scoring = [m for m in weighted if m.role in self.scoring_roles] or weighted
        total = torch.zeros(group.size, dtype=torch.float64)
        for m in scoring:
            channels, scores = _member_scores(modules[m.module].weight, m, importance)
            total.index_add_(0, channels, scores.to(torch.float64))
        return total


@register_scheme
class FilterScheme(GroupScheme):
    """Prune coupled channels scored by the producing layers' output filters (GEMM rows)."""

    name = "filter"
    scoring_roles = frozenset({"producer", "depthwise"})


@register_scheme
class ChannelScheme(GroupScheme):
    """Prune coupled channels scored by the consuming layers' input channels (GEMM columns)."""

    name = "channel"
    scoring_roles = frozenset({"consumer", "depthwise"})


def replay(model: nn.Module, record: Mapping) -> nn.Module:
    """A new copy of `model` cut as `record` says (the model must have the recorded sizes)."""
    if not isinstance(record, Mapping) or record.get("format") != RECORD_FORMAT:
        raise ConfigError(f"not a channel-pruning record (expected format {RECORD_FORMAT!r})")
    plan: dict[tuple[str, int], tuple[int, set[int]]] = {}
    for gname, g in record["groups"].items():
        for m in g["members"]:
            key = (m["module"], int(m["dim"]))
            size, kept = plan.get(key, (int(m["size"]), set(range(int(m["size"])))))
            if size != int(m["size"]):
                raise ConfigError(f"record: {key[0]} dim {key[1]} has sizes {size} and "
                                  f"{m['size']} (group {gname!r})")
            plan[key] = (size, kept & set(m["kept"]))
    new = copy.deepcopy(model)
    for (module, dim), (size, kept) in plan.items():
        try:
            layer = new.get_submodule(module)
        except AttributeError:
            raise ConfigError(f"record names module {module!r}, which the model lacks") from None
        if channel_count(layer, dim) != size:
            raise ConfigError(f"record: {module} dim {dim} has {channel_count(layer, dim)} "
                              f"channels in the model but {size} in the record")
        if len(kept) < size:
            keep_channels(layer, dim, torch.tensor(sorted(kept), dtype=torch.int64))
    return new


# -- policy helpers ----------------------------------------------------------------------------
def _sparsity(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"sparsity must be a number in [0, 1), got {value!r}{where}")
    return check_sparsity(value, where)


def _excluded(model: nn.Module, exclude: Iterable[str]) -> tuple[str, ...]:
    names = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    modules = dict(model.named_modules())
    for n in names:
        if not isinstance(n, str) or n not in modules:
            raise ConfigError(f"exclude: {n!r} is not a module of {type(model).__name__}")
    return names


def _touches(group: ChannelGroup, exclude: tuple[str, ...]) -> Optional[str]:
    for m in group.members:
        for ex in exclude:
            if m.module == ex or m.module.startswith(ex + ".") or ex == "":
                return m.module
    return None


def _targets(groups: list[ChannelGroup], sparsity: Sparsity,
             exclude: tuple[str, ...]) -> tuple[dict[str, float], dict[str, str]]:
    """Sparsity per group to prune, and why each other group is skipped."""
    skipped: dict[str, str] = {}
    for g in groups:
        if not g.prunable:
            skipped[g.name] = "; ".join(g.reasons)
        elif (hit := _touches(g, exclude)) is not None:
            skipped[g.name] = f"excluded ({hit})"
    if not isinstance(sparsity, Mapping):
        s = _sparsity(sparsity, "")
        return {g.name: s for g in groups if g.name not in skipped}, skipped
    by_name: dict[str, ChannelGroup] = {}
    for g in groups:
        by_name[g.name] = g
        for m in g.members:
            if m.role in ("producer", "depthwise"):
                by_name.setdefault(m.module, g)
    targets: dict[str, float] = {}
    for key, value in sparsity.items():
        if key not in by_name:
            prunable = [g.name for g in groups if g.name not in skipped]
            raise ConfigError(f"sparsity: {key!r} names no channel group; prunable groups: "
                              f"{prunable}")
        g = by_name[key]
        s = _sparsity(value, f" for group {g.name!r}")
        if g.name in skipped:
            raise ConfigError(f"sparsity: group {g.name!r} ({key!r}) cannot be pruned: "
                              f"{skipped[g.name]}")
        if targets.get(g.name, s) != s:
            raise ConfigError(f"sparsity: group {g.name!r} given {targets[g.name]} and {s}")
        targets[g.name] = s
    return targets, skipped


def _member_scores(weight: torch.Tensor, member: GroupMember,
                   importance: Union[str, Importance, None]) -> tuple[torch.Tensor, torch.Tensor]:
    """(channels, scores): the importance of each group channel present in `member`, its unit
    being all the member's weights on that channel (e.g. a filter, or a channel's H*W columns)."""
    rows = weight.detach().movedim(member.dim, 0).reshape(weight.shape[member.dim], -1)
    by_channel: dict[int, list[int]] = {}
    for j, c in enumerate(member.index):
        if c >= 0:
            by_channel.setdefault(c, []).append(j)
    channels = sorted(by_channel)
    counts = {len(v) for v in by_channel.values()}
    if len(counts) == 1:    # the usual case: one [n_channels, unit] matrix
        order = torch.tensor([j for c in channels for j in by_channel[c]], dtype=torch.int64)
        units = rows.index_select(0, order).reshape(len(channels), -1)
        scores = score_units(units, importance)
    else:                   # channels repeated unevenly (e.g. cat of a tensor with itself)
        scores = torch.cat([score_units(rows[by_channel[c]].reshape(1, -1), importance)
                            for c in channels])
    return torch.tensor(channels, dtype=torch.int64), scores


def _choose(group: ChannelGroup, scores: torch.Tensor, sparsity: float) -> set[int]:
    """The round(sparsity * size) lowest-scoring channels, lower index first on ties, skipping
    any channel whose removal would leave a member with none of this group's channels."""
    want = min(int(round(sparsity * group.size)), group.size - 1)
    owned = [{c for c in m.index if c >= 0} for m in group.members]
    left = [len(o) for o in owned]
    covers = [[i for i, o in enumerate(owned) if c in o] for c in range(group.size)]
    pruned: set[int] = set()
    for c in torch.sort(scores, stable=True).indices.tolist():
        if len(pruned) >= want:
            break
        if all(left[i] > 1 for i in covers[c]):
            pruned.add(c)
            for i in covers[c]:
                left[i] -= 1
    return pruned


def _group_record(group: ChannelGroup, sparsity: float, pruned: set[int]) -> dict:
    return {
        "channels": group.size,
        "sparsity": sparsity,
        "kept": [c for c in range(group.size) if c not in pruned],
        "members": [{"module": m.module, "dim": m.dim, "role": m.role, "size": len(m.index),
                     "kept": [j for j, c in enumerate(m.index) if c not in pruned]}
                    for m in group.members],
    }


def _shapes(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        return [_shapes(o) for o in out]
    if isinstance(out, Mapping):
        return {k: _shapes(v) for k, v in out.items()}
    return type(out).__name__


def _check_outputs(model: nn.Module, new: nn.Module, example_inputs: tuple) -> None:
    """Postcondition: the cut model runs and its outputs keep their shapes."""
    with torch.no_grad(), evaluating(model), evaluating(new):
        before = _shapes(call(model, example_inputs))
        try:
            after = _shapes(call(new, example_inputs))
        except Exception as e:
            raise SchemeError(f"the pruned model fails to run: {type(e).__name__}: {e}") from e
    if before != after:
        raise SchemeError(f"pruning changed the output shapes from {before} to {after}")


__all__ = ["GroupScheme", "FilterScheme", "ChannelScheme", "replay", "RECORD_FORMAT"]
