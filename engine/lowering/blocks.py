"""Lowering pass: inverted-residual blocks of lowered layers -> one fused block module.

After engine.lowering.host has replaced every layer, a block is the chain

    [SparseConv2d 1x1] -> DepthwiseConv2d -> SparseConv2d 1x1 (act none) [-> add(block input)]

with every intermediate used once (MobileNetV2's blocks, when the plan runs their layers on
the native kernels). Each becomes an engine.runtime.blocks.InvertedBlock holding the three
layers, which runs the fused kernel for the input shapes where it measures faster. The plan is
untouched: the block runs the layers' own packed weights.
"""
from __future__ import annotations

from typing import Optional

from torch import fx

from ..runtime.blocks import InvertedBlock
from ..runtime.modules import DepthwiseConv2d, SparseConv2d
from .host import _is_add, _sole_user


def _module(gm: fx.GraphModule, node, cls):
    if not isinstance(node, fx.Node) or node.op != "call_module":
        return None
    m = gm.get_submodule(node.target)
    return m if isinstance(m, cls) else None


def _single_input(node: fx.Node) -> bool:
    return len(node.args) == 1 and not node.kwargs


def _expand_of(gm: fx.GraphModule, dw_node: fx.Node) -> Optional[fx.Node]:
    """The 1x1 conv feeding dw_node, if it feeds nothing else (else the block has no expand:
    a stem conv feeding MobileNetV2's first block stays outside it)."""
    e = dw_node.args[0]
    m = _module(gm, e, SparseConv2d)
    if m is None or not _single_input(e) or _sole_user(e) is not dw_node or \
            not InvertedBlock.pointwise(m):
        return None
    return e


def _fuse_one(gm: fx.GraphModule, dw_node: fx.Node, isa: str) -> bool:
    dw = _module(gm, dw_node, DepthwiseConv2d)
    p_node = _sole_user(dw_node)
    if dw is None or not _single_input(dw_node) or p_node is None or \
            _module(gm, p_node, SparseConv2d) is None or not _single_input(p_node):
        return False
    e_node = _expand_of(gm, dw_node)
    block_in = e_node.args[0] if e_node is not None else dw_node.args[0]
    expand = _module(gm, e_node, SparseConv2d) if e_node is not None else None
    project = _module(gm, p_node, SparseConv2d)
    if not InvertedBlock.fusable(expand, dw, project):
        return False
    end, add = p_node, _sole_user(p_node)
    residual = add is not None and _is_add(add) and block_in in add.args and \
        (add.args[0] is p_node) != (add.args[1] is p_node)
    if residual:
        end = add
    block = InvertedBlock(expand, dw, project, residual, isa)
    name = "fused_" + dw_node.target.replace(".", "_")
    gm.add_submodule(name, block)
    with gm.graph.inserting_after(end):
        repl = gm.graph.call_module(name, (block_in,))
    end.replace_all_uses_with(repl)
    for n in (add if residual else None, p_node, dw_node, e_node):
        if n is not None:
            gm.graph.erase_node(n)
    return True


def fuse_blocks(gm: fx.GraphModule, isa: str = "auto") -> int:
    """Fuse every block of gm in place; returns how many."""
    done = 0
    for node in list(gm.graph.nodes):
        if node.graph is gm.graph and _module(gm, node, DepthwiseConv2d) is not None:
            done += _fuse_one(gm, node, isa)
    if done:
        gm.graph.lint()
        gm.delete_all_unused_submodules()
        gm.recompile()
    return done
