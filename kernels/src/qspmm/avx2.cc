// AVX2 int8 SpMM microkernels (no VNNI): qspmm_list.h's avx2 lines (compiled with -mavx2
// -mfma). Each 4-pixel half of a vector is zero-extended to s16 and multiplied by a row's s16
// weight quad with vpmaddwd, giving two pair sums per pixel (vpmaddubsw would saturate:
// 255 * 127 * 2 > 32767); finish() adds the pairs.
#include <immintrin.h>

#include <cstring>

#include "qtile_template.h"

namespace spe {
namespace {

struct QAvx2 {
  static constexpr QVariant kVariant = QVariant::avx2;
  static constexpr int kPix = 8, kWBytes = 8, kXBias = 0;
  struct acc {
    __m256i lo, hi;  // pixels 0..3 and 4..7: (channels 0+1, channels 2+3) per pixel
  };
  using in = acc;
  using wt = __m256i;
  using ivec = __m256i;
  static constexpr int kGroup = 1;
  static constexpr bool kQuads = false;  // NCHW4 outputs go through the layer's stage
  static acc acc_zero() { return {_mm256_setzero_si256(), _mm256_setzero_si256()}; }
  static in load(const uint8_t* p) {
    return {_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)))};
  }
  static in load_part(const uint8_t* p, int n) {
    alignas(32) uint8_t t[32] = {};
    std::memcpy(t, p, size_t(4 * n));
    return load(t);
  }
  static wt weight(const int8_t* w, int r) {
    long long q;
    std::memcpy(&q, w + 8 * r, 8);
    return _mm256_set1_epi64x(q);
  }
  static void madd(acc& a, const in& x, const wt& w) {
    a.lo = _mm256_add_epi32(a.lo, _mm256_madd_epi16(x.lo, w));
    a.hi = _mm256_add_epi32(a.hi, _mm256_madd_epi16(x.hi, w));
  }
  static ivec finish(const acc& a) {
    // hadd: [p0 p1 p4 p5 | p2 p3 p6 p7]; the 64-bit permute puts the pixels in order
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(a.lo, a.hi), 0xD8);
  }
  static ivec load_acc(const int32_t* p, int n) {
    if (n == kPix) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    alignas(32) int32_t t[kPix] = {};
    std::memcpy(t, p, sizeof(int32_t) * n);
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(t));
  }
  static void store_acc(int32_t* p, ivec v, int n) {
    if (n == kPix) return _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
    alignas(32) int32_t t[kPix];
    _mm256_store_si256(reinterpret_cast<__m256i*>(t), v);
    std::memcpy(p, t, sizeof(int32_t) * n);
  }
  struct RowConst {
    __m256i corr, rz, zy;
    __m256 scale, bias, rs, lo, hi;
  };
  static RowConst make_const(__m256i corr, __m256 scale, __m256 bias, float res_scale, int32_t res_zero,
                             float six, int32_t zy, int act) {
    const QClamp k = qclamp(act, six, zy);
    return {corr, _mm256_set1_epi32(res_zero), _mm256_set1_epi32(zy), scale, bias,
            _mm256_set1_ps(res_scale), _mm256_set1_ps(k.lo), _mm256_set1_ps(k.hi)};
  }
  static RowConst row_const(const QEpilogue& e, int o) {
    return make_const(_mm256_set1_epi32(e.corr[o]), _mm256_set1_ps(e.scale[o]), _mm256_set1_ps(e.bias[o]),
                      e.res_scale, e.res_zero, e.six, e.out_zero, e.act);
  }
  // the depthwise row (qtile_template.h's qdw_row)
  static ivec add_i32(ivec a, ivec b) { return _mm256_add_epi32(a, b); }
  static ivec load_i32(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static ivec mul_add(ivec acc, ivec x, ivec w) { return _mm256_add_epi32(acc, _mm256_mullo_epi32(x, w)); }
  static ivec load_u8(const uint8_t* p, int n) {
    long long b = 0;
    std::memcpy(&b, p, size_t(n));
    return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(b));
  }
  static RowConst lane_const(const QDwRowArgs& d) {
    return make_const(load_i32(d.corr), _mm256_loadu_ps(d.scale), _mm256_loadu_ps(d.bias), d.res_scale,
                      d.res_zero, d.six, d.out_zero, d.act);
  }
  // a = sums + corr; qclamp's bounds in float, so q = round(v) + zy is in [0, 255]
  static void requant_store(uint8_t* y, ivec a, const uint8_t* res, int n, const RowConst& c) {
    __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), c.scale, c.bias);
    if (res) {
      long long rb = 0;
      std::memcpy(&rb, res, size_t(n));
      const __m256i r = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(rb));
      v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(r, c.rz)), c.rs, v);
    }
    v = _mm256_min_ps(_mm256_max_ps(v, c.lo), c.hi);
    const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), c.zy);
    const __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    const __m128i q8 = _mm_packus_epi16(q16, q16);
    if (n == kPix) return _mm_storel_epi64(reinterpret_cast<__m128i*>(y), q8);
    const long long b = _mm_cvtsi128_si64(q8);
    std::memcpy(y, &b, size_t(n));
  }
};

}  // namespace

template <>
const QSpmmKernels* qspmm_table<QVariant::avx2>() { return qspmm_table_of<QAvx2>("avx2"); }

}  // namespace spe
