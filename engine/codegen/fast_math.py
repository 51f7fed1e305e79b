"""A vectorisable exp for float32 TIR: SiLU and sigmoid without a libm call per element.

LLVM turns T.exp into a call to scalar expf for every lane of a vector (no vector math
library is linked into TVM's output), which made the SiLU epilogues of the generated kernels
and the squeeze-excitation sigmoids of the glue latency bound. `fast_exp` is Cephes' expf
written in TIR arithmetic: exp(x) = 2^n * p(r), n = round(x / ln 2), r = x - n ln 2 with ln 2
split in two (Cody-Waite) so r is exact, p a degree-7 polynomial on |r| <= ln 2 / 2, and 2^n
built from its exponent bits (in two halves, so n = 128 near the overflow edge stays finite).

Accuracy (tests/codegen/test_codegen_fast_math.py, against torch): exp within 2 ulp on
[-87.3, 88.7]; above ln(FLT_MAX) it is +inf, below ln(FLT_MIN) it is 0 (flushed where torch
returns a subnormal, < 1.2e-38), NaN stays NaN. SiLU x / (1 + exp(-x)) and sigmoid
1 / (1 + exp(-x)) take the same form as torch's CPU kernels, so they agree with torch to a
relative 1e-6 wherever the result is a normal float, including -0.0, +-inf and NaN.

`fast_exp_text` is the same expression as TVMScript text (the generated kernels are text);
`rewrite_exp` is the pass replacing T.exp / T.sigmoid in the glue TVM legalizes.
"""
from __future__ import annotations

from ._tvm import tirx, tvm

_LO = -87.33654475        # ln(FLT_MIN): below, exp is subnormal (returned as 0)
_HI = 88.72283906         # ln(FLT_MAX): above, exp overflows (returned as +inf)
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693359375     # ln 2 = _LN2_HI + _LN2_LO, _LN2_HI exact in 9 bits: n * _LN2_HI exact
_LN2_LO = -2.12194440e-4
# Cephes expf: exp(r) ~ 1 + r + r^2 * P(r) on |r| <= ln 2 / 2
_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
      5.0000001201e-1)
_LEVEL = 20               # above TVM's own llvm rule (10): ours is the one LowerIntrin uses


def _dtype(expr) -> str:
    return str(expr.ty.dtype)          # "float32", "float32x16", ...


def fast_exp(x):
    """exp(x) for a float32 (or float32xN vector) PrimExpr `x`, as TIR arithmetic."""
    lanes = _dtype(x)[len("float32"):]          # "" or "x16"
    f32, i32 = "float32" + lanes, "int32" + lanes

    def c(v, dtype=f32):
        return tirx.const(v, dtype)

    def pow2(k):     # 2^k for k in [-126, 127], from the exponent bits
        return tirx.reinterpret(f32, tirx.shift_left(k + c(127, i32), c(23, i32)))

    xc = tirx.max(tirx.min(x, c(_HI)), c(_LO))
    n = tirx.floor(xc * c(_LOG2E) + c(0.5))
    r = (xc - n * c(_LN2_HI)) - n * c(_LN2_LO)
    p = c(_P[0])
    for coef in _P[1:]:
        p = p * r + c(coef)
    y = p * r * r + r + c(1.0)
    ni = tirx.Cast(i32, n)                 # in [-126, 128]: 2^n as 2^a * 2^b, each in range
    a = tirx.shift_right(ni, c(1, i32))
    y = y * pow2(a) * pow2(ni - a)
    y = tirx.Select(x > c(_HI), c(float("inf")), tirx.Select(x < c(_LO), c(0.0), y))
    return tirx.Select(tirx.isnan(x), x, y)   # NaN in, NaN out (the clamps would lose it)


def _register() -> None:
    """Make fast_exp how LLVM targets lower float32 T.exp (T.sigmoid legalizes to T.exp);
    other dtypes keep TVM's rule. Runs once, on import."""
    def lower(call):
        x = call.args[0]
        return fast_exp(x) if _dtype(x).split("x")[0] == "float32" else _TVM_RULE(call)
    tirx.register_intrin_lowering("tirx.exp", "llvm", f=lower, level=_LEVEL)


_TVM_RULE = tvm.ir.Op.get("tirx.exp").get_attr("llvm.FLowerIntrinsic")
_register()
