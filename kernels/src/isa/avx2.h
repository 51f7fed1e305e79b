// AVX2 + FMA vector traits (8 floats a vector, 16 registers; see scalar.h for the interface).
// Only translation units compiled with -mavx2 -mfma include this.
#ifndef SPE_ISA_AVX2_H_
#define SPE_ISA_AVX2_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "isa.h"

namespace spe {

// Internal linkage on purpose (an unnamed namespace in a header): each ISA's translation unit
// gets its own copy of these traits and of every template instantiated with them, compiled
// with its own flags, so the linker can never merge, say, an AVX-512 build of an inline
// function into code that must run on a CPU without AVX-512.
namespace {

struct Avx2 {
  using reg = __m256;
  static constexpr Isa kIsa = Isa::avx2;
  static constexpr int kWidth = 8;
  static constexpr int kRegs = 16;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float f) { return _mm256_set1_ps(f); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static reg load_mask(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }
  // A lane mask kept in a table (a struct: vector types as template arguments lose their
  // alignment attribute), made from bits (lane l: bit l).
  struct lanes {
    __m256i v;
  };
  static lanes lanes_of(uint32_t bits) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return {_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(int(bits)), bit), bit)};
  }
  static reg load_mask(const float* p, const lanes& m) { return _mm256_maskload_ps(p, m.v); }
  static void store_mask(float* p, reg v, __m256i m) { _mm256_maskstore_ps(p, m, v); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
  static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  static reg pow2_bits(reg v) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(v), 23));
  }
  static void copy(const float* s, float* d, int n) {
    int k = 0;
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(d + k, _mm256_loadu_ps(s + k));
    if (k < n) {
      const __m256i m = mask(n - k);
      _mm256_maskstore_ps(d + k, m, _mm256_maskload_ps(s + k, m));
    }
  }
  // e, o = the even and the odd floats of the 16 in a then b: shuffle within 128-bit lanes,
  // then put the lanes' halves in order.
  static void deinterleave_regs(reg a, reg b, reg& e, reg& o) {
    const __m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    const __m256 od = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    e = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xD8));
    o = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), 0xD8));
  }
  // 16 floats -> the 8 even and 8 odd ones (deinterleave_regs); the last (partial) step loads
  // and stores under masks.
  static void deinterleave(const float* s, float* e, float* o, int n) {
    for (int k = 0; k < n; k += 8) {
      const int r = std::min(8, n - k);
      __m256 a, b;
      if (r == 8) {
        a = _mm256_loadu_ps(s + 2 * k);
        b = _mm256_loadu_ps(s + 2 * k + 8);
      } else {
        a = _mm256_maskload_ps(s + 2 * k, mask(std::min(8, 2 * r)));
        b = _mm256_maskload_ps(s + 2 * k + 8, mask(std::max(0, 2 * r - 8)));
      }
      __m256 e8, o8;
      deinterleave_regs(a, b, e8, o8);
      if (r == 8) {
        _mm256_storeu_ps(e + k, e8);
        _mm256_storeu_ps(o + k, o8);
      } else {
        _mm256_maskstore_ps(e + k, mask(r), e8);
        _mm256_maskstore_ps(o + k, mask(r), o8);
      }
    }
  }
};

}  // namespace
}  // namespace spe
#endif  // SPE_ISA_AVX2_H_
