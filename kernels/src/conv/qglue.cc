// The int8 graph's glue (spe.h, "int8 glue"): float <-> u8 at its edges, max pooling inside.
// u8 tensors in NCHW or NCHW4 (4 channels a 32-bit word); parallel over (image, channel quad).
//
// quantize: q = clamp(round_half_even(x * float(1 / scale)) + zero_point, 0, 255), as
// engine.quant.quantize (torch.round) computes it: the multiply by the float reciprocal, then
// the float-to-int conversion in the default rounding mode (nearest even: cvtps2dq, fcvtns).
// A NaN quantizes to the zero point's side of nothing: it is refused up front (a model's input
// with a NaN has no int8 value).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif  // (interleave.h includes them too)

#include "../common/error.h"
#include "../common/threadpool.h"
#include "interleave.h"
#include "qglue.h"
#include "spe/spe.h"

using spe::fail;

namespace spe {
namespace {

spe_status check_tensor(const void* x, const void* y, int32_t n, int32_t c, int32_t h, int32_t w,
                        int32_t layout, const char* what) {
  if (!x || !y) return fail(SPE_ERR_INVALID_ARGUMENT, std::string(what) + ": null x/y");
  if (n < 0 || c <= 0 || h <= 0 || w <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, std::string(what) + ": n >= 0 and c, h, w > 0 needed (got " +
                                              std::to_string(n) + ", " + std::to_string(c) + ", " +
                                              std::to_string(h) + ", " + std::to_string(w) + ")");
  if (layout != SPE_QLAYOUT_NCHW && layout != SPE_QLAYOUT_NCHW4)
    return fail(SPE_ERR_INVALID_ARGUMENT, std::string(what) + ": unknown layout " + std::to_string(layout));
  if (int64_t(h) * w > (int64_t(1) << 40) / std::max(1, c))
    return fail(SPE_ERR_INVALID_ARGUMENT, std::string(what) + ": tensor too large");
  return SPE_OK;
}

spe_status check_q(const spe_qparams& q, const char* what) {
  if (!(std::isfinite(q.scale) && q.scale > 0.0f && std::isfinite(1.0f / q.scale)))
    return fail(SPE_ERR_INVALID_ARGUMENT, std::string(what) + ": scale must be finite and > 0");
  if (q.zero_point < 0 || q.zero_point > 255)
    return fail(SPE_ERR_INVALID_ARGUMENT, std::string(what) + ": zero point must be in [0, 255]");
  return SPE_OK;
}

// d[k] = clamp(rne(s[k] * inv) + zp, 0, 255) for n floats; s finite, |s * inv| may be huge
// (clamped before the conversion, which would give INT_MIN past 2^31).
void quantize_row(const float* s, uint8_t* d, int64_t n, float inv, int32_t zp) {
  int64_t k = 0;
#if defined(__SSE2__)
  const __m128 vi = _mm_set1_ps(inv), lo = _mm_set1_ps(-512.0f), hi = _mm_set1_ps(512.0f);
  const __m128i z = _mm_set1_epi32(zp);
  for (; k + 16 <= n; k += 16) {
    __m128i q[4];
    for (int v = 0; v < 4; ++v) {
      const __m128 f = _mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_loadu_ps(s + k + 4 * v), vi), lo), hi);
      q[v] = _mm_add_epi32(_mm_cvtps_epi32(f), z);
    }
    const __m128i a = _mm_packs_epi32(q[0], q[1]), b = _mm_packs_epi32(q[2], q[3]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + k), _mm_packus_epi16(a, b));
  }
#elif defined(__aarch64__)
  const float32x4_t lo = vdupq_n_f32(-512.0f), hi = vdupq_n_f32(512.0f);
  const int32x4_t z = vdupq_n_s32(zp);
  for (; k + 8 <= n; k += 8) {
    int16x4_t h[2];
    for (int v = 0; v < 2; ++v) {
      const float32x4_t f = vminq_f32(vmaxq_f32(vmulq_n_f32(vld1q_f32(s + k + 4 * v), inv), lo), hi);
      h[v] = vqmovn_s32(vaddq_s32(vcvtnq_s32_f32(f), z));
    }
    vst1_u8(d + k, vqmovun_s16(vcombine_s16(h[0], h[1])));
  }
#endif
  for (; k < n; ++k) {
    const float f = std::min(std::max(s[k] * inv, -512.0f), 512.0f);
    d[k] = uint8_t(std::min(std::max(int32_t(std::nearbyint(f)) + zp, 0), 255));
  }
}

