// AVX-512 vector traits (16 floats a vector, 32 registers, partial vectors by mask registers;
// see scalar.h for the interface). Only translation units compiled with -mavx512f include this.
#ifndef SPE_ISA_AVX512_H_
#define SPE_ISA_AVX512_H_

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

struct Avx512 {
  using reg = __m512;
  static constexpr Isa kIsa = Isa::avx512;
  static constexpr int kWidth = 16;
  static constexpr int kRegs = 32;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float f) { return _mm512_set1_ps(f); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static __mmask16 mask(int n) { return __mmask16((1u << n) - 1u); }
  static reg load_mask(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
  using lanes = __mmask16;  // a lane mask kept in a table, made from bits (lane l: bit l)
  static lanes lanes_of(uint32_t bits) { return __mmask16(bits); }
  static void store_mask(float* p, reg v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  // The masked forms with a full mask: the same vmaxps / vminps, but GCC 12's plain forms pass
  // _mm512_undefined_ps() and then warn -Wmaybe-uninitialized wherever they are inlined.
  static reg max(reg a, reg b) { return _mm512_mask_max_ps(a, __mmask16(0xFFFF), a, b); }
  static reg min(reg a, reg b) { return _mm512_mask_min_ps(a, __mmask16(0xFFFF), a, b); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg pow2_bits(reg v) {  // (the masked form: see max / min)
    const __m512i b = _mm512_castps_si512(v);
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(__mmask16(0xFFFF), b, 23));
  }
  // The activations' 2^(k/32 - 1) from nb, a float whose low mantissa bits hold 126 * 32 + k
  // (isa/activation.h): 2^(k mod 32 / 32) from a 32-float table (two registers, one
  // two-source permute on the low 5 bits) as the mantissa, 126 + floor(k / 32) shifted into
  // the exponent field (one ternary-logic op merges the two). A degree-2 polynomial then
  // covers |t| <= ln2 / 64 where the plain 2^n (pow2_bits) needs degree 5 over ln2 / 2.
  static constexpr int kExpTableBits = 5;
  static reg pow2_table(reg nb) {
    // round((2^(j/32) - 1) * 2^23): the mantissas of 2^(j/32), j = 0..31
    const __m512i lo = _mm512_setr_epi32(0x0, 0x2cd87, 0x5aac3, 0x8980f, 0xb95c2, 0xea43a,
                                         0x11c3d3, 0x14f4f0, 0x1837f0, 0x1b8d3a, 0x1ef532,
                                         0x227043, 0x25fed7, 0x29a15b, 0x2d583f, 0x3123f6);
    const __m512i hi = _mm512_setr_epi32(0x3504f3, 0x38fbaf, 0x3d08a4, 0x412c4d, 0x45672a,
                                         0x49b9be, 0x4e248c, 0x52a81e, 0x5744fd, 0x5bfbb8,
                                         0x60ccdf, 0x65b907, 0x6ac0c7, 0x6fe4ba, 0x75257d,
                                         0x7a83b3);
    const __m512i b = _mm512_castps_si512(nb);
    const __m512i m = _mm512_permutex2var_epi32(lo, b, hi);
    const __m512i e = _mm512_maskz_slli_epi32(__mmask16(0xFFFF), b, 18);
    const __m512i exponent = _mm512_set1_epi32(0x7F800000);
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(e, exponent, m, 0xEA));  // e & x | m
  }
  static void copy(const float* s, float* d, int n) {
    int k = 0;
    for (; k + 16 <= n; k += 16) _mm512_storeu_ps(d + k, _mm512_loadu_ps(s + k));
    if (k < n) {
      const __mmask16 m = mask(n - k);
      _mm512_mask_storeu_ps(d + k, m, _mm512_maskz_loadu_ps(m, s + k));
    }
  }
  // The deinterleave of a zero-padded row into whole vectors: with z[c] = s[c - shift] for
  // 0 <= c - shift < n and 0 elsewhere (shift 0 or 1: an odd left padding), e[i] = z[2i] and
  // o[i] = z[2i + 1] for i < 16 * nv. Masked loads (which never touch, nor fault on, their
  // masked-off lanes) bring in the zeros, so every store is a whole unmasked vector: the zeros
  // land in the caller's padding, and the rows' readers get their data forwarded from full
  // stores (masked stores are slow on some cores) without scalar edge code.
  static void deinterleave_zero_padded(const float* s, int n, int shift, float* e, float* o,
                                       int nv) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    auto lanes = [](int lo, int hi) {  // lanes [lo, hi) of 16
      lo = std::clamp(lo, 0, 16);
      hi = std::clamp(hi, 0, 16);
      return hi <= lo ? __mmask16(0) : __mmask16(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    };
    for (int k = 0; k < nv; ++k) {
      const int c0 = 32 * k - shift;  // the s index of lane 0 of a
      __m512 a, b;
      if (c0 >= 0 && c0 + 32 <= n) {
        a = _mm512_loadu_ps(s + c0);
        b = _mm512_loadu_ps(s + c0 + 16);
      } else {
        a = _mm512_maskz_loadu_ps(lanes(-c0, n - c0), s + c0);
        b = _mm512_maskz_loadu_ps(lanes(-c0 - 16, n - c0 - 16), s + c0 + 16);
      }
      _mm512_storeu_ps(e + 16 * k, _mm512_permutex2var_ps(a, ie, b));
      _mm512_storeu_ps(o + 16 * k, _mm512_permutex2var_ps(a, io, b));
    }
  }
  // e, o = the even and the odd floats of the 32 in a then b.
  static void deinterleave_regs(reg a, reg b, reg& e, reg& o) {
    e = _mm512_permutex2var_ps(
        a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
    o = _mm512_permutex2var_ps(
        a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b);
  }
  // 32 floats -> 16 even and 16 odd ones, one two-source permute each; the last (partial) step
  // loads and stores under masks.
  static void deinterleave(const float* s, float* e, float* o, int n) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    int k = 0;
    for (; k + 16 <= n; k += 16) {
      const __m512 a = _mm512_loadu_ps(s + 2 * k), b = _mm512_loadu_ps(s + 2 * k + 16);
      _mm512_storeu_ps(e + k, _mm512_permutex2var_ps(a, ie, b));
      _mm512_storeu_ps(o + k, _mm512_permutex2var_ps(a, io, b));
    }
    if (k < n) {
      const int r = n - k;
      const __m512 a = _mm512_maskz_loadu_ps(mask(std::min(16, 2 * r)), s + 2 * k);
      const __m512 b = _mm512_maskz_loadu_ps(mask(std::max(0, 2 * r - 16)), s + 2 * k + 16);
      _mm512_mask_storeu_ps(e + k, mask(r), _mm512_permutex2var_ps(a, ie, b));
      _mm512_mask_storeu_ps(o + k, mask(r), _mm512_permutex2var_ps(a, io, b));
    }
  }
};

}  // namespace
}  // namespace spe
#endif  // SPE_ISA_AVX512_H_
