"""Lowering for the host runtime: a (masked) torch model -> a GraphModule running native kernels.

One pass over the torch.fx graph: every Conv2d / Linear, with the BatchNorm that follows it folded
in, and the ReLU / ReLU6 / hardswish / SiLU (or residual add + ReLU) after it fused into the
kernel's epilogue, is replaced by a `SparseConv2d` / `SparseLinear` (layers chosen sparse) or a
`DenseConv2d` / `DenseLinear` (kept dense, torch). A depthwise conv (groups == in == out channels) named in
`sparse` runs the direct depthwise kernel (`DepthwiseConv2d`, dense, same fused epilogue); other
grouped convs named there run the block-diagonal SpMM pack (`SparseConv2d(groups=...)`).
Max pools run the native kernel; everything else (glue) stays torch. Layers named in `keep`
(excluded by the user) and layers with a forward of their own (graph.layers.custom_forward)
stay the model's own modules, unfused.
A decomposed recurrent layer (engine.graph.recurrent.Recurrent) is a leaf of the trace: its
time loop stays Python and its linears (named in `sparse`) are swapped in place, one module
each however many steps call it.
If the model cannot be traced by torch.fx, the layers named in `sparse` are swapped in place
without fusion; the modules swapped in keep the torch layer's attributes (weight, kernel_size,
...) a forward may read (engine.runtime.views).
"""
from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..graph.layers import custom_forward, gemm_weight, is_transposed_linear, set_module
from ..graph.recurrent import Recurrent
from ..runtime.modules import NativeMaxPool2d
from .backends import build_layer


@dataclass
class LoweringResult:
    module: nn.Module
    # layer -> {"bn": name|None, "act": ..., "residual": bool} (of its first call site)
    fused: dict = field(default_factory=dict)
    traced: bool = True
    note: str = ""
    call_sites: dict = field(default_factory=dict)   # shared layer -> number of call sites


def fold_bn(weight: torch.Tensor, bias: Optional[torch.Tensor], bn: nn.BatchNorm2d):
    """Conv weight/bias with an eval-mode BatchNorm folded in."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
        1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() if bn.affine else torch.zeros_like(bn.running_mean)
    b = bias.detach() if bias is not None else torch.zeros_like(bn.running_mean)
    w = weight.detach() * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return w, (b - bn.running_mean) * scale + shift


_RELU_FUNCS = {F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu6: "relu6",
               F.hardswish: "hardswish", F.silu: "silu"}
# activation modules the kernels' epilogue runs (MobileNetV3's hardswish, EfficientNet's SiLU)
_ACT_MODULES = ((nn.ReLU6, "relu6"), (nn.ReLU, "relu"), (nn.Hardswish, "hardswish"),
                (nn.SiLU, "silu"))
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}


def act_of(node: fx.Node, modules: dict) -> Optional[str]:
    """The activation a node applies that the kernels' epilogue can fuse, or None."""
    if node.op == "call_module":
        m = modules.get(node.target)
        for cls, act in _ACT_MODULES:
            if isinstance(m, cls):
                return act
        if isinstance(m, nn.Hardtanh) and m.min_val == 0.0 and m.max_val == 6.0:
            return "relu6"
    elif node.op == "call_function" and node.target in _RELU_FUNCS:
        return _RELU_FUNCS[node.target]
    elif node.op == "call_method" and node.target in ("relu", "relu_"):
        return "relu"
    return None


def _is_add(node: fx.Node) -> bool:
    if node.op == "call_function" and node.target in _ADD_FUNCS:
        return len(node.args) == 2 and not node.kwargs.get("alpha", 1) != 1
    return node.op == "call_method" and node.target in ("add", "add_") and len(node.args) == 2


def _sole_user(node: fx.Node) -> Optional[fx.Node]:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


class _LayerTracer(fx.Tracer):
    """torch.fx's tracer, with transformers' Conv1D a leaf like torch's own layers (one
    call_module node the lowering can replace, not its addmm), and a decomposed recurrent
    layer a leaf (its loop runs per call; its linears are swapped in place)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_transposed_linear(m) or isinstance(m, Recurrent) or \
            super().is_leaf_module(m, qualname)


def lower(model: nn.Module, sparse: dict, isa: str = "auto", keep=()) -> LoweringResult:
    """Rewrite a copy of `model`; `sparse` maps layer name -> the kernel group height (block
    rows) of layers run on the native kernels, -> ("tir", rows) for a generated TIR kernel
    (engine.codegen.host; needs tvm), or -> ("dense", algo) for a conv kept dense on the packed
    dense kernels (engine.runtime.dense). Depthwise convs named in `sparse` run the direct
    depthwise kernel whatever the value (it is dense; their weights are never pruned). keep:
    layer names left as they are (the model's own modules)."""
    model = copy.deepcopy(model).eval()
    keep = set(keep)
    try:
        tracer = _LayerTracer()
        graph = tracer.trace(model)
        gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    except Exception as e:  # noqa: BLE001  (any trace failure -> unfused fallback)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        return _swap_in_place(model, {n: v for n, v in sparse.items() if n not in keep}, isa,
                              f"torch.fx could not trace the model ({type(e).__name__}: "
                              f"{first}); layers swapped in place without BN folding / fusion")
    modules = dict(gm.named_modules())
    for name, mod in modules.items():   # recurrent leaves: their linears swapped in place
        if isinstance(mod, Recurrent):
            _swap_in_place(mod, {n[len(name) + 1:]: v for n, v in sparse.items()
                                 if n.startswith(name + ".") and n not in keep}, isa, "",
                           prefix=name + ".")
    fused: dict = {}
    sites: dict = {}   # layer -> call sites lowered so far (a module called more than once)
    for node in list(gm.graph.nodes):
        mod = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(mod, nn.MaxPool2d) and NativeMaxPool2d.supports(mod):
            _lower_pool(gm, node, mod)
        elif _lowerable(mod) and node.target not in keep:
            site = sites[node.target] = sites.get(node.target, 0) + 1
            f = _lower_layer(gm, node, mod, modules, sparse, isa, site)
            if site == 1:  # the first call's fusion describes the layer (list_layers' shapes)
                fused[node.target] = f
    contiguous_sparse_operands(gm.graph)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return LoweringResult(gm, fused, True,
                          call_sites={n: k for n, k in sites.items() if k > 1})


