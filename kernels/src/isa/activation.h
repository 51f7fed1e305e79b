// The activation epilogue of the kernel templates (spmm/tile_template.h,
// dwconv/plane_template.h) on any vector traits V (isa/scalar.h lists the interface):
//   hardswish(x) = x * min(max(x + 3, 0), 6) / 6          (MobileNetV3)
//   silu(x)      = x / (1 + exp(-x))                      (EfficientNet; a.k.a. swish)
// exp is Cephes' expf: x = n ln2 + f with n = round(x / ln2) and |f| <= ln2 / 2, ln2 split in
// two so f is exact, exp(f) by a degree-7 polynomial (relative error ~1 ulp), times 2^n built
// in the exponent bits. The argument is clamped to [-87.3, 88.3] first: silu(x) for x < -87 is
// x / (1 + 1.2e38) = -0..-7e-37, where torch gives the same denormal-or-zero.
#ifndef SPE_ISA_ACTIVATION_H_
#define SPE_ISA_ACTIVATION_H_

namespace spe {
namespace {

template <class V>
struct ExtraActivation {
  using reg = typename V::reg;

  static reg mul(reg a, reg b) { return V::fma(a, b, V::zero()); }

  static reg hardswish(reg x) {
    const reg t = V::min(V::max(V::add(x, V::set1(3.0f)), V::zero()), V::set1(6.0f));
    return mul(mul(x, t), V::set1(1.0f / 6.0f));
  }

  static reg exp(reg x) {
    x = V::min(V::max(x, V::set1(-87.3f)), V::set1(88.3f));
    // round to nearest by the 1.5 * 2^23 trick: exact for |x / ln2| < 2^22
    const reg magic = V::set1(12582912.0f);
    const reg n = V::add(V::fma(x, V::set1(1.44269504088896341f), magic), V::set1(-12582912.0f));
    reg f = V::fma(n, V::set1(-0.693359375f), x);
    f = V::fma(n, V::set1(2.12194440e-4f), f);
    reg p = V::set1(1.9875691500e-4f);
    p = V::fma(p, f, V::set1(1.3981999507e-3f));
    p = V::fma(p, f, V::set1(8.3334519073e-3f));
    p = V::fma(p, f, V::set1(4.1665795894e-2f));
    p = V::fma(p, f, V::set1(1.6666665459e-1f));
    p = V::fma(p, f, V::set1(5.0000001201e-1f));
    p = V::fma(mul(p, f), f, V::add(f, V::set1(1.0f)));
    return mul(p, V::exp2i(n));
  }

  static reg silu(reg x) {
    const reg neg = V::fma(x, V::set1(-1.0f), V::zero());
    return V::div(x, V::add(V::set1(1.0f), exp(neg)));
  }

  // act: SPE_ACT_HARDSWISH (3) or SPE_ACT_SILU (4); anything else passes x through
  static reg apply(reg x, int act) {
    if (act == 3) return hardswish(x);
    if (act == 4) return silu(x);
    return x;
  }
};

}  // namespace
}  // namespace spe
#endif  // SPE_ISA_ACTIVATION_H_
