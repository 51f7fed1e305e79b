// AVX-512 VNNI int8 SpMM microkernels: qspmm_list.h's avx512vnni lines (compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mfma). One vpdpbusd per (row, vector) per entry:
// 16 pixels x 4 channels of u8 against a row's s8 weight quad, broadcast from memory.
#include <immintrin.h>

#include "qtile_template.h"

namespace spe {
namespace {

struct QAvx512Vnni {
  static constexpr QVariant kVariant = QVariant::avx512vnni;
  static constexpr int kPix = 16, kWBytes = 4, kXBias = 0;
  using acc = __m512i;
  using in = __m512i;
  using wt = __m512i;
  using ivec = __m512i;
  static acc acc_zero() { return _mm512_setzero_si512(); }
  static in load(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static in load_part(const uint8_t* p, int n) { return _mm512_maskz_loadu_epi32(mask(n), p); }
  static wt weight(const int8_t* w, int r) {
    int32_t q;
    __builtin_memcpy(&q, w + 4 * r, 4);
    return _mm512_set1_epi32(q);
  }
  static void madd(acc& a, const in& x, const wt& w) { a = _mm512_dpbusd_epi32(a, x, w); }
  static ivec finish(const acc& a) { return a; }
  static __mmask16 mask(int n) { return __mmask16((1u << n) - 1u); }
  static ivec load_acc(const int32_t* p, int n) { return _mm512_maskz_loadu_epi32(mask(n), p); }
  static void store_acc(int32_t* p, ivec v, int n) { _mm512_mask_storeu_epi32(p, mask(n), v); }
  struct RowConst {
    __m512i corr, rz, zy;
    __m512 scale, bias, rs, six;
    int act;
  };
  static RowConst row_const(const QEpilogue& e, int o) {
    return {_mm512_set1_epi32(e.corr[o]), _mm512_set1_epi32(e.res_zero), _mm512_set1_epi32(e.out_zero),
            _mm512_set1_ps(e.scale[o]), _mm512_set1_ps(e.bias[o]), _mm512_set1_ps(e.res_scale),
            _mm512_set1_ps(e.six), e.act};
  }
  // the depthwise row (qtile_template.h's qdw_row)
  static ivec zero_i32() { return _mm512_setzero_si512(); }
  static ivec load_i32(const int32_t* p) { return _mm512_loadu_si512(p); }
  static ivec mul_add(ivec acc, ivec x, ivec w) { return _mm512_add_epi32(acc, _mm512_mullo_epi32(x, w)); }
  static ivec load_u8(const uint8_t* p, int n) {
    const __m128i b = n == kPix ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))
                                : _mm_maskz_loadu_epi8(mask(n), p);
    return _mm512_maskz_cvtepu8_epi32(__mmask16(0xFFFF), b);
  }
  static RowConst lane_const(const QDwRowArgs& d) {
    return {_mm512_loadu_si512(d.corr), _mm512_set1_epi32(d.res_zero), _mm512_set1_epi32(d.out_zero),
            _mm512_loadu_ps(d.scale), _mm512_loadu_ps(d.bias), _mm512_set1_ps(d.res_scale),
            _mm512_set1_ps(d.six), d.act};
  }
  static void requant_store(uint8_t* y, ivec s, const uint8_t* res, int n, const RowConst& c) {
    const __mmask16 m = mask(n);
    // the zero-masked forms with a full mask: the plain ones pass an undefined vector that
    // GCC 12 then warns about (-Wmaybe-uninitialized), as isa/avx512.h's max / min
    const __mmask16 all = 0xFFFF;
    s = _mm512_add_epi32(s, c.corr);
    __m512 v = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(all, s), c.scale, c.bias);
    if (res) {
      const __m512i r = _mm512_maskz_cvtepu8_epi32(all, _mm_maskz_loadu_epi8(m, res));
      v = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(all, _mm512_sub_epi32(r, c.rz)), c.rs, v);
    }
    if (c.act >= 1) v = _mm512_mask_max_ps(v, all, v, _mm512_setzero_ps());
    if (c.act == 2) v = _mm512_mask_min_ps(v, all, v, c.six);
    v = _mm512_mask_min_ps(v, all, v, _mm512_set1_ps(512.0f));
    // cvtps2dq gives INT32_MIN below -2^31; q + zy >= 0 clamped, then the unsigned saturating
    // narrow (vpmovusdb) clamps to 255; narrowed in a register, then a plain store: the memory
    // form of a (masked) narrowing store is microcoded on Intel cores (1.7x the epilogue)
    __m512i q = _mm512_add_epi32(_mm512_maskz_cvtps_epi32(all, v), c.zy);
    q = _mm512_maskz_max_epi32(all, q, _mm512_setzero_si512());
    const __m128i b = _mm512_maskz_cvtusepi32_epi8(all, q);
    if (n == kPix) _mm_storeu_si128(reinterpret_cast<__m128i*>(y), b);
    else _mm_mask_storeu_epi8(y, m, b);
  }
};

