// NEON (AArch64 Advanced SIMD) vector traits (4 floats a vector, 32 registers; see scalar.h for
// the interface). Advanced SIMD is mandatory on AArch64: no run-time CPU check.
//
// NEON has no masked load/store: a partial vector moves only its valid lanes (1..3) with 64-bit
// and single-lane loads/stores, so a kernel never touches memory past the last valid float (the
// input may be the caller's own NCHW buffer, the output the caller's y).
#ifndef SPE_ISA_NEON_H_
#define SPE_ISA_NEON_H_

#if !defined(__aarch64__)
#error "the NEON variants are AArch64 code: build them only for aarch64 / arm64"
#endif

#include <arm_neon.h>

#include "isa.h"
#include "scalar.h"

namespace spe {

// Internal linkage on purpose (an unnamed namespace in a header): each ISA's translation unit
// gets its own copy of these traits and of every template instantiated with them, compiled
// with its own flags, so the linker can never merge, say, an AVX-512 build of an inline
// function into code that must run on a CPU without AVX-512.
namespace {

struct Neon {
  using reg = float32x4_t;
  static constexpr Isa kIsa = Isa::neon;
  static constexpr int kWidth = 4;
  static constexpr int kRegs = 32;
  static reg zero() { return vdupq_n_f32(0.0f); }
  static reg set1(float f) { return vdupq_n_f32(f); }
  // Row r's weight of an entry's R (the SpMM tile's weight hook, spmm/tile_template.h); reads
  // only w[0, R). Lane subscripts, not vgetq_lane: r is a constant only once the row loop is
  // unrolled.
  template <int R>
  static reg weight(const float* w, int r) {
    const int q = r & ~3, d = r & ~1;
    if (q + 4 <= R) return vdupq_n_f32(vld1q_f32(w + q)[r & 3]);
    if (d + 2 <= R) return vdupq_n_f32(vld1_f32(w + d)[r & 1]);
    return vdupq_n_f32(w[r]);
  }
  static reg load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, reg v) { vst1q_f32(p, v); }
  static int mask(int n) { return n; }  // the count of valid lanes, 1..4
  static reg load_mask(const float* p, int n) {
    switch (n) {
      case 1: return vld1q_lane_f32(p, vdupq_n_f32(0.0f), 0);
      case 2: return vcombine_f32(vld1_f32(p), vdup_n_f32(0.0f));
      case 3: return vcombine_f32(vld1_f32(p), vld1_lane_f32(p + 2, vdup_n_f32(0.0f), 0));
      default: return vld1q_f32(p);
    }
  }
  static void store_mask(float* p, reg v, int n) {
    switch (n) {
      case 1: vst1q_lane_f32(p, v, 0); break;
      case 2: vst1_f32(p, vget_low_f32(v)); break;
      case 3:
        vst1_f32(p, vget_low_f32(v));
        vst1q_lane_f32(p + 2, v, 2);
        break;
      default: vst1q_f32(p, v);
    }
  }
  static reg fma(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }  // a*b + c, fused
  static reg add(reg a, reg b) { return vaddq_f32(a, b); }
  static reg max(reg a, reg b) { return vmaxq_f32(a, b); }
  static reg min(reg a, reg b) { return vminq_f32(a, b); }
  static reg div(reg a, reg b) { return vdivq_f32(a, b); }
  static reg pow2_bits(reg v) {
    return vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(v), 23));
  }
  static void copy(const float* s, float* d, int n) {
    int k = 0;
    for (; k + 4 <= n; k += 4) vst1q_f32(d + k, vld1q_f32(s + k));
    for (; k < n; ++k) d[k] = s[k];
  }
  // ld2 splits 8 floats into the 4 even and 4 odd ones.
  static void deinterleave(const float* s, float* e, float* o, int n) {
    int k = 0;
    for (; k + 4 <= n; k += 4) {
      const float32x4x2_t v = vld2q_f32(s + 2 * k);
      vst1q_f32(e + k, v.val[0]);
      vst1q_f32(o + k, v.val[1]);
    }
    deinterleave_scalar(s + 2 * k, e + k, o + k, n - k);
  }
};

}  // namespace
}  // namespace spe
#endif  // SPE_ISA_NEON_H_