#if defined(__x86_64__)
#include <immintrin.h>
// One NCHW4 block in one pass (AVX-512 F/BW/DQ, picked at run time): px pixels of channels
// t < ct of one quad (src[t] each channel's first float), each pixel's 4 codes written as one
// word (channels past ct: the zero point). The clamp is done in float, to [-zp, 255 - zp], so
// that round(x * inv) + zp needs none after: the same bytes as quantize_row (x * inv at or past
// 255 - zp rounds to at least that and clamps to 255, at or below -zp to 0). False if a value
// is not finite (d is then not defined: the caller finds the first one and refuses).
__attribute__((target("avx512f,avx512bw,avx512dq"))) bool quantize_quad_avx512(
    const float* const* src, int ct, int64_t px, float inv, int32_t zp, uint8_t* d) {
  const __m512 vi = _mm512_set1_ps(inv), lo = _mm512_set1_ps(float(-zp)), hi = _mm512_set1_ps(float(255 - zp));
  const __m512i z = _mm512_set1_epi32(zp);
  const __mmask16 all = 0xFFFF;  // the zero-masked forms: the plain ones pass an undefined
                                 // vector GCC 12 warns about (as qspmm/avx512.cc)
  __mmask16 bad = 0;
  for (int64_t i = 0; i < px; i += 16) {
    const __mmask16 m = px - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (px - i)) - 1u);
    __m512i w = _mm512_setzero_si512();
    for (int t = 0; t < 4; ++t) {
      __m512i u = z;
      if (t < ct) {
        const __m512 x = _mm512_maskz_loadu_ps(m, src[t] + i);
        bad |= _mm512_fpclass_ps_mask(x, 0x99);   // QNaN, +inf, -inf, SNaN
        const __m512 f = _mm512_maskz_min_ps(all, _mm512_maskz_max_ps(all, _mm512_mul_ps(x, vi), lo), hi);
        u = _mm512_add_epi32(_mm512_maskz_cvtps_epi32(all, f), z);
      }
      w = _mm512_or_si512(w, _mm512_maskz_sllv_epi32(all, u, _mm512_set1_epi32(8 * t)));
    }
    _mm512_mask_storeu_epi32(d + 4 * i, m, w);
  }
  return bad == 0;
}

// The inverse, one NCHW4 quad plane of px pixels: d[t][i] = float(byte t of word i - zp) * scale
// for channels t < ct (dequantize_lane's two float ops, 16 pixels a vector).
__attribute__((target("avx512f,avx512bw,avx512dq"))) void dequantize_quad_avx512(
    const uint8_t* s, int ct, int64_t px, int32_t zp, float scale, float* const* d) {
  const __m512 sc = _mm512_set1_ps(scale);
  const __m512i z = _mm512_set1_epi32(zp), lo8 = _mm512_set1_epi32(0xff);
  const __mmask16 all = 0xFFFF;
  for (int64_t i = 0; i < px; i += 16) {
    const __mmask16 m = px - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (px - i)) - 1u);
    const __m512i w = _mm512_maskz_loadu_epi32(m, s + 4 * i);
    for (int t = 0; t < ct; ++t) {
      const __m512i u = _mm512_sub_epi32(_mm512_and_si512(_mm512_maskz_srli_epi32(all, w, unsigned(8 * t)), lo8), z);
      _mm512_mask_storeu_ps(d[t] + i, m, _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(all, u), sc));
    }
  }
}

std::atomic<bool> g_quantize_avx512{true};   // set_quantize_avx512

bool has_avx512_glue() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq");
  return yes && g_quantize_avx512.load(std::memory_order_relaxed);
}
#endif

// -1 if s[0..n) are all finite, else the index of the first that is not (an exponent field of
// all ones: inf or NaN). An integer loop, so it vectorises; run inside the parallel rows (a
// serial pass over a 1.2M-float tensor cost more than the quantization itself).
int64_t first_nonfinite(const float* s, int64_t n) {
  uint32_t any = 0;
  for (int64_t k = 0; k < n; ++k) {
    uint32_t b;
    std::memcpy(&b, s + k, 4);
    any |= uint32_t((b & 0x7f800000u) == 0x7f800000u);
  }
  if (!any) return -1;
  for (int64_t k = 0; k < n; ++k)
    if (!std::isfinite(s[k])) return k;
  return -1;
}

