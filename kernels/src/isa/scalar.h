// Scalar "vector" traits: single floats, for the kernel templates' portable fallback (the
// depthwise plane template). Vector traits give a template (spmm/tile_template.h,
// dwconv/plane_template.h) everything ISA-specific: reg, kIsa, kWidth (floats a vector), kRegs
// (vector registers), zero(), set1(f), load(p), store(p, v), mask(n) (the first n lanes),
// load_mask(p, m), store_mask(p, v, m) (touching no float past those lanes), fma(a, b, c) =
// a*b + c, add, max, min, div, pow2_bits(v) = the float whose bits are v's shifted left by 23
// (the activation epilogues' 2^n, isa/activation.h; optionally kExpTableBits and pow2_table,
// see avx512.h), and the row moves copy(s, d, n) and deinterleave(s, even, odd, n):
// even[k] = s[2k], odd[k] = s[2k + 1] for k < n, touching nothing outside the floats they move.
// The depthwise flat method (dwconv/flat_template.h) also needs lanes (a lane mask kept in a
// table), lanes_of(bits), load_mask(p, lanes) and deinterleave_regs(a, b, even, odd): only the
// x86 traits have them.
#ifndef SPE_ISA_SCALAR_H_
#define SPE_ISA_SCALAR_H_

#include <cstdint>
#include <cstring>

#include "isa.h"

namespace spe {

// Internal linkage on purpose (an unnamed namespace in a header): each ISA's translation unit
// gets its own copy of these traits and of every template instantiated with them, compiled
// with its own flags, so the linker can never merge, say, an AVX-512 build of an inline
// function into code that must run on a CPU without AVX-512.
namespace {

// deinterleave for traits without a vector version (and for a vector version's remainder)
inline void deinterleave_scalar(const float* s, float* even, float* odd, int n) {
  for (int k = 0; k < n; ++k) {
    even[k] = s[2 * k];
    odd[k] = s[2 * k + 1];
  }
}

struct Scalar {
  using reg = float;
  static constexpr Isa kIsa = Isa::scalar;
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
  static reg div(reg a, reg b) { return a / b; }
  static reg pow2_bits(reg v) {
    uint32_t e;
    std::memcpy(&e, &v, sizeof e);
    e <<= 23;
    std::memcpy(&v, &e, sizeof e);
    return v;
  }
  static void copy(const float* s, float* d, int n) {
    for (int k = 0; k < n; ++k) d[k] = s[k];
  }
  static void deinterleave(const float* s, float* e, float* o, int n) {
    deinterleave_scalar(s, e, o, n);
  }
};

}  // namespace
}  // namespace spe
#endif  // SPE_ISA_SCALAR_H_
