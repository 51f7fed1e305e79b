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
};

// y = act(acc [+ residual]) for n <= kWidth outputs (kPartial: n may be < kWidth, masked).
template <class T, bool kPartial>
inline void store_out(typename T::reg acc, const float* rr, float* yr, int n, const Clamp<T>& act) {
  if (!kPartial) {
    if (rr) acc = T::add(acc, T::load(rr));
    T::store(yr, act(acc));
  } else {
    const auto m = T::mask(n);
    if (rr) acc = T::add(acc, T::load_mask(rr, m));
    T::store_mask(yr, act(acc), m);
  }
}

}  // namespace dw
}  // namespace spe
#endif  // SPE_DWCONV_EPILOGUE_H_
