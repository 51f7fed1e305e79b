"""A vectorisable exp (and erf) for float32: SiLU, sigmoid and GELU without a libm call per element.

LLVM lowers T.exp to a call of scalar expf for every lane of a vector (TVM links no vector math
library), which made the SiLU epilogues of the generated kernels and the squeeze-excitation
gates of the glue latency bound. `fast_exp` is Cephes' expf in TIR arithmetic: exp(x) =
2^n * p(r), n = round(x / ln 2), r = x - n ln 2 with ln 2 split in two (Cody-Waite) so r is
exact, p a degree-7 polynomial on |r| <= ln 2 / 2, 2^n built from exponent bits (in two halves,
so n = 128 at the overflow edge stays finite). register_fast_exp() (called by the glue
schedules' pass) makes it the LLVM lowering of float32 T.exp, scalar or vector, for every module
compiled afterwards in the process, at a priority above TVM's own rule; T.sigmoid legalizes to
1 / (1 + T.exp(-x)) and so uses it too.

Accuracy (tests/codegen/test_codegen_glue_se.py, against torch): exp within 1 ulp (measured
max relative error 8.4e-8 vs float64; torch's own is 6.3e-8) on [ln FLT_MIN, ln FLT_MAX];
+inf above, 0 below (torch returns a subnormal there, < 1.2e-38); NaN stays NaN. SiLU
x / (1 + exp(-x)) and sigmoid have torch's CPU form and agree with it to a relative 2.6e-7
wherever the result is a normal float on [-90, 90], and exactly on -0.0, +-inf, NaN and the
overflow edges (sigmoid's subnormal results within one subnormal step).
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


# erf(x) ~ x P(x^2) / Q(x^2) on [-4, 4] (+-1 to float precision beyond): the rational
# approximation of Eigen's / XLA's float erf; measured max absolute error 4.2e-7 against float64
# erf on [-6, 6] (tests/codegen/test_codegen_fast_math.py)
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
          -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
          -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
          -7.37332916720468e-03, -1.42647390514189e-02)


def fast_erf(x):
    """erf(x) for a float32 (or float32xN vector) PrimExpr `x`, as TIR arithmetic: GELU's erf
    vectorised (LLVM called scalar erff per lane: BERT-base's GELUs, 2 ns an element, were a
    fifth of its compiled run)."""
    f32 = _dtype(x)

    def c(v):
        return tirx.const(v, f32)

    xc = tirx.max(tirx.min(x, c(4.0)), c(-4.0))
    x2 = xc * xc
    p, q = c(_ERF_P[0]), c(_ERF_Q[0])
    for coef in _ERF_P[1:]:
        p = p * x2 + c(coef)
    for coef in _ERF_Q[1:]:
        q = q * x2 + c(coef)
    return tirx.Select(tirx.isnan(x), x, xc * p / q)


def register_fast_exp() -> None:
    """Make fast_exp (fast_erf) how LLVM targets lower float32 T.exp (T.erf), scalar or vector,
    in this process; other dtypes keep TVM's rule. Idempotent."""
    global _REGISTERED
    if not _REGISTERED:
        tirx.register_intrin_lowering("tirx.exp", "llvm", f=_lower, level=_LEVEL)
        tirx.register_intrin_lowering("tirx.erf", "llvm", f=_lower_erf, level=_LEVEL)
        _REGISTERED = True


def _lower_erf(call):
    x = call.args[0]
    if _dtype(x).split("x")[0] == "float32":
        return fast_erf(x)
    return call    # TVM's own handling (a libm call)


def _lower(call):
    x = call.args[0]
    return fast_exp(x) if _dtype(x).split("x")[0] == "float32" else _TVM_RULE(call)


_TVM_RULE = tvm.ir.Op.get("tirx.exp").get_attr("llvm.FLowerIntrinsic")
_REGISTERED = False
