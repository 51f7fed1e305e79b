"""The calls into the C++ kernels (kernels/tvm/spe_tvm_bridge.cc) that compile_model and the
per-layer RPC modules (remote.py) put in place of a conv running on backend "native": the
layer's constants as the bridge function takes them.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..runtime.packing import dense_rows, group_rows_for, pack
from .native_lowering import ACT_CODES, dense_meta, depthwise_meta
from .rewrite import LayerMatch, Replacement

# The bridge function running depthwise convs on the direct depthwise kernel.
DEPTHWISE_EXTERN = "spe.v1.depthwise_conv2d"
# ... and convs kept dense on the packed dense kernels (implicit GEMM or Winograd).
DENSE_EXTERN = "spe.v1.dense_conv2d"


def native_replacement(m: LayerMatch, choice=None, dense: Optional[str] = None
                       ) -> Optional[Replacement]:
    """call_dps_packed into the C++ kernels for a conv: a depthwise conv kept dense ->
    "spe.v1.depthwise_conv2d" (meta int32[13], the (C, kh, kw) weight, bias or a placeholder);
    a conv kept dense whose plan names a packed dense algorithm (`dense`: "gemm", "winograd")
    -> "spe.v1.dense_conv2d" (meta int32[14], the (O, C, kh, kw) weight, bias or a
    placeholder; a 2-D linear kept dense on "gemm" too, as a 1x1 conv: the GEMV at batch 1);
    any other -> "spe.v1.sparse_conv2d" (meta int32[13], the packed arrays,
    bias or a placeholder). The residual (or a placeholder) comes last. None where the kernels
    do not apply (not a conv, asymmetric padding, a grouped conv pruned or on `dense`).

    choice: the plan's Choice of a pruned layer (group height from its block rows); None for a
    layer kept dense: engine.runtime.packing.dense_rows."""
    pt, pl, pb, pr = m.padding
    if m.op == "linear" and choice is None and dense == "gemm" and len(m.in_shape) == 2:
        return _dense_linear_replacement(m)
    if m.op != "conv2d" or (pt, pl) != (pb, pr) or (choice is not None and m.groups != 1):
        return None
    if choice is None and _is_depthwise(m):
        return _depthwise_replacement(m)
    if choice is None and dense is not None:
        return _dense_replacement(m, dense)
    if choice is not None:
        rows = group_rows_for(int(choice.block[0]) if choice.block else 1)
    else:
        rows = dense_rows(m.groups)
    p = pack(m.weight, rows, m.groups)
    o, c, (kh, kw) = p.out_channels, p.in_channels, p.kernel
    act = ACT_CODES[m.act]
    meta = np.array([o, c, kh, kw, *m.stride, pt, pl, *m.dilation, act, int(m.bias is not None),
                     int(m.residual is not None)], np.int32)
    tables = [meta, p.group_row0, p.group_rows, p.group_ptr.astype(np.int32), p.entry_col,
              p.values, _bias(m)]
    return Replacement(None, tables, m.residual is not None, extern="spe.v1.sparse_conv2d")


def _bias(m: LayerMatch) -> np.ndarray:
    return np.asarray(m.bias if m.bias is not None else np.zeros(1, np.float32), np.float32)


def _is_depthwise(m: LayerMatch) -> bool:
    """groups == in == out channels (weight (C, 1, kh, kw)): the direct depthwise kernel's case;
    other grouped convs (channel multiplier, several channels per group) keep the SpMM pack."""
    o, cg = m.weight.shape[:2]
    return m.op == "conv2d" and m.groups > 1 and cg == 1 and o == m.groups == m.in_shape[1]


def _depthwise_replacement(m: LayerMatch) -> Replacement:
    c, _, kh, kw = m.weight.shape
    pt, pl = m.padding[:2]
    meta = depthwise_meta(c, (kh, kw), m.stride, (pt, pl), m.dilation, m.act,
                          m.bias is not None, m.residual is not None)
    tables = [meta, np.ascontiguousarray(m.weight.reshape(c, kh, kw), np.float32), _bias(m)]
    return Replacement(None, tables, m.residual is not None, extern=DEPTHWISE_EXTERN)


def _dense_replacement(m: LayerMatch, algo: str) -> Optional[Replacement]:
    o, c, kh, kw = m.weight.shape
    winograd_ok = (kh, kw) == (3, 3) and tuple(m.stride) == (1, 1) and tuple(m.dilation) == (1, 1)
    if m.groups != 1 or (algo == "winograd" and not winograd_ok):
        return None
    meta = dense_meta(o, c, (kh, kw), m.stride, m.padding[:2], m.dilation, m.act,
                      m.bias is not None, m.residual is not None, algo)
    tables = [meta, np.ascontiguousarray(m.weight, np.float32), _bias(m)]
    return Replacement(None, tables, m.residual is not None, extern=DENSE_EXTERN)


def _dense_linear_replacement(m: LayerMatch) -> Replacement:
    """A linear (N, K) -> (N, O) on spe.v1.dense_conv2d as a 1x1 conv over N one-pixel images
    (the bridge takes 2-D x / y for a 1x1 layer)."""
    o, c = m.weight.shape
    meta = dense_meta(o, c, (1, 1), (1, 1), (0, 0), (1, 1), m.act, m.bias is not None,
                      m.residual is not None, "gemm")
    tables = [meta, np.ascontiguousarray(m.weight.reshape(o, c, 1, 1), np.float32), _bias(m)]
    return Replacement(None, tables, m.residual is not None, extern=DENSE_EXTERN)
