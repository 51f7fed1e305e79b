// The activation epilogues of the kernel templates (spmm/tile_template.h,
// dwconv/plane_template.h, dense/gemm_template.h) on any vector traits V (isa/scalar.h lists
// the interface):
//   hardswish(x) = x * min(max(x + 3, 0), 6) / 6          (MobileNetV3)
//   silu(x)      = x / (1 + exp(-x))                      (EfficientNet; a.k.a. swish)
//   sigmoid(x)   = 1 / (1 + exp(-x))
//   gelu(x)      = x (1 + erf(x / sqrt 2)) / 2             (BERT, ViT: torch's default GELU)
//   gelu_tanh(x) = x (1 + tanh(u)) / 2 = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3)
//                                                          (GPT-2's "gelu_new")
//
// 1 + exp(-x) with k = round(-x * 2^L / ln2) and t = x + k ln2 / 2^L (|t| <= ln2 / 2^(L+1)):
// exp(-x) = 2^(k / 2^L) exp(-t). The rounding is the 1.5 * 2^23 trick with 126 * 2^L more in
// the constant, so the rounded sum's low mantissa bits give 2^(k / 2^L - 1) without a
// conversion: L = 0 shifts them into the exponent field (V::pow2_bits), L = 5 (AVX-512,
// V::pow2_table) takes the fraction from a 32-entry table. 2 exp(-t) is a polynomial fitted
// for minimum relative error (degree 5 at L = 0: 9e-8; degree 2 at L = 5: 5e-8); then
// 1 + q 2^(k/2^L - 1) in one FMA and one true divide (rcp14 + a Newton step measured slower).
// The factor 2 lets k / 2^L reach 128. SiLU over a buffer in L1, Zen 4: 0.16 ns a float on
// AVX-512 (0.31 with the Cephes exp this replaced), 0.24 on AVX2 (0.51); inlined into the
// depthwise kernels' register blocks it adds 0.05 ns a float to the conv. t takes ln2 rounded
// to float (one FMA; the scalar traits, whose fma may round twice, split it in two): |x| *
// 2.7e-9 of relative error in exp(-x), 1 ulp at x = -40, where silu is -2e-16 (a second FMA
// measured 10% slower).
//
// GELU: with z = |x| / sqrt 2 and h = erfc(z) / 2, gelu(x) = x - x h for x >= 0 and x h below,
// one expression: relu(x) (1 - h) + min(x, 0) h. erfc(z) = P(z)^-16 with P of degree 6
// (Hastings' approximation, Abramowitz & Stegun 7.1.28: |erf error| <= 3e-7): 6 FMAs, 4
// squarings and one divide, a third of an erfc built on exp (which, fused into the SpMM tile,
// cost more than TVM's GELU pass after it). The error is absolute, so GELU's tail (x < -4,
// where gelu(x) is below 1e-4) is accurate to 1e-7 |x|, not in ulp; P^16 overflows to +inf
// for large z: gelu(+inf) = +inf, gelu(-3e38) = -0.0 and gelu(-inf) = NaN, as torch in double
// (-inf * 0); NaN stays NaN. Bounds (activation_tests.cc): GELU within 1e-6 |x| + 1e-37 of
// double precision, GELU-tanh 8 ulp for x >= -1 and 1e-6 |x| + 1e-37 below.
//
// Edges: x is clamped to [-89, 87] inside the exponential only, so exp(-x) overflows to inf for
// x < -88.72 (silu -0.0, sigmoid 0: what torch's float math gives) and is (nearly) 0 for
// x > 87 (silu x, sigmoid 1); x = -inf gives NaN for silu (-inf / inf, as torch) and 0 for
// sigmoid, NaN stays NaN. Measured max error against double precision (every float in
// [-128, 128], step 7 ulp; kernels/tests/activation_tests.cc checks every ISA): silu and
// sigmoid 4.4 ulp for x >= -20, 7 ulp below (results under 5e-8), hardswish 2.3 ulp.
#ifndef SPE_ISA_ACTIVATION_H_
#define SPE_ISA_ACTIVATION_H_

#include <type_traits>

#include "isa.h"

