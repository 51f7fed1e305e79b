// The store epilogue of the depthwise kernels (plane_template.h, flat_template.h): the fused
// residual and activation of a vector of outputs, on any vector traits T.
#ifndef SPE_DWCONV_EPILOGUE_H_
#define SPE_DWCONV_EPILOGUE_H_

#include "../isa/activation.h"

namespace spe {
namespace dw {

// The activation: ReLU / ReLU6 as a clamp y = min(max(acc, lo), hi), skipped for none (the
// constants go first: maxps / minps return their second operand when either is NaN, so NaN
// propagates); hardswish and SiLU by isa/activation.h.
template <class T>
struct Clamp {
  typename T::reg lo, hi;
  int act;
  explicit Clamp(int a)
      : lo(T::set1(a == 0 ? -__builtin_inff() : 0.0f)),
        hi(T::set1(a == 2 ? 6.0f : __builtin_inff())), act(a) {}
  typename T::reg operator()(typename T::reg v) const {
    if (act > 2) return ExtraActivation<T>::apply(v, act);
    return act == 0 ? v : T::min(hi, T::max(lo, v));
  }
  // The clamp alone (nothing for none, hardswish and SiLU; apply_extra does the last two),
  // always inlined: a call from a register block spills every live vector register (a
  // non-inlined activation was 14% of the flat method's time on 7x7 planes).
  __attribute__((always_inline)) typename T::reg clamp(typename T::reg v) const {
    return act == 1 || act == 2 ? T::min(hi, T::max(lo, v)) : v;
  }
};

// y = act(acc [+ residual]) for n <= kWidth outputs (kPartial: n may be < kWidth, masked).
// kClampOnly: the clamp alone, hardswish / SiLU left to apply_extra.
template <class T, bool kPartial, bool kClampOnly = false>
__attribute__((always_inline)) inline void store_out(typename T::reg acc, const float* rr,
                                                     float* yr, int n, const Clamp<T>& act) {
  if (!kPartial) {
    if (rr) acc = T::add(acc, T::load(rr));
    T::store(yr, kClampOnly ? act.clamp(acc) : act(acc));
  } else {
    const auto m = T::mask(n);
    if (rr) acc = T::add(acc, T::load_mask(rr, m));
    T::store_mask(yr, kClampOnly ? act.clamp(acc) : act(acc), m);
  }
}

// y[0, n) = hardswish / SiLU of itself, after a register block stored its sums (the call then
// spills nothing the block still needs). One loop per activation: no branch a vector.
template <class T>
__attribute__((noinline)) void apply_extra(float* y, int n, const Clamp<T>& act) {
  with_extra_act<T>(act.act, [y, n](auto a) {
    using A = decltype(a);
    constexpr int V = T::kWidth;
    int i = 0;
    for (; i + V <= n; i += V) T::store(y + i, A::apply(T::load(y + i)));
    if (i < n) {
      const auto m = T::mask(n - i);
      T::store_mask(y + i, A::apply(T::load_mask(y + i, m)), m);
    }
  });
}

}  // namespace dw
}  // namespace spe
#endif  // SPE_DWCONV_EPILOGUE_H_