// The smallest index a row reported (relaxed: only the minimum matters, read after the join).
void note_bad(std::atomic<int64_t>& bad, int64_t i) {
  int64_t cur = bad.load(std::memory_order_relaxed);
  while (i < cur && !bad.compare_exchange_weak(cur, i, std::memory_order_relaxed)) {
  }
}

// d[i] = float(byte t of pixel i - zp) * scale (the table's value: the same two float ops) for
// the leading pixels of an NCHW4 plane, 4 at a time; returns how many it did (the rest: the
// caller's table loop). A pixel is one 32-bit word, channel t its byte t.
int64_t dequantize_lane(const uint8_t* s, float* d, int64_t m, int t, int32_t zp, float scale) {
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128i mask = _mm_set1_epi32(0xff), z = _mm_set1_epi32(zp), sh = _mm_cvtsi32_si128(8 * t);
  const __m128 sc = _mm_set1_ps(scale);
  for (; i + 4 <= m; i += 4) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 4 * i));
    const __m128i c = _mm_sub_epi32(_mm_and_si128(_mm_srl_epi32(v, sh), mask), z);
    _mm_storeu_ps(d + i, _mm_mul_ps(_mm_cvtepi32_ps(c), sc));
  }
#elif defined(__aarch64__)
  const uint32x4_t mask = vdupq_n_u32(0xff);
  const int32x4_t z = vdupq_n_s32(zp), sh = vdupq_n_s32(-8 * t);
  for (; i + 4 <= m; i += 4) {
    const uint32x4_t v = vld1q_u32(reinterpret_cast<const uint32_t*>(s + 4 * i));
    const int32x4_t c = vsubq_s32(vreinterpretq_s32_u32(vandq_u32(vshlq_u32(v, sh), mask)), z);
    vst1q_f32(d + i, vmulq_n_f32(vcvtq_f32_s32(c), scale));
  }
#else
  (void)s, (void)d, (void)m, (void)t, (void)zp, (void)scale;
#endif
  return i;
}

// The image's quad (b, q) of an NCHW4 tensor, or its channel (b, ch) of an NCHW one: work items.
template <class F>
void per_plane(int32_t n, int32_t c, int32_t layout, F f) {
  const int64_t per = layout == SPE_QLAYOUT_NCHW4 ? (c + 3) / 4 : c;
  ThreadPool::global().parallel_for(int64_t(n) * per, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(i / per, i % per);
  });
}

}  // namespace

void set_quantize_avx512(bool on) {
#if defined(__x86_64__)
  g_quantize_avx512.store(on, std::memory_order_relaxed);
#else
  (void)on;
#endif
}

namespace {

spe_status quantize(const float* x, int32_t n, int32_t c, int32_t h, int32_t w, spe_qparams q,
                    int32_t layout, uint8_t* y) {
  if (spe_status st = check_tensor(x, y, n, c, h, w, layout, "spe_quantize"); st != SPE_OK) return st;
  if (spe_status st = check_q(q, "spe_quantize"); st != SPE_OK) return st;
  const int64_t hw = int64_t(h) * w, total = int64_t(n) * c * hw;
  std::atomic<int64_t> bad{total};
  auto checked = [&](int64_t off, int64_t len) {
    const int64_t k = first_nonfinite(x + off, len);
    if (k >= 0) note_bad(bad, off + k);
  };
  const float inv = 1.0f / q.scale;
  const int32_t zp = q.zero_point, C4 = (c + 3) / 4;
  auto result = [&]() -> spe_status {
    const int64_t i = bad.load();
    if (i < total)   // the output is not defined then
      return fail(SPE_ERR_INVALID_ARGUMENT, "spe_quantize: x[" + std::to_string(i) + "] is not finite");
    return SPE_OK;
  };
  if (layout == SPE_QLAYOUT_NCHW) {
    per_plane(n, c, layout, [&](int64_t b, int64_t p) {
      checked((b * c + p) * hw, hw);
      quantize_row(x + (b * c + p) * hw, y + (b * c + p) * hw, hw, inv, zp);
    });
    return result();
  }
  // NCHW4: one item per (image, quad, block of image rows): blocks of about 1024 pixels, so
  // a 3-channel input (one quad) still splits and a 7x7 plane is one item, not seven
  const int64_t W = w, rb = std::max<int64_t>(1, std::min<int64_t>(h, 1024 / std::max(1, w)));
  const int64_t blocks = (h + rb - 1) / rb;
  ThreadPool::global().parallel_for(int64_t(n) * C4 * blocks, 1, [&](int64_t ib, int64_t ie) {
    std::vector<uint8_t> rows;   // the portable path's, sized on first use (the one-pass path
                                 // needs none: an allocation per item was a third of a small
                                 // tensor's time)
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / (int64_t(C4) * blocks), qd = it / blocks % C4;
      const int64_t r0 = it % blocks * rb, px = (std::min<int64_t>(h, r0 + rb) - r0) * W;
#if defined(__x86_64__)
      if (has_avx512_glue()) {   // one pass: check, quantize and interleave
        const float* src[4];
        const int ct = std::min(4, c - 4 * int(qd));
        for (int t = 0; t < ct; ++t) src[t] = x + ((b * c + 4 * qd + t) * h + r0) * W;
        if (!quantize_quad_avx512(src, ct, px, inv, zp, y + ((b * C4 + qd) * h + r0) * W * 4))
          for (int t = 0; t < ct; ++t) checked(src[t] - x, px);   // which one, for the error
        continue;
      }
#endif
      rows.assign(size_t(4 * rb * W), uint8_t(zp));  // channels past c: the zero point
      for (int t = 0; t < 4 && 4 * qd + t < c; ++t) {
        const int64_t off = ((b * c + 4 * qd + t) * h + r0) * W;
        checked(off, px);
        quantize_row(x + off, rows.data() + t * px, px, inv, zp);
      }
      const uint8_t* rw = rows.data();
      interleave4(rw, rw + px, rw + 2 * px, rw + 3 * px, y + ((b * C4 + qd) * h + r0) * W * 4, px);
    }
  });
  return result();
}