// The depthwise row by byte permutes (QDwRowsArgs): for each block of 4 output pixels x 4
// channels (16 lanes) and kernel row, one 64-byte load of the input row, one vpermb per group
// of 4 taps putting a lane's taps (of its own channel) in its 4 bytes, one vpdpbusd against the
// taps' weights: 3 of each for a 3x3 where the widened path does 9 multiplies of 2 uops.
// Stride 1 and dilation 1 down the rows (KH kernel rows): each input row is loaded and permuted
// once per column block and feeds the KH output rows that read it, from KH sums held in
// registers (sum k belongs to the output row k rows above the input row): a 3x3 does one load
// and one vpermb per 16 output bytes where the general loop below does three of each.
template <int KH>
__attribute__((target("avx512vbmi"))) void qdw_rows_vbmi_s1(const QDwRowsArgs& a) {
  const QDwRowArgs& d = a.d;
  const int groups = qdw_groups(a.kw);   // <= 2 (kw <= 8): the caller checks
  const __mmask64 all = ~__mmask64(0);
  const QAvx512Vnni::RowConst c = QAvx512Vnni::lane_const(d);
  __m512i idx[2], wp[KH][2];
  for (int g = 0; g < groups; ++g) {
    idx[g] = _mm512_loadu_si512(a.idx + g * 64);
    for (int ky = 0; ky < KH; ++ky) wp[ky][g] = _mm512_loadu_si512(a.wpat + (ky * groups + g) * 64);
  }
  const int n = 4 * a.wo, n_in = a.n_out + KH - 1;
  for (int j = 0; j < n; j += 16) {      // bytes of the output rows: 4 pixels x 4 channels
    const int m = n - j < 16 ? n - j : 16;
    const uint8_t* in = a.rows + int64_t(j / 4) * 4;   // the block's first input pixel
    __m512i acc[KH];
    for (int k = 0; k < KH; ++k) acc[k] = _mm512_setzero_si512();
    for (int i = 0; i < n_in; ++i) {
      const __m512i row = _mm512_loadu_si512(in + int64_t(i) * a.row_stride);
      for (int g = 0; g < groups; ++g) {
        const __m512i p = _mm512_maskz_permutexvar_epi8(all, idx[g], row);
        for (int k = 0; k < KH; ++k) acc[k] = _mm512_dpbusd_epi32(acc[k], p, wp[k][g]);
      }
      const int r = i - (KH - 1);        // the output row this input row completes
      if (r >= 0) {
        const int64_t o = int64_t(r) * a.y_stride + j;
        QAvx512Vnni::requant_store(d.y + o, acc[KH - 1], d.res ? d.res + o : nullptr, m, c);
      }
      for (int k = KH - 1; k > 0; --k) acc[k] = acc[k - 1];
      acc[0] = _mm512_setzero_si512();
    }
  }
}

__attribute__((target("avx512vbmi"))) void qdw_rows_vbmi(const QDwRowsArgs& a) {
  if (a.stride_h == 1 && a.dil_h == 1 && a.kw <= 8) {
    if (a.kh == 3) return qdw_rows_vbmi_s1<3>(a);
    if (a.kh == 5) return qdw_rows_vbmi_s1<5>(a);
  }
  const QDwRowArgs& d = a.d;
  const int groups = qdw_groups(a.kw);
  const __mmask64 all = ~__mmask64(0);
  const QAvx512Vnni::RowConst c = QAvx512Vnni::lane_const(d);
  const int n = 4 * a.wo;
  for (int r = 0; r < a.n_out; ++r) {
    const uint8_t* in = a.rows + int64_t(r) * a.stride_h * a.row_stride;
    uint8_t* y = d.y + r * a.y_stride;
    const uint8_t* res = d.res ? d.res + r * a.y_stride : nullptr;
    for (int j = 0; j < n; j += 16) {   // bytes of the output row: 4 pixels x 4 channels
      __m512i acc = _mm512_setzero_si512();
      const int64_t at = int64_t(j / 4) * a.stride * 4;   // the block's first input pixel
      for (int ky = 0; ky < a.kh; ++ky) {
        const __m512i row = _mm512_loadu_si512(in + int64_t(ky) * a.dil_h * a.row_stride + at);
        for (int g = 0; g < groups; ++g)
          acc = _mm512_dpbusd_epi32(acc, _mm512_maskz_permutexvar_epi8(all, _mm512_loadu_si512(a.idx + g * 64), row),
                                    _mm512_loadu_si512(a.wpat + (ky * groups + g) * 64));
      }
      const int m = n - j < 16 ? n - j : 16;
      QAvx512Vnni::requant_store(y + j, acc, res ? res + j : nullptr, m, c);
    }
  }
}

}  // namespace

template <>
const QSpmmKernels* qspmm_table<QVariant::avx512vnni>() {
  // the table is built once, then this CPU's answer added to a copy of it
  static const QSpmmKernels table = [] {
    QSpmmKernels t = *qspmm_table_of<QAvx512Vnni>("avx512vnni");
    t.dw_rows = __builtin_cpu_supports("avx512vbmi") ? &qdw_rows_vbmi : nullptr;
    return t;
  }();
  return &table;
}

}  // namespace spe
