"""Inverted-residual blocks in the Relax graph -> one call into the fused block kernel.

`find_blocks` looks, among the layer chains rewrite.find_layers matched, for

    [1x1 conv (+BN, act)] -> depthwise k x k conv (k 3 or 5, stride 1 or 2, padding k/2, +BN,
    act) -> 1x1 conv (+BN) [+ the block's input]

where each intermediate tensor has no other use (MobileNetV2's, MobileNetV3's and
EfficientNet's blocks without squeeze-excitation). `merge_blocks` puts one BlockMatch in place
of each block's layer matches; rewrite_layers then replaces the whole chain by
call_dps_packed("spe.v1.inverted_block", ...) (kernels/tvm/spe_tvm_bridge.cc), whose kernel
keeps the expanded tensor in cache (kernels/src/mobile/). `block_replacement` packs the two 1x1
convs as the plan prunes them (block rows -> group height) or densely, so the per-layer plan
stays the mapper's: fusion changes where a layer runs, not what it computes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..runtime.packing import DENSE_GROUP_ROWS, group_rows_for, pack
from .rewrite import LayerMatch, Replacement, _Graph

BLOCK_EXTERN = "spe.v1.inverted_block"
_ACT = {"none": 0, "relu": 1, "relu6": 2}


@dataclass
class BlockMatch:
    """A fused block in rewrite_layers' terms (input, output, bindings it replaces)."""

    expand: Optional[LayerMatch]
    depthwise: LayerMatch
    project: LayerMatch
    residual_in: bool                   # the project adds the block's input
    x: object = None
    in_shape: tuple = ()
    out_shape: tuple = ()
    anchor: object = None
    absorbed: list = field(default_factory=list)
    residual: object = None             # rewrite_layers' residual slot: the block adds x itself
    op: str = "inverted_block"

    def __post_init__(self):
        first = self.expand or self.depthwise
        self.x, self.in_shape = first.x, first.in_shape
        self.out_shape, self.anchor = self.project.out_shape, self.project.anchor
        for m in self.layers:
            self.absorbed += list(m.absorbed)
            if m is not self.project:
                self.absorbed.append(m.anchor)

    @property
    def layers(self) -> list:
        return [m for m in (self.expand, self.depthwise, self.project) if m is not None]

    @property
    def layer(self) -> str:
        return self.depthwise.layer


def _pointwise(m: Optional[LayerMatch]) -> bool:
    return m is not None and m.op == "conv2d" and m.groups == 1 and \
        m.weight.shape[2:] == (1, 1) and m.stride == (1, 1) and m.padding == (0, 0, 0, 0) and \
        m.dilation == (1, 1)