namespace spe {
namespace {

// The SPE_ACT_* values (include/spe/spe.h) the epilogues switch on
constexpr int kActHardswish = 3;
constexpr int kActSilu = 4;
constexpr int kActGelu = 5;
constexpr int kActGeluTanh = 6;

// V::kExpTableBits if V has a table for 2^(j / 2^L) (V::pow2_table), else 0.
template <class V, class = void>
struct ExpTableBits : std::integral_constant<int, 0> {};
template <class V>
struct ExpTableBits<V, std::void_t<decltype(V::kExpTableBits)>>
    : std::integral_constant<int, V::kExpTableBits> {};

template <class V>
struct ExtraActivation {
  using reg = typename V::reg;
  static constexpr int L = ExpTableBits<V>::value;
  static_assert(L == 0 || L == 5, "a polynomial is fitted for tables of 1 and 32 entries");

  // a * b, a signed zero kept (-0.0 + -0.0: hardswish(-4) is -0.0, as x * 0 / 6 in torch)
  __attribute__((always_inline)) static reg mul(reg a, reg b) {
    return V::fma(a, b, V::set1(-0.0f));
  }

  __attribute__((always_inline)) static reg hardswish(reg x) {
    const reg t = V::min(V::max(V::add(x, V::set1(3.0f)), V::zero()), V::set1(6.0f));
    return mul(mul(x, t), V::set1(1.0f / 6.0f));
  }

  // exp(-x) = q s (see the top of the file): the polynomial q = 2 exp(-t) and s = 2^(k/2^L - 1)
  struct ExpNeg {
    reg q, s;
  };
  __attribute__((always_inline)) static ExpNeg exp_neg_parts(reg x) {
    constexpr float kScale = float(1 << L);
    constexpr float kBias = 12582912.0f + 126.0f * kScale;  // 1.5 * 2^23 rounds
    // the constants first: x86 min / max return their second operand if either is NaN
    const reg xc = V::max(V::set1(-89.0f), V::min(V::set1(87.0f), x));
    const reg nb = V::fma(xc, V::set1(-1.44269504088896341f * kScale), V::set1(kBias));
    reg s;  // 2^(k / 2^L - 1)
    if constexpr (L > 0) s = V::pow2_table(nb);
    else s = V::pow2_bits(nb);
    const reg k = V::add(nb, V::set1(-kBias));
    reg t;
    if constexpr (V::kIsa != Isa::scalar) {
      t = V::fma(k, V::set1(0.693147182464599609375f / kScale), xc);
    } else {  // fma may be a*b + c, rounded twice: k * 0.693359375 (9 bits) stays exact
      t = V::fma(k, V::set1(0.693359375f / kScale), xc);
      t = V::fma(k, V::set1(-2.12194440e-4f / kScale), t);
    }
    reg q;  // 2 exp(-t)
    if constexpr (L == 5) {
      q = V::fma(V::set1(1.000000358e+0f), t, V::set1(-2.000029325e+0f));
    } else {
      q = V::fma(V::set1(-1.658061333e-2f), t, V::set1(8.379594982e-2f));
      q = V::fma(q, t, V::set1(-3.333527446e-1f));
      q = V::fma(q, t, V::set1(9.999830127e-1f));
      q = V::fma(q, t, V::set1(-1.999999404e+0f));
    }
    q = V::fma(q, t, V::set1(2.0f));
    return {q, s};
  }

  // 1 + exp(-x), the 1 added in the same FMA
  __attribute__((always_inline)) static reg one_plus_exp_neg(reg x) {
    const ExpNeg e = exp_neg_parts(x);
    return V::fma(e.q, e.s, V::set1(1.0f));
  }

  __attribute__((always_inline)) static reg exp_neg(reg x) {
    const ExpNeg e = exp_neg_parts(x);
    return mul(e.q, e.s);
  }

