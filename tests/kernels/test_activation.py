"""The fused hardswish / SiLU / GELU / GELU-tanh epilogues (kernels/src/isa/activation.h) element by element, on
every ISA this CPU runs, through three kernels with identity weights: a 1x1 depthwise conv (the
row method), a 3x3 one (the flat method where the ISA has it, the activation inlined into the
register block) and a 1x1 SpMM conv (the tile epilogue).

Inputs are floats spread over [-128, 128] (every 8191st bit pattern of each sign) and the edge
values. Against float64 torch: SiLU within 5 ulp for x >= -20 and 8 ulp below (where it is
under 5e-8), hardswish within 3 ulp, GELU within 1e-6 |x| + 1e-37 (GELU-tanh: 8 ulp for x >= -1,
that bound below), results under 1e-35 within 1e-35. Where float32 torch
gives NaN, +-inf or a signed zero (exp(-x) overflowing below -88.72, huge, infinite and NaN
inputs), so must the kernels (a zero within 1e-35, of the same sign). kernels/tests/activation_tests.cc checks
the same bounds in C++ (and on NEON under qemu).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import _kernels as K
from engine.runtime.packing import pack

from kernel_catalog import ISAS, need

def _gelu(x: torch.Tensor) -> torch.Tensor:
    """torch's GELU as x erfc(-x / sqrt 2) / 2: F.gelu's 1 + erf(x / sqrt 2) cancels to 0 below
    x ~ -5.5 in float32 and -8.3 in float64; the kernels keep x h there (isa/activation.h)."""
    return 0.5 * x * torch.special.erfc(-x * 0.5 ** 0.5)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """F.gelu(x, approximate="tanh") as x / (1 + exp(-2u)), without 1 + tanh's cancellation."""
    return x * torch.sigmoid(2.0 * (2.0 / np.pi) ** 0.5 * (x + 0.044715 * x * x * x))


TORCH = {"silu": F.silu, "hardswish": F.hardswish, "gelu": _gelu, "gelu_tanh": _gelu_tanh}
EDGES = np.array([-0.0, 0.0, 1e-45, -1e-45, 1e-30, -1e-30, -3.0, 3.0, -2.9999998, 87.0, 88.0,
                  -88.0, -88.5, -88.7228317, -88.7228394, -89.0, -100.0, 100.0, 1e30, -1e30,
                  3e38, -3e38, np.inf, -np.inf, np.nan], np.float32)


def sweep() -> np.ndarray:
    pos = np.arange(0, 0x43000000, 8191, dtype=np.uint32).view(np.float32)
    return np.concatenate([pos, -pos])


def check(x: np.ndarray, y: np.ndarray, act: str) -> None:
    """y = act(x) within the bounds of the module docstring."""
    assert y.shape == x.shape and y.dtype == np.float32
    exact = TORCH[act](torch.from_numpy(x)).numpy()
    if act in ("gelu", "gelu_tanh"):   # zeros: where float64's result rounds to 0 in float32
        exact = TORCH[act](torch.from_numpy(x).double()).numpy().astype(np.float32)
    special = np.isnan(exact) | np.isinf(exact) | (exact == 0)
    np.testing.assert_array_equal(np.isnan(y[special]), np.isnan(exact[special]))
    inf, zero = np.isinf(exact), exact == 0
    np.testing.assert_array_equal(y[inf], exact[inf])
    # zeros: the sign, and the value within 1e-35 (rounding of denormal results may differ)
    np.testing.assert_array_equal(np.signbit(y[zero]), np.signbit(exact[zero]))
    assert np.all(np.abs(y[zero]) <= (1e-6 * np.abs(x[zero]) + 1e-37 if act == "gelu" else 1e-35))

    ref = TORCH[act](torch.from_numpy(x).double()).numpy()
    finite = ~special & np.isfinite(ref)
    x, y, ref = x[finite].astype(np.float64), y[finite].astype(np.float64), ref[finite]
    tiny = np.abs(ref) < (0.0 if act == "gelu" else 1e-35)   # GELU: absolute bound throughout
    assert np.all(np.abs(y[tiny] - ref[tiny]) <= 1e-35)
    ulp = np.ldexp(1.0, np.frexp(ref[~tiny])[1] - 24)
    err = np.abs(y[~tiny] - ref[~tiny]) / ulp
    bound = np.where(x[~tiny] >= -20, 5.0, 8.0) if act == "silu" else \
        np.full(x[~tiny].shape, 8.0 if act == "gelu_tanh" else 3.0)
    if act in ("gelu", "gelu_tanh"):      # absolute (isa/activation.h): 1e-6 |x| + 1e-37
        absolute = np.abs(y[~tiny] - ref[~tiny]) <= 1e-6 * np.abs(x[~tiny]) + 1e-37
        err = np.where((x[~tiny] < -1) | (act == "gelu"), np.where(absolute, 0.0, np.inf), err)
    worst = int(np.argmax(err - bound))
    assert np.all(err <= bound), (f"{act}({x[~tiny][worst]!r}) = {y[~tiny][worst]!r}, "
                                  f"reference {ref[~tiny][worst]!r}: {err[worst]:.2f} ulp")


def depthwise(x: np.ndarray, k: int, act: str, isa: str) -> np.ndarray:
    """x (n,) as planes of a k x k depthwise conv whose centre tap is 1 (n cut to whole planes)."""
    h, w = 23, 29
    c = x.size // (h * w)
    weight = np.zeros((c, 1, k, k), np.float32)
    weight[:, 0, k // 2, k // 2] = 1.0
    conv = K.DepthwiseConv(c, (k, k), (1, 1), (k // 2, k // 2), (1, 1), weight, None, act, isa)
    return conv.run(np.ascontiguousarray(x[:c * h * w].reshape(1, c, h, w))).reshape(-1)


def spmm(x: np.ndarray, act: str, isa: str) -> np.ndarray:
    """x (n,) through a 1x1 SpMM conv with the identity weight (n cut to 16 whole channels)."""
    c = 16
    p = pack(np.eye(c, dtype=np.float32).reshape(c, c, 1, 1), 1)  # no 0 * inf in a group
    conv = K.SparseConv(c, c, (1, 1), (1, 1), (0, 0), (1, 1), p.group_row0, p.group_rows,
                        p.group_ptr, p.entry_col, p.values, None, act, isa)
    hw = x.size // c
    return conv.run(np.ascontiguousarray(x[:c * hw].reshape(1, c, 1, hw))).reshape(-1)


@pytest.mark.parametrize("act", sorted(TORCH))
@pytest.mark.parametrize("isa", ISAS)
def test_activation_matches_torch(isa, act):
    need(isa)
    # the convs sum from +0.0, which turns -0.0 into +0.0 (the C++ test checks -0.0 itself)
    x = np.concatenate([EDGES, sweep()]) + np.float32(0.0)
    plane = 23 * 29
    check(x[:x.size // plane * plane], depthwise(x, 1, act, isa), act)
    check(x[:x.size // 16 * 16], spmm(x, act, isa), act)
    # the 3x3 conv's zero taps would spread inf / NaN (0 * inf)
    finite = sweep() + np.float32(0.0)
    check(finite[:finite.size // plane * plane], depthwise(finite, 3, act, isa), act)