spe_status dequantize(const uint8_t* x, int32_t n, int32_t c, int32_t h, int32_t w, spe_qparams q,
                      int32_t layout, float* y) {
  if (spe_status st = check_tensor(x, y, n, c, h, w, layout, "spe_dequantize"); st != SPE_OK) return st;
  if (spe_status st = check_q(q, "spe_dequantize"); st != SPE_OK) return st;
  const int64_t hw = int64_t(h) * w;
  const int32_t C4 = (c + 3) / 4;
  float table[256];  // (v - zp) * scale, as engine.quant.dequantize computes it
  for (int v = 0; v < 256; ++v) table[v] = float(v - q.zero_point) * q.scale;
  per_plane(n, c, layout, [&](int64_t b, int64_t p) {
    if (layout == SPE_QLAYOUT_NCHW) {
      const uint8_t* s = x + (b * c + p) * hw;
      float* d = y + (b * c + p) * hw;
      for (int64_t i = 0; i < hw; ++i) d[i] = table[s[i]];
      return;
    }
    const uint8_t* s = x + (b * C4 + p) * hw * 4;
    const int64_t m = hw;
#if defined(__x86_64__)
    if (has_avx512_glue()) {   // the quad's channels in one pass
      const int ct = std::min<int>(4, c - 4 * int(p));
      float* d[4];
      for (int t = 0; t < ct; ++t) d[t] = y + (b * c + 4 * p + t) * m;
      dequantize_quad_avx512(s, ct, m, q.zero_point, q.scale, d);
      return;
    }
#endif
    for (int t = 0; t < 4 && 4 * p + t < c; ++t) {
      float* d = y + (b * c + 4 * p + t) * m;
      const int64_t i0 = dequantize_lane(s, d, m, t, q.zero_point, q.scale);
      for (int64_t i = i0; i < m; ++i) d[i] = table[s[4 * i + t]];
    }
  });
  return SPE_OK;
}