  // x (1 + erf(x / sqrt 2)) / 2 (see the top of the file)
  __attribute__((always_inline)) static reg gelu(reg x) {
    const reg ax = V::max(mul(x, V::set1(-1.0f)), x);  // |x|; NaN: x (max's second operand)
    const reg z = mul(ax, V::set1(0.70710678118654752f));
    reg p = V::fma(V::set1(0.0000430638f), z, V::set1(0.0002765672f));
    p = V::fma(p, z, V::set1(0.0001520143f));
    p = V::fma(p, z, V::set1(0.0092705272f));
    p = V::fma(p, z, V::set1(0.0422820123f));
    p = V::fma(p, z, V::set1(0.0705230784f));
    p = V::fma(p, z, V::set1(1.0f));
    p = mul(p, p);
    p = mul(p, p);
    p = mul(p, p);
    p = mul(p, p);                                      // P(z)^16: +inf for z > ~12
    // erfc(z) / 2, 0 where it would fall below 5e-31 (P^16 > 1e30): products with it stay
    // normal floats (a denormal costs a microcode assist: the SpMM's GELU pass over outputs of
    // spread +-60 ran 13x slower per element than over N(0, 1))
    const reg cut = V::min(V::set1(1.0f), V::max(V::zero(), V::add(V::set1(1e30f),
                                                                 mul(p, V::set1(-1.0f)))));
    const reg h = mul(V::div(V::set1(0.5f), V::min(p, V::set1(1e30f))), cut);
    // max(-0, x): -0.0 for x < 0, so that the sum keeps gelu(x < 0)'s sign where h is 0;
    // NaN: max / min return their second operand x
    return V::fma(V::max(V::set1(-0.0f), x), V::add(V::set1(1.0f), mul(h, V::set1(-1.0f))),
                  mul(V::min(V::zero(), x), h));
  }

  // x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3)
  __attribute__((always_inline)) static reg gelu_tanh(reg x) {
    const reg x2 = mul(x, x);
    const reg u2 = mul(x, V::fma(x2, V::set1(2.0f * 0.7978845608028654f * 0.044715f),
                                 V::set1(2.0f * 0.7978845608028654f)));
    // 2u within [-80, 80]: exp(-2u) in normal floats (exp_neg builds exp(-87) from a denormal
    // power of 2); as gelu, 0 (x * 0: -0.0 below 0) where 1 + exp(-2u) > 1e30, not a denormal
    // quotient; the constants first: NaN passes through max / min
    const reg d = one_plus_exp_neg(V::min(V::set1(80.0f), V::max(V::set1(-80.0f), u2)));
    const reg cut = V::min(V::set1(1.0f), V::max(V::zero(), V::add(V::set1(1e30f),
                                                                 mul(d, V::set1(-1.0f)))));
    return mul(V::div(x, V::min(d, V::set1(1e30f))), cut);
  }

  // always inlined, like the rest: a call from a register block spills it
  __attribute__((always_inline)) static reg silu(reg x) {
    return V::div(x, one_plus_exp_neg(x));
  }
  __attribute__((always_inline)) static reg sigmoid(reg x) {
    return V::div(V::set1(1.0f), one_plus_exp_neg(x));
  }

  // act: kActHardswish or kActSilu, inlined into a register block (the SpMM tile's epilogue:
  // its two bodies are small enough); anything else passes x through
  static reg apply_inline(reg x, int act) {
    if (act == kActHardswish) return hardswish(x);
    if (act == kActSilu) return silu(x);
    return x;
  }

  // act: kActHardswish, kActSilu, kActGelu or kActGeluTanh; anything else passes x through (a
  // branch a vector: hot loops take the activation as a type, Act below)
  static reg apply(reg x, int act) {
    if (act == kActHardswish) return hardswish(x);
    if (act == kActSilu) return silu(x);
    if (act == kActGelu) return gelu(x);
    if (act == kActGeluTanh) return gelu_tanh(x);
    return x;
  }
};

// The activation kAct as a type, for loops instantiated once per activation.
template <class V, int kAct>
struct Act {
  static typename V::reg apply(typename V::reg x) {
    if constexpr (kAct == kActHardswish) return ExtraActivation<V>::hardswish(x);
    else if constexpr (kAct == kActSilu) return ExtraActivation<V>::silu(x);
    else if constexpr (kAct == kActGelu) return ExtraActivation<V>::gelu(x);
    else if constexpr (kAct == kActGeluTanh) return ExtraActivation<V>::gelu_tanh(x);
    else return x;
  }
};

// f(Act<V, act>{}) for act hardswish, SiLU, GELU or GELU-tanh (the caller checked it is one).
template <class V, class F>
inline void with_extra_act(int act, F&& f) {
  if (act == kActSilu) f(Act<V, kActSilu>{});
  else if (act == kActGelu) f(Act<V, kActGelu>{});
  else if (act == kActGeluTanh) f(Act<V, kActGeluTanh>{});
  else f(Act<V, kActHardswish>{});
}

}  // namespace
}  // namespace spe
#endif  // SPE_ISA_ACTIVATION_H_