# torch's sparse-dense products: function -> index of the dense operand
_SPARSE_MM = {torch.sparse.mm: 1, torch.spmm: 1, torch.sparse.addmm: 2, torch.hspmm: 1}


def contiguous_sparse_operands(graph: fx.Graph) -> int:
    """The dense operand of every explicit sparse-dense product (torch.sparse.mm, torch.spmm,
    torch.sparse.addmm, torch.hspmm; a GNN's adjacency product) made contiguous; returns how
    many. A lowered linear returns its output as a transposed view (the kernels compute
    features x rows), on which torch's COO product is ~10x slower (1797 nodes, 512 features:
    19 ms instead of 2); contiguous() of a contiguous tensor is free. `adj @ h` / torch.mm with
    a sparse `adj` cannot be told from a dense product when tracing: write torch.sparse.mm."""
    n = 0
    for node in list(graph.nodes):
        i = _SPARSE_MM.get(node.target) if node.op == "call_function" else None
        if i is None or len(node.args) <= i or not isinstance(node.args[i], fx.Node):
            continue
        with graph.inserting_before(node):
            dense = graph.call_method("contiguous", (node.args[i],))
        node.update_arg(i, dense)
        n += 1
    return n


def _lowerable(mod) -> bool:
    """A conv / linear the engine's modules compute exactly (any padding: engine.graph.padding)."""
    return (isinstance(mod, (nn.Conv2d, nn.Conv1d, nn.Linear)) or is_transposed_linear(mod)) and \
        custom_forward(mod) is None


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _lower_pool(gm: fx.GraphModule, node: fx.Node, mod: nn.MaxPool2d) -> None:
    pool_name = "lowered_" + node.target.replace(".", "_")
    gm.add_submodule(pool_name, NativeMaxPool2d(_pair(mod.kernel_size),
                                                _pair(mod.stride or mod.kernel_size),
                                                _pair(mod.padding)))
    node.target = pool_name


def _fusion(node: fx.Node, mod: nn.Module, modules: dict) -> tuple:
    """(nodes fused into the layer, last of them, weight, bias, BN name, activation, residual
    node): conv -> [BN] -> [ReLU/ReLU6 | add(residual) -> ReLU]."""
    chain, cur, bn_name = [node], node, None
    w, b = gemm_weight(mod).detach(), (mod.bias.detach() if mod.bias is not None else None)
    nxt = _sole_user(cur)
    if isinstance(mod, nn.Conv2d) and nxt is not None and nxt.op == "call_module" and \
            isinstance(modules.get(nxt.target), nn.BatchNorm2d):
        w, b = fold_bn(w, b, modules[nxt.target])
        bn_name, cur = nxt.target, nxt
        chain.append(nxt)
    act, residual = "none", None
    nxt = _sole_user(cur)
    if nxt is not None and act_of(nxt, modules):
        act, cur = act_of(nxt, modules), nxt
        chain.append(nxt)
    elif isinstance(mod, nn.Conv2d) and nxt is not None and _is_add(nxt):
        other = nxt.args[1] if nxt.args[0] is cur else nxt.args[0]
        after = _sole_user(nxt)
        if isinstance(other, fx.Node) and other is not cur and after is not None and \
                act_of(after, modules) == "relu":
            residual, act, cur = other, "relu", after
            chain += [nxt, after]
    return chain, cur, w, b, bn_name, act, residual


def _lower_layer(gm: fx.GraphModule, node: fx.Node, mod: nn.Module, modules: dict,
                 sparse: dict, isa: str, site: int) -> dict:
    """Replace one call site of a conv / linear (and what it fuses); returns its fusion."""
    name = node.target
    chain, cur, w, b, bn_name, act, residual = _fusion(node, mod, modules)
    new = build_layer(mod, name, w, b, act, sparse, isa)
    # One replacement per call site: a shared module (`c(relu(c(x)))`) fuses a different
    # BN / activation / residual at each site, so each site gets its own lowered module.
    new_name = "lowered_" + name.replace(".", "_") + (f"__call{site}" if site > 1 else "")
    gm.add_submodule(new_name, new)
    with gm.graph.inserting_after(cur):
        args = (node.args[0],) if residual is None else (node.args[0], residual)
        repl = gm.graph.call_module(new_name, args)
    cur.replace_all_uses_with(repl)
    for n in reversed(chain):
        gm.graph.erase_node(n)
    return {"bn": bn_name, "act": act, "residual": residual is not None}


def _swap_in_place(model: nn.Module, sparse: dict, isa: str, note: str,
                   prefix: str = "") -> LoweringResult:
    """The layers named in `sparse` (relative to `model`; `prefix` + name is the layer's name
    in the whole model) replaced by their lowered modules, unfused."""
    full = {prefix + n: v for n, v in sparse.items()}
    for name, mod in list(model.named_modules()):
        if name in sparse and _lowerable(mod):
            b = mod.bias.detach() if mod.bias is not None else None
            set_module(model, name, build_layer(mod, prefix + name, gemm_weight(mod).detach(),
                                                 b, "none", full, isa))
    return LoweringResult(model, {}, False, note)