def _depthwise(m: LayerMatch) -> bool:
    if m.op != "conv2d" or m.residual is not None or m.weight.ndim != 4:
        return False
    c, cg, kh, kw = m.weight.shape
    return cg == 1 and m.groups == c == m.in_shape[1] and kh == kw and kh in (3, 5) and \
        m.stride[0] == m.stride[1] and m.stride[0] in (1, 2) and \
        m.padding == (kh // 2,) * 4 and m.dilation == (1, 1)


def find_blocks(func, params: dict, matches: list) -> list:
    """The (expand or None, depthwise, project) layer matches of every fusable block."""
    g = _Graph(func, params)
    by_anchor = {m.anchor: m for m in matches}
    by_input: dict = {}
    for m in matches:
        by_input.setdefault(m.x, []).append(m)
    found = []
    for d in matches:
        if not _depthwise(d):
            continue
        users = [p for p in by_input.get(d.anchor, []) if _pointwise(p)]
        if len(users) != 1 or g.sole_user(d.anchor) is None or users[0].act != "none":
            continue
        p = users[0]
        e = by_anchor.get(d.x)
        if e is not None and (not _pointwise(e) or e.residual is not None or
                              g.sole_user(e.anchor) is None):
            e = None
        block_in = e.x if e is not None else d.x
        if p.residual is not None and not p.residual.same_as(block_in):
            continue
        found.append((e, d, p))
    return found


def merge_blocks(matches: list, blocks: list) -> list:
    """matches with each block's layer matches replaced by one BlockMatch (at the project's
    place, so the order of the graph is kept)."""
    member = {}
    for e, d, p in blocks:
        bm = BlockMatch(e, d, p, p.residual is not None)
        for m in bm.layers:
            member[id(m)] = bm
    out = []
    for m in matches:
        bm = member.get(id(m))
        if bm is None:
            out.append(m)
        elif m is bm.project:
            out.append(bm)
    return out


def _rows(choice) -> int:
    if choice is not None and choice.pruned:
        return group_rows_for(int(choice.block[0]) if choice.block else 1)
    return DENSE_GROUP_ROWS


def _pointwise_tables(m: Optional[LayerMatch], choice) -> list:
    if m is None:
        z = np.zeros(1, np.int32)
        return [z, z, z, z, np.zeros(1, np.float32), np.zeros(1, np.float32)]
    p = pack(m.weight, _rows(choice))
    bias = m.bias if m.bias is not None else np.zeros(1, np.float32)
    return [p.group_row0, p.group_rows, p.group_ptr.astype(np.int32)
            if p.group_ptr[-1] < 2 ** 31 else p.group_ptr, p.entry_col, p.values,
            np.asarray(bias, np.float32)]


def block_replacement(b: BlockMatch, choices: dict) -> Replacement:
    """call_dps_packed into spe.v1.inverted_block for b, its 1x1 convs packed as `choices`
    (layer -> plan Choice) prune them."""
    e, d, p = b.expand, b.depthwise, b.project
    c, _, k, _ = d.weight.shape
    meta = np.array([b.in_shape[1], c, p.weight.shape[0], k, d.stride[0],
                     _ACT[e.act] if e is not None else 0, _ACT[d.act], int(b.residual_in),
                     int(e is not None), int(e is not None and e.bias is not None),
                     int(d.bias is not None), int(p.bias is not None)], np.int32)
    dw_bias = d.bias if d.bias is not None else np.zeros(1, np.float32)
    tables = [meta, *_pointwise_tables(e, choices.get(e.layer) if e else None),
              np.ascontiguousarray(d.weight.reshape(c, k, k), np.float32),
              np.asarray(dw_bias, np.float32),
              *_pointwise_tables(p, choices.get(p.layer))]
    return Replacement(None, tables, False, extern=BLOCK_EXTERN)


class BlockChooser:
    """rewrite_layers' callback with fused blocks: a BlockMatch gets the fused kernel (each of
    its layers recorded in inner.layers as `record(layer, op, kind, kernel, function, fused,
    stats)`: compile's LayerKernel), anything else goes to `inner` (compile's per-layer
    chooser, whose notes / layers / used this shares)."""

    def __init__(self, inner, choices: dict, record):
        self.inner, self.choices, self.record = inner, choices, record

    def __call__(self, m):
        if not isinstance(m, BlockMatch):
            return self.inner(m)
        rep = block_replacement(m, self.choices)
        for lm in m.layers:
            c = self.choices.get(lm.layer)
            pruned = c is not None and c.pruned
            stats = {"block": m.layer, "pruned": pruned,
                     "density": 1.0 - float(c.sparsity) if pruned else 1.0}
            self.inner.used.add(lm.layer)
            self.inner.layers.append(self.record(lm.layer, lm.op, "native", rep.extern,
                                                 rep.extern, tuple(lm.fused), stats))
        return rep

    def __getattr__(self, name):
        return getattr(self.inner, name)


def with_blocks(enabled: bool, func, params: dict, matches: list, chooser, record) -> tuple:
    """(matches with every fusable block merged, a chooser that compiles them fused), or
    (matches, chooser) as they are when not enabled."""
    if not enabled:
        return matches, chooser
    blocks = find_blocks(func, params, matches)
    return merge_blocks(matches, blocks), BlockChooser(chooser, chooser.choices, record)
