// What the two NEON int8 variants share (neon.cc, neondot.cc): the u8 planes loaded as s8
// (v ^ 0x80 = v - 128: smull and sdot multiply signed bytes; x_bias 128), the s32 sums' loads and
// stores, and the requantization. Only those two translation units include this.
#ifndef SPE_QSPMM_QNEON_H_
#define SPE_QSPMM_QNEON_H_

#if !defined(__aarch64__)
#error "the NEON variants are AArch64 code"
#endif

#include <arm_neon.h>

#include <cstring>

#include "qspmm.h"

namespace spe {
namespace {

struct QNeonCommon {
  static constexpr int kPix = 4, kWBytes = 4, kXBias = 128;
  using ivec = int32x4_t;
  static int8x16_t load(const uint8_t* p) {
    return vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p), vdupq_n_u8(0x80)));
  }
  static int8x16_t load_part(const uint8_t* p, int n) {
    uint8_t t[16] = {};
    std::memcpy(t, p, size_t(4 * n));
    return load(t);
  }
  static ivec load_acc(const int32_t* p, int n) {
    if (n == kPix) return vld1q_s32(p);
    int32_t t[kPix] = {};
    std::memcpy(t, p, sizeof(int32_t) * size_t(n));
    return vld1q_s32(t);
  }
  static void store_acc(int32_t* p, ivec v, int n) {
    if (n == kPix) return vst1q_s32(p, v);
    int32_t t[kPix];
    vst1q_s32(t, v);
    std::memcpy(p, t, sizeof(int32_t) * size_t(n));
  }
  struct RowConst {
    int32x4_t corr, rz, zy;
    float32x4_t scale, bias, rs, six;
    int act;
  };
  static RowConst row_const(const QEpilogue& e, int o) {
    return {vdupq_n_s32(e.corr[o]), vdupq_n_s32(e.res_zero), vdupq_n_s32(e.out_zero),
            vdupq_n_f32(e.scale[o]), vdupq_n_f32(e.bias[o]), vdupq_n_f32(e.res_scale),
            vdupq_n_f32(e.six), e.act};
  }
  // the depthwise row (qtile_template.h's qdw_row)
  static ivec zero_i32() { return vdupq_n_s32(0); }
  static ivec load_i32(const int32_t* p) { return vld1q_s32(p); }
  static ivec mul_add(ivec acc, ivec x, ivec w) { return vmlaq_s32(acc, x, w); }
  static ivec load_u8(const uint8_t* p, int n) {
    uint32_t b = 0;
    std::memcpy(&b, p, size_t(n));
    const uint16x8_t h = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(b)));
    return vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(h)));
  }
  static RowConst lane_const(const QDwRowArgs& d) {
    return {vld1q_s32(d.corr), vdupq_n_s32(d.res_zero), vdupq_n_s32(d.out_zero), vld1q_f32(d.scale),
            vld1q_f32(d.bias), vdupq_n_f32(d.res_scale), vdupq_n_f32(d.six), d.act};
  }
  static void requant_store(uint8_t* y, ivec s, const uint8_t* res, int n, const RowConst& c) {
    s = vaddq_s32(s, c.corr);
    float32x4_t v = vfmaq_f32(c.bias, vcvtq_f32_s32(s), c.scale);
    if (res) {
      uint32_t rb = 0;
      std::memcpy(&rb, res, size_t(n));
      const uint16x8_t r16 = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(rb)));
      const int32x4_t r = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(r16)));
      v = vfmaq_f32(v, vcvtq_f32_s32(vsubq_s32(r, c.rz)), c.rs);
    }
    if (c.act >= 1) v = vmaxq_f32(v, vdupq_n_f32(0.0f));
    if (c.act == 2) v = vminq_f32(v, c.six);
    v = vminq_f32(v, vdupq_n_f32(512.0f));
    // fcvtns saturates (INT32_MIN below -2^31), and q + zy cannot overflow: zy >= 0, v <= 512
    const int32x4_t q = vaddq_s32(vcvtnq_s32_f32(v), c.zy);
    // saturating narrows: s32 -> s16, then s16 -> u8 (the clamp to [0, 255])
    const int16x4_t q16 = vqmovn_s32(q);
    const uint8x8_t q8 = vqmovun_s16(vcombine_s16(q16, q16));
    const uint32_t b = vget_lane_u32(vreinterpret_u32_u8(q8), 0);
    std::memcpy(y, &b, size_t(n));
  }
};

}  // namespace
}  // namespace spe
#endif  // SPE_QSPMM_QNEON_H_
