// Scalar f32 depthwise kernels: the plane template over single floats ("vectors" of 1), the
// portable fallback. The tests check every variant against a reference of their own.
#include "plane_template.h"

namespace spe {
namespace {

struct Scalar {
  using reg = float;
  static constexpr int kWidth = 1;
  static constexpr int kRegs = 16;
  static reg zero() { return 0.0f; }
  static reg set1(float f) { return f; }
  static reg load(const float* p) { return *p; }
  static void store(float* p, reg v) { *p = v; }
  static int mask(int n) { return n; }  // a 1-float vector is never partial
  static reg load_mask(const float* p, int) { return *p; }
  static void store_mask(float* p, reg v, int) { *p = v; }
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static reg add(reg a, reg b) { return a + b; }
  static reg max(reg a, reg b) { return a > b ? a : b; }
  static reg min(reg a, reg b) { return a < b ? a : b; }
  static void copy(const float* s, float* d, int n) {
    for (int k = 0; k < n; ++k) d[k] = s[k];
  }
  static void deinterleave(const float* s, float* e, float* o, int n) {
    dw::deinterleave_scalar(s, e, o, n);
  }
};

}  // namespace

const DwKernels* dw_kernels_scalar() {
  static const DwKernels k = dw::make_kernels<Scalar>("scalar");
  return &k;
}

}  // namespace spe
