// The store epilogue of the depthwise kernels (plane_template.h, flat_template.h): the fused
// residual and activation of a register block's outputs, on any vector traits T.
#ifndef SPE_DWCONV_EPILOGUE_H_
#define SPE_DWCONV_EPILOGUE_H_

#include "../isa/activation.h"

namespace spe {
namespace dw {

// The activation of one kernel instantiation. kAct = 0: none, ReLU or ReLU6 at run time, as a
// clamp y = min(max(acc, lo), hi) skipped for none (the constants go first: maxps / minps
// return their second operand when either is NaN, so NaN propagates). kActHardswish, kActSilu:
// that activation (isa/activation.h), inlined into the register block. Each of the three is
// an instantiation of its own: a branch per vector on the activation, or a call (which spills
// every live vector register of the block), cost SiLU up to 2x its own time, and the two
// activations' code in the clamp's instantiation slowed ReLU / none down 5-10% (register
// allocation); a second pass over each stored block cost more than either (the store-to-load
// forwarding of its masked tail; 7x7 planes, Zen 4).
template <class T, int kAct>
struct Epilogue {
  using reg = typename T::reg;
  reg lo, hi;
  int act;
  explicit Epilogue(int a)
      : lo(T::set1(a == 0 ? -__builtin_inff() : 0.0f)),
        hi(T::set1(a == 2 ? 6.0f : __builtin_inff())), act(a) {}
  __attribute__((always_inline)) reg operator()(reg v) const {
    if constexpr (kAct == kActSilu) return ExtraActivation<T>::silu(v);
    else if constexpr (kAct == kActHardswish) return ExtraActivation<T>::hardswish(v);
    else return act == 0 ? v : T::min(hi, T::max(lo, v));
  }
};

// f(Epilogue<T, ...>(act)): the instantiation for act.
template <class T, class F>
inline void with_epilogue(int act, F&& f) {
  if (act == kActSilu) f(Epilogue<T, kActSilu>(act));
  else if (act == kActHardswish) f(Epilogue<T, kActHardswish>(act));
  else f(Epilogue<T, 0>(act));
}

// y = act(acc [+ residual]) for n <= kWidth outputs (kPartial: n may be < kWidth, masked).
template <class T, bool kPartial, class E>
__attribute__((always_inline)) inline void store_out(typename T::reg acc, const float* rr,
                                                     float* yr, int n, const E& act) {
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
