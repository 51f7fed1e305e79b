// NEON (AArch64 Advanced SIMD) f32 SpMM microkernels (4 floats a vector, 32 registers).
//
// Tiles: rows x vectors chosen so rows*NV accumulators + NV inputs + the entry's weights fit the
// 32 q registers (see the table in kernels/README.md). The weights of an entry are loaded as whole
// vectors (4 per q register, a 2-float d register and a single float for the remainder) and each
// row multiplies by one lane (fmla v.4s, x.4s, w.s[i]): broadcasting each weight into a register
// of its own would need R registers, and spilled accumulators at 4x24. Advanced SIMD is
// mandatory on AArch64, so this variant needs no run-time CPU check.
//
// NEON has no masked load/store: the tail vector moves only its valid lanes (1..3) with 64-bit
// and single-lane loads/stores, so a tile never touches memory past the last valid pixel (the
// input may be the caller's own NCHW buffer, the output the caller's y).
#if !defined(__aarch64__)
#error "neon.cc is the AArch64 variant: build it only for aarch64 / arm64"
#endif

#include <arm_neon.h>

#include "tile_template.h"

namespace spe {
namespace {

struct Neon {
  using reg = float32x4_t;
  static constexpr int kWidth = 4;
  static reg zero() { return vdupq_n_f32(0.0f); }
  static reg set1(float f) { return vdupq_n_f32(f); }
  // Row r's weight of an entry's R; reads only w[0, R). Lane subscripts, not vgetq_lane: r is a
  // constant only once the row loop is unrolled.
  template <int R>
  static reg weight(const float* w, int r) {
    const int q = r & ~3, d = r & ~1;
    if (q + 4 <= R) return vdupq_n_f32(vld1q_f32(w + q)[r & 3]);
    if (d + 2 <= R) return vdupq_n_f32(vld1_f32(w + d)[r & 1]);
    return vdupq_n_f32(w[r]);
  }
  static reg load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, reg v) { vst1q_f32(p, v); }
  // The mask is the count of valid lanes, 1..4.
  static int mask(int n) { return n; }
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
};

SpmmKernels make() {
  SpmmKernels k{};
  k.isa = "neon";
  k.width = Neon::kWidth;
  // registers: accumulators + inputs + weights
  fill_rows<Neon, 1, 8>(k);  //  8 +  8 + 1 = 17: 1x32
  fill_rows<Neon, 2, 8>(k);  // 16 +  8 + 1 = 25: 2x32
  fill_rows<Neon, 3, 7>(k);  // 21 +  7 + 2 = 30: 3x28
  fill_rows<Neon, 4, 6>(k);  // 24 +  6 + 1 = 31: 4x24
  fill_rows<Neon, 5, 5>(k);  // 25 +  5 + 2 = 32: 5x20
  fill_rows<Neon, 6, 4>(k);  // 24 +  4 + 2 = 30: 6x16
  fill_rows<Neon, 7, 3>(k);  // 21 +  3 + 3 = 27: 7x12 (7x16 would need 35)
  fill_rows<Neon, 8, 3>(k);  // 24 +  3 + 2 = 29: 8x12
  return k;
}

}  // namespace

const SpmmKernels* spmm_kernels_neon() {
  static const SpmmKernels k = make();
  return &k;
}

}  // namespace spe
