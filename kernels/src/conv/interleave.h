// Four u8 rows into 32-bit words and back (the int8 layers' NCHW4 layout): shared by the int8
// conv (conv/qconv.cc) and its glue (conv/qglue.cc). SSE2 on x86-64 (its baseline: any
// translation unit may include this), NEON vst4 on AArch64.
#ifndef SPE_CONV_INTERLEAVE_H_
#define SPE_CONV_INTERLEAVE_H_

#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace spe {

// d[4 j + t] = s_t[j] for j < n, t < 4: four channel rows into words.
inline void interleave4(const uint8_t* s0, const uint8_t* s1, const uint8_t* s2, const uint8_t* s3,
                 uint8_t* d, int64_t n) {
  int64_t j = 0;
#if defined(__SSE2__)
  for (; j + 16 <= n; j += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s0 + j));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s1 + j));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s2 + j));
    const __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s3 + j));
    const __m128i ab0 = _mm_unpacklo_epi8(a, b), ab1 = _mm_unpackhi_epi8(a, b);
    const __m128i ce0 = _mm_unpacklo_epi8(c, e), ce1 = _mm_unpackhi_epi8(c, e);
    __m128i* o = reinterpret_cast<__m128i*>(d + 4 * j);
    _mm_storeu_si128(o + 0, _mm_unpacklo_epi16(ab0, ce0));
    _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(ab0, ce0));
    _mm_storeu_si128(o + 2, _mm_unpacklo_epi16(ab1, ce1));
    _mm_storeu_si128(o + 3, _mm_unpackhi_epi16(ab1, ce1));
  }
#elif defined(__aarch64__)
  for (; j + 16 <= n; j += 16) {
    uint8x16x4_t v;
    v.val[0] = vld1q_u8(s0 + j);
    v.val[1] = vld1q_u8(s1 + j);
    v.val[2] = vld1q_u8(s2 + j);
    v.val[3] = vld1q_u8(s3 + j);
    vst4q_u8(d + 4 * j, v);
  }
#endif
  for (; j < n; ++j) {
    d[4 * j] = s0[j];
    d[4 * j + 1] = s1[j];
    d[4 * j + 2] = s2[j];
    d[4 * j + 3] = s3[j];
  }
}

}  // namespace spe
#endif  // SPE_CONV_INTERLEAVE_H_
