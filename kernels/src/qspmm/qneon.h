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
  static constexpr int kGroup = 4;  // 16 outputs: two narrows and a saturating narrow of pairs
  struct RowConst {
    int32x4_t corr, rz, zy;
    int16x8_t zy16;
    float32x4_t scale, bias, rs, lo, hi;
  };
  static RowConst make_const(int32x4_t corr, float32x4_t scale, float32x4_t bias, float res_scale,
                             int32_t res_zero, float six, int32_t zy, int act) {
    const QClamp k = qclamp(act, six, zy);
    return {corr, vdupq_n_s32(res_zero), vdupq_n_s32(zy), vdupq_n_s16(int16_t(zy)), scale, bias,
            vdupq_n_f32(res_scale), vdupq_n_f32(k.lo), vdupq_n_f32(k.hi)};
  }
  static RowConst row_const(const QEpilogue& e, int o) {
    return make_const(vdupq_n_s32(e.corr[o]), vdupq_n_f32(e.scale[o]), vdupq_n_f32(e.bias[o]),
                      e.res_scale, e.res_zero, e.six, e.out_zero, e.act);
  }
  // the depthwise row (qtile_template.h's qdw_row)
  static ivec add_i32(ivec a, ivec b) { return vaddq_s32(a, b); }
  static ivec load_i32(const int32_t* p) { return vld1q_s32(p); }
  static ivec mul_add(ivec acc, ivec x, ivec w) { return vmlaq_s32(acc, x, w); }
  static ivec load_u8(const uint8_t* p, int n) {
    uint32_t b = 0;
    std::memcpy(&b, p, size_t(n));
    const uint16x8_t h = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(b)));
    return vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(h)));
  }
  static RowConst lane_const(const QDwRowArgs& d) {
    return make_const(vld1q_s32(d.corr), vld1q_f32(d.scale), vld1q_f32(d.bias), d.res_scale,
                      d.res_zero, d.six, d.out_zero, d.act);
  }
  // a = sums + corr -> round(v) as s32 in [-zy, 255 - zy] (qclamp's bounds in float; fcvtns
  // rounds half to even); r: the residual's bytes widened to s32, or null
  static int32x4_t requant_r(ivec a, const int32x4_t* r, const RowConst& c) {
    float32x4_t v = vfmaq_f32(c.bias, vcvtq_f32_s32(a), c.scale);
    if (r) v = vfmaq_f32(v, vcvtq_f32_s32(vsubq_s32(*r, c.rz)), c.rs);
    return vcvtnq_s32_f32(vminq_f32(vmaxq_f32(v, c.lo), c.hi));
  }
  static int32x4_t requant(ivec a, const uint8_t* res, int n, const RowConst& c) {
    if (!res) return requant_r(a, nullptr, c);
    uint32_t rb = 0;
    std::memcpy(&rb, res, size_t(n));
    const uint16x8_t r16 = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(rb)));
    const int32x4_t r = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(r16)));
    return requant_r(a, &r, c);
  }
  static void requant_store(uint8_t* y, ivec a, const uint8_t* res, int n, const RowConst& c) {
    const int16x4_t q16 = vmovn_s32(vaddq_s32(requant(a, res, n, c), c.zy));  // in [0, 255]
    const uint8x8_t q8 = vmovn_u16(vreinterpretq_u16_s16(vcombine_s16(q16, q16)));
    const uint32_t b = vget_lane_u32(vreinterpret_u32_u8(q8), 0);
    std::memcpy(y, &b, size_t(n));
  }
  static void requant_store_group(uint8_t* y, ivec a0, ivec a1, ivec a2, ivec a3, const uint8_t* res,
                                  const RowConst& c) {
    // s32 in [-255, 255] -> s16, + zy (now in [0, 255]) -> u8
    const int16x8_t h0 = vaddq_s16(vmovn_high_s32(vmovn_s32(requant(a0, res, kPix, c)),
                                                  requant(a1, res ? res + kPix : res, kPix, c)), c.zy16);
    const int16x8_t h1 = vaddq_s16(vmovn_high_s32(vmovn_s32(requant(a2, res ? res + 2 * kPix : res, kPix, c)),
                                                  requant(a3, res ? res + 3 * kPix : res, kPix, c)), c.zy16);
    vst1q_u8(y, vmovn_high_u16(vmovn_u16(vreinterpretq_u16_s16(h0)), vreinterpretq_u16_s16(h1)));
  }
  static constexpr bool kQuads = true;
  static void requant_store_quads(uint8_t* y, ivec a0, ivec a1, ivec a2, ivec a3, const uint8_t* res, int n,
                                  const RowConst& c0, const RowConst& c1, const RowConst& c2,
                                  const RowConst& c3) {
    // row k's value + zy (in [0, 255]) inserted at byte k of each pixel's word
    int32x4_t u0, u1, u2, u3;
    if (res) {
      uint32x4_t w;
      if (n == kPix) {
        w = vld1q_u32(reinterpret_cast<const uint32_t*>(res));
      } else {
        uint32_t t[kPix] = {};
        std::memcpy(t, res, size_t(4 * n));
        w = vld1q_u32(t);
      }
      const uint32x4_t ff = vdupq_n_u32(0xFF);
      const int32x4_t r0 = vreinterpretq_s32_u32(vandq_u32(w, ff)),
                      r1 = vreinterpretq_s32_u32(vandq_u32(vshrq_n_u32(w, 8), ff)),
                      r2 = vreinterpretq_s32_u32(vandq_u32(vshrq_n_u32(w, 16), ff)),
                      r3 = vreinterpretq_s32_u32(vshrq_n_u32(w, 24));
      u0 = requant_r(a0, &r0, c0), u1 = requant_r(a1, &r1, c1), u2 = requant_r(a2, &r2, c2),
      u3 = requant_r(a3, &r3, c3);
    } else {
      u0 = requant_r(a0, nullptr, c0), u1 = requant_r(a1, nullptr, c1), u2 = requant_r(a2, nullptr, c2),
      u3 = requant_r(a3, nullptr, c3);
    }
    const int32x4_t zy = c0.zy;
    uint32x4_t w = vreinterpretq_u32_s32(vaddq_s32(u0, zy));
    w = vsliq_n_u32(w, vreinterpretq_u32_s32(vaddq_s32(u1, zy)), 8);
    w = vsliq_n_u32(w, vreinterpretq_u32_s32(vaddq_s32(u2, zy)), 16);
    w = vsliq_n_u32(w, vreinterpretq_u32_s32(vaddq_s32(u3, zy)), 24);
    if (n == kPix) return vst1q_u32(reinterpret_cast<uint32_t*>(y), w);
    uint32_t t[kPix];
    vst1q_u32(t, w);
    std::memcpy(y, t, size_t(4 * n));
  }
};

}  // namespace
}  // namespace spe
#endif  // SPE_QSPMM_QNEON_H_