// Max pooling of u8 (any one scale and zero point: quantization is monotone, so the max of the
// codes is the code of the max). Padding never wins (it is skipped, as torch's -inf).
spe_status max_pool_u8(const uint8_t* x, int32_t n, int32_t c, int32_t h, int32_t w, int32_t kh,
                       int32_t kw, int32_t sh, int32_t sw, int32_t ph, int32_t pw, int32_t layout,
                       uint8_t* y) {
  if (spe_status st = check_tensor(x, y, n, c, h, w, layout, "spe_max_pool2d_u8"); st != SPE_OK) return st;
  int32_t ho = 0, wo = 0;
  if (spe_status st = spe_max_pool2d_output_size(h, w, kh, kw, sh, sw, ph, pw, &ho, &wo); st != SPE_OK)
    return st;
  const int64_t hw = int64_t(h) * w, ohw = int64_t(ho) * wo;
  const int L = layout == SPE_QLAYOUT_NCHW4 ? 4 : 1;  // bytes a pixel
  const int32_t planes = layout == SPE_QLAYOUT_NCHW4 ? (c + 3) / 4 : c;
  // Per output row: the max over its kernel rows (byte-wise over whole rows: vectorised), into a
  // row with pw zero pixels on the left (0 never wins a max of u8; torch's padding never does
  // either), split into its sw column phases; output pixel j is then the max over kx of phase
  // kx % sw at pixel j + kx / sw: contiguous runs, byte-wise again.
  const int64_t need = int64_t(wo - 1) * sw + kw;        // padded row pixels the windows read
  const int64_t per_phase = (need + sw - 1) / sw;
  per_plane(n, c, layout, [&](int64_t b, int64_t p) {
    const uint8_t* src = x + (b * planes + p) * hw * L;
    uint8_t* dst = y + (b * planes + p) * ohw * L;
    std::vector<uint8_t> row(size_t(per_phase * sw * L), 0), phases(size_t(per_phase * sw * L), 0);
    // locals, not the lambda's captures: a byte store may alias any of those (u8 aliases
    // everything), which made the compiler reload them every byte and not vectorise
    const int64_t in_px = std::min<int64_t>(w, need - pw), row_bytes = in_px * L;
    const int64_t n_out = int64_t(wo) * L, pp = per_phase;
    const int sw_ = sw, kw_ = kw, L_ = L;
    for (int oy = 0; oy < ho; ++oy) {
      const int y0 = std::max(0, oy * sh - ph), y1 = std::min(h, oy * sh - ph + kh);
      uint8_t* r = row.data() + int64_t(pw) * L;
      std::memcpy(r, src + int64_t(y0) * w * L, size_t(row_bytes));
      for (int iy = y0 + 1; iy < y1; ++iy) {
        const uint8_t* s2 = src + int64_t(iy) * w * L;
        uint8_t* __restrict rr = r;
        for (int64_t i = 0; i < row_bytes; ++i) rr[i] = std::max(rr[i], s2[i]);
      }
      const uint8_t* full = row.data();
      if (sw > 1) {  // column phases: phase q holds padded pixels q, q + sw, ... (a pixel is
        full = phases.data();  // a byte or a 32-bit word: no memcpy call a pixel)
        for (int q = 0; q < sw_; ++q) {
          uint8_t* ph_q = phases.data() + q * pp * L_;
          const uint8_t* rw = row.data();
          if (L_ == 4) {
            for (int64_t j = 0; j < pp; ++j) {
              uint32_t v;
              std::memcpy(&v, rw + (j * sw_ + q) * 4, 4);
              std::memcpy(ph_q + j * 4, &v, 4);
            }
          } else {
            for (int64_t j = 0; j < pp; ++j) ph_q[j] = rw[j * sw_ + q];
          }
        }
      }
      uint8_t* o = dst + int64_t(oy) * n_out;
      std::memcpy(o, full, size_t(n_out));  // kx = 0: phase 0 at j
      for (int kx = 1; kx < kw_; ++kx) {
        const uint8_t* t = full + ((kx % sw_) * pp + kx / sw_) * L_;
        uint8_t* __restrict oo = o;
        for (int64_t i = 0; i < n_out; ++i) oo[i] = std::max(oo[i], t[i]);
      }
    }
  });
  return SPE_OK;
}

}  // namespace

// d + i * stride (4 floats) = float(byte t of word i - zp) * scale for the n words at s, the
// same two float operations as the table; returns how many it did (the caller does the rest).
int64_t dequantize_words(const uint8_t* s, int64_t n, int32_t zp, float scale, float* d, int64_t stride) {
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128i z = _mm_setzero_si128(), zv = _mm_set1_epi32(zp);
  const __m128 sc = _mm_set1_ps(scale);
  for (; i < n; ++i) {
    int32_t w;
    std::memcpy(&w, s + 4 * i, 4);
    const __m128i v = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(w), z), z);
    _mm_storeu_ps(d + i * stride, _mm_mul_ps(_mm_cvtepi32_ps(_mm_sub_epi32(v, zv)), sc));
  }
#elif defined(__aarch64__)
  const int32x4_t zv = vdupq_n_s32(zp);
  for (; i < n; ++i) {
    uint32_t w;
    std::memcpy(&w, s + 4 * i, 4);
    const uint16x8_t h = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(w)));
    const int32x4_t v = vsubq_s32(vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(h))), zv);
    vst1q_f32(d + i * stride, vmulq_n_f32(vcvtq_f32_s32(v), scale));
  }
