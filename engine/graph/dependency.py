"""Channel-dependency graph: which channels of which layers must be pruned together.

The model is traced with `torch.fx.symbolic_trace` and run once with `ShapeProp` on the example
inputs. Every channel a conv / linear produces (and every channel of a model input or of an op
we cannot follow) becomes one *element*; each traced tensor carries the list of elements along
its channel dimension. Walking the graph:

- pass-through ops (activations, pooling, dropout, identity, BN) keep the list;
- a depthwise conv keeps it too (its output channel j comes from input channel j // multiplier);
- `flatten` / `view` repeats each element over the flattened positions (H*W for NCHW), which is
  how a linear after a flatten learns that one channel is H*W consecutive input features;
- `torch.cat` on the channel dim concatenates the lists; a slice `x[:, :n]` that keeps every
  channel (GhostNet's ghost modules) keeps the list, one that drops channels blocks them;
- elementwise add / sub / mul / div unions the operands' elements position by position
  (a residual add couples every branch).

Elements joined by a union are one *channel*; producers sharing any channel form one
`ChannelGroup`, whose members are every (module, weight dim) whose indices carry its channels.
A group fed by a model input, reaching the model output, or touched by an op we do not model
(which might mix channels) is marked not prunable, with the reason naming the op.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import CaptureError
from .channel_trace import ChannelTrace, DisjointSets

ROLES = ("producer", "consumer", "depthwise", "norm")


@dataclass(frozen=True)
class GroupMember:
    """One weight dimension of one module whose indices carry channels of a group."""

    module: str                 # fully qualified module name
    dim: int                    # 0: output channels / features (rows), 1: input channels (columns)
    role: str                   # one of ROLES
    index: tuple[int, ...]      # per index along `dim`: the group channel it carries, -1 if none

    def indices_of(self, channels: set[int]) -> list[int]:
        """Indices along `dim` that carry any of `channels`."""
        return [j for j, c in enumerate(self.index) if c in channels]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that must be pruned together, and every layer dimension they appear in."""

    name: str                   # the first producing module (execution order)
    size: int                   # number of channels
    members: tuple[GroupMember, ...]
    prunable: bool
    reasons: tuple[str, ...]    # why not prunable (empty when prunable)


def build_groups(model: nn.Module, example_inputs: tuple) -> list[ChannelGroup]:
    """The coupled channel groups of `model`, in execution order of their first producer.

    `model` is not modified (it is run once in eval mode under no_grad for the shapes).
    """
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # torch.fx raises many types; name the cause
        raise CaptureError(f"torch.fx.symbolic_trace failed on {type(model).__name__}: "
                           f"{type(e).__name__}: {e}") from e
    with evaluating(model), torch.no_grad():
        gm.eval()
        ShapeProp(gm).propagate(*example_inputs)
    return _assemble(ChannelTrace(gm).run())


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode for the block, then restore every module's training flag."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _assemble(trace: ChannelTrace) -> list[ChannelGroup]:
    """The groups of a finished trace: producers sharing any channel are one group, in the
    order of their first producer."""
    by_root = _producer_groups(trace)
    where: dict[int, tuple[int, int]] = {}     # element root -> (group, channel)
    sizes: list[int] = []
    for gi, pids in enumerate(by_root):
        channels: dict[int, int] = {}
        for pid in pids:
            for e in trace.produced[trace.producers[pid]]:
                channels.setdefault(trace.find(e), len(channels))
        for r, c in channels.items():
            where[r] = (gi, c)
        sizes.append(len(channels))
    members: list[list[GroupMember]] = [[] for _ in by_root]
    for (module, dim), (role, elems) in trace.uses.items():
        index: dict[int, list[int]] = {}
        for j, e in enumerate(elems):
            gi, c = where[trace.find(e)]
            index.setdefault(gi, [-1] * len(elems))[j] = c
        for gi, idx in index.items():
            members[gi].append(GroupMember(module, dim, role, tuple(idx)))
    groups = []
    for gi, pids in enumerate(by_root):
        reasons = tuple(dict.fromkeys(r for pid in pids for r in trace.reasons[pid]))
        groups.append(ChannelGroup(trace.producers[pids[0]], sizes[gi], tuple(members[gi]),
                                   not reasons, reasons))
    return groups


def _producer_groups(trace: ChannelTrace) -> list[list[int]]:
    """Producer ids by group: union-find over producers, joined where an element of one is in
    the channel of another's."""
    producers = DisjointSets(len(trace.producers))
    for e in range(len(trace.elements)):
        producers.union(trace.owner[e], trace.owner[trace.find(e)])
    by_root: dict[int, list[int]] = {}
    for pid in range(len(trace.producers)):
        by_root.setdefault(producers.find(pid), []).append(pid)
    return list(by_root.values())


__all__ = ["GroupMember", "ChannelGroup", "build_groups", "evaluating", "ROLES"]