#else
  (void)s, (void)n, (void)zp, (void)scale, (void)d, (void)stride;
#endif
  return i;
}

// Both in blocks of kRowBlock rows: a quad's words of a block are one contiguous 64-byte run of
// the image, so the image is read (written) a line at a time and the rows' floats in order.
constexpr int64_t kRowBlock = 16;

spe_status quantize_rows(const float* x, int64_t rows, int32_t c, spe_qparams q, uint8_t* y) {
  if (spe_status st = check_q(q, "quantize"); st != SPE_OK) return st;
  const int64_t C4 = (int64_t(c) + 3) / 4, total = rows * c, blocks = (rows + kRowBlock - 1) / kRowBlock;
  const float inv = 1.0f / q.scale;
  const int32_t zp = q.zero_point;
  std::atomic<int64_t> bad{total};
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, C4));
  ThreadPool::global().parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    // the block's rows quantized, 4 * C4 bytes each (channels past c: the zero point)
    std::vector<uint8_t> rq(size_t(kRowBlock * 4 * C4), uint8_t(zp));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kRowBlock, nr = std::min(kRowBlock, rows - r0);
      for (int64_t i = 0; i < nr; ++i) {
        const float* src = x + (r0 + i) * c;
        const int64_t k = first_nonfinite(src, c);
        if (k >= 0) note_bad(bad, (r0 + i) * c + k);
        quantize_row(src, rq.data() + i * 4 * C4, c, inv, zp);
      }
      for (int64_t qd = 0; qd < C4; ++qd) {
        uint8_t* d = y + 4 * (qd * rows + r0);
        for (int64_t i = 0; i < nr; ++i) std::memcpy(d + 4 * i, rq.data() + i * 4 * C4 + 4 * qd, 4);
      }
    }
  });
  const int64_t i = bad.load();
  if (i < total)
    return fail(SPE_ERR_INVALID_ARGUMENT, "input row " + std::to_string(i / c) + ", feature " +
                                              std::to_string(i % c) + " is not finite");
  return SPE_OK;
}

spe_status dequantize_rows(const uint8_t* x, int64_t rows, int32_t c, spe_qparams q, float* y) {
  if (spe_status st = check_q(q, "dequantize"); st != SPE_OK) return st;
  const int64_t C4 = (int64_t(c) + 3) / 4, blocks = (rows + kRowBlock - 1) / kRowBlock;
  const int32_t zp = q.zero_point;
  const float scale = q.scale;   // float(v - zp) * scale: engine.quant.dequantize's two ops
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, C4));
  ThreadPool::global().parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kRowBlock, nr = std::min(kRowBlock, rows - r0);
      for (int64_t qd = 0; qd < C4; ++qd) {
        const uint8_t* s = x + 4 * (qd * rows + r0);
        const int nt = int(std::min<int64_t>(4, c - 4 * qd));
        int64_t i = 0;
        if (nt == 4) i = dequantize_words(s, nr, zp, scale, y + r0 * c + 4 * qd, c);
        for (; i < nr; ++i) {
          float* d = y + (r0 + i) * c + 4 * qd;
          for (int t = 0; t < nt; ++t) d[t] = float(int32_t(s[4 * i + t]) - zp) * scale;
        }
      }
    }
  });
  return SPE_OK;
}

}  // namespace spe

extern "C" {

spe_status spe_quantize(const float* x, int32_t n, int32_t c, int32_t h, int32_t w, spe_qparams q,
                        int32_t layout, uint8_t* y) {
  return spe::guarded("spe_quantize", [&] { return spe::quantize(x, n, c, h, w, q, layout, y); });
}

spe_status spe_dequantize(const uint8_t* x, int32_t n, int32_t c, int32_t h, int32_t w,
                          spe_qparams q, int32_t layout, float* y) {
  return spe::guarded("spe_dequantize", [&] { return spe::dequantize(x, n, c, h, w, q, layout, y); });
}

spe_status spe_max_pool2d_u8(const uint8_t* x, int32_t n, int32_t c, int32_t h, int32_t w,
                             int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t ph, int32_t pw,
                             int32_t layout, uint8_t* y) {
  return spe::guarded("spe_max_pool2d_u8",
                      [&] { return spe::max_pool_u8(x, n, c, h, w, kh, kw, sh, sw, ph, pw, layout, y); });
}

}  // extern "C"
