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
  static constexpr int kGroup = 4;  // 64 outputs narrowed by 2 packs, a pack and a permute
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
    __m512i corr, rz, zy, zy16, lo8;
    __m512 scale, bias, rs, lo, hi;
  };
  static RowConst make_const(__m512i corr, __m512 scale, __m512 bias, float res_scale, int32_t res_zero,
                             float six, int32_t zy, int act) {
    const QClamp k = qclamp(act, six, zy);
    // lo8: qclamp's lower bound as a code (zy under ReLU / ReLU6, else 0), for the narrowings
    // that saturate (requant_r<false>)
    return {corr, _mm512_set1_epi32(res_zero), _mm512_set1_epi32(zy), _mm512_set1_epi16(int16_t(zy)),
            _mm512_set1_epi8(char(act >= 1 ? zy : 0)), scale, bias, _mm512_set1_ps(res_scale),
            _mm512_set1_ps(k.lo), _mm512_set1_ps(k.hi)};
  }
  static RowConst row_const(const QEpilogue& e, int o) {
    return make_const(_mm512_set1_epi32(e.corr[o]), _mm512_set1_ps(e.scale[o]), _mm512_set1_ps(e.bias[o]),
                      e.res_scale, e.res_zero, e.six, e.out_zero, e.act);
  }
  // the depthwise row (qtile_template.h's qdw_row)
  static ivec add_i32(ivec a, ivec b) { return _mm512_add_epi32(a, b); }
  static ivec load_i32(const int32_t* p) { return _mm512_loadu_si512(p); }
  static ivec mul_add(ivec acc, ivec x, ivec w) { return _mm512_add_epi32(acc, _mm512_mullo_epi32(x, w)); }
  static ivec load_u8(const uint8_t* p, int n) {
    const __m128i b = n == kPix ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))
                                : _mm_maskz_loadu_epi8(mask(n), p);
    return _mm512_maskz_cvtepu8_epi32(__mmask16(0xFFFF), b);
  }
  static RowConst lane_const(const QDwRowArgs& d) {
    return make_const(_mm512_loadu_si512(d.corr), _mm512_loadu_ps(d.scale), _mm512_loadu_ps(d.bias),
                      d.res_scale, d.res_zero, d.six, d.out_zero, d.act);
  }
  // qspmm.h's requantization of a = sums + corr up to the zero point: round(v) as s32, in
  // [-zy, 255 - zy] (qclamp's bounds applied in float before the rounding)
  // the same from the residual's bytes widened to s32 (r: null without a residual)
  // Lower = false: without the lower clamp, for the narrowings through s16 and u8 that saturate
  // (requant_store_group / _quads): a v below it converts to a code below -zy (INT_MIN past
  // int32, still negative after packssdw and + zy), which packuswb takes to 0, and a max with
  // lo8 to zy under ReLU: the same bytes as clamping first (qclamp), one float max a vector
  // fewer and one byte max per 64 outputs instead
  template <bool Lower = true>
  static __m512i requant_r(__m512i a, const __m512i* r, const RowConst& c) {
    // the zero-masked forms with a full mask: the plain ones pass an undefined vector that
    // GCC 12 then warns about (-Wmaybe-uninitialized), as isa/avx512.h's max / min
    const __mmask16 all = 0xFFFF;
    __m512 v = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(all, a), c.scale, c.bias);
    if (r) v = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(all, _mm512_sub_epi32(*r, c.rz)), c.rs, v);
    if (Lower) v = _mm512_maskz_max_ps(all, v, c.lo);
    return _mm512_maskz_cvtps_epi32(all, _mm512_maskz_min_ps(all, v, c.hi));
  }
  template <bool Lower = true>
  static __m512i requant(__m512i a, const uint8_t* res, int n, const RowConst& c) {
    if (!res) return requant_r<Lower>(a, nullptr, c);
    const __m128i rb = n == kPix ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(res))
                                 : _mm_maskz_loadu_epi8(mask(n), res);
    const __m512i r = _mm512_maskz_cvtepu8_epi32(__mmask16(0xFFFF), rb);
    return requant_r<Lower>(a, &r, c);
  }
  static void requant_store(uint8_t* y, ivec a, const uint8_t* res, int n, const RowConst& c) {
    // in [0, 255]: the truncating narrow; narrowed in a register, then a plain store: the
    // memory form of a (masked) narrowing store is microcoded on Intel cores (1.7x the epilogue)
    const __m512i q = _mm512_add_epi32(requant(a, res, n, c), c.zy);
    const __m128i b = _mm512_maskz_cvtepi32_epi8(__mmask16(0xFFFF), q);
    if (n == kPix) _mm_storeu_si128(reinterpret_cast<__m128i*>(y), b);
    else _mm_mask_storeu_epi8(y, mask(n), b);
  }
  // (n: the first n of the 64 bytes, residual and output; the depthwise rows' tails)
  static void requant_store_group(uint8_t* y, ivec a0, ivec a1, ivec a2, ivec a3, const uint8_t* res,
                                  const RowConst& c, int n = 4 * kPix) {
    // s32 in [-255, 255] -> s16 (per 128-bit lane L: 4 of a0, 4 of a1), + zy, -> u8 (lane L:
    // pixels 4L..4L+3 of a0, a1, a2, a3); the permute puts each vector's 16 in order
    const auto part = [n](int k) { return n - k * kPix >= kPix ? kPix : n - k * kPix > 0 ? n - k * kPix : 0; };
    const __m512i p01 = _mm512_add_epi16(_mm512_packs_epi32(requant<false>(a0, res, part(0), c),
                                                            requant<false>(a1, res ? res + kPix : res, part(1), c)),
                                         c.zy16);
    const __m512i p23 = _mm512_add_epi16(_mm512_packs_epi32(requant<false>(a2, res ? res + 2 * kPix : res, part(2), c),
                                                            requant<false>(a3, res ? res + 3 * kPix : res, part(3), c)),
                                         c.zy16);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i v = _mm512_maskz_permutexvar_epi32(
        0xFFFF, order, _mm512_max_epu8(_mm512_packus_epi16(p01, p23), c.lo8));
    if (n == 4 * kPix) _mm512_storeu_si512(y, v);
    else _mm512_mask_storeu_epi8(y, (__mmask64(1) << n) - 1, v);
  }
  static constexpr bool kQuads = true;
  static void requant_store_quads(uint8_t* y, ivec a0, ivec a1, ivec a2, ivec a3, const uint8_t* res, int n,
                                  const RowConst& c0, const RowConst& c1, const RowConst& c2,
                                  const RowConst& c3) {
    // row k's value + zy (in [0, 255]) shifted to byte k of each pixel's word
    const __mmask16 m = mask(n);
    __m512i u0, u1, u2, u3;
    if (res) {
      const __m512i w = n == kPix ? _mm512_loadu_si512(res) : _mm512_maskz_loadu_epi32(m, res);
      const __m512i ff = _mm512_set1_epi32(0xFF);
      const auto byte = [&](int k) { return _mm512_and_si512(_mm512_maskz_srli_epi32(0xFFFF, w, k), ff); };
      const __m512i r0 = _mm512_and_si512(w, ff), r1 = byte(8), r2 = byte(16),
                    r3 = _mm512_maskz_srli_epi32(0xFFFF, w, 24);
      u0 = requant_r<false>(a0, &r0, c0), u1 = requant_r<false>(a1, &r1, c1), u2 = requant_r<false>(a2, &r2, c2),
      u3 = requant_r<false>(a3, &r3, c3);
    } else {
      u0 = requant_r<false>(a0, nullptr, c0), u1 = requant_r<false>(a1, nullptr, c1),
      u2 = requant_r<false>(a2, nullptr, c2), u3 = requant_r<false>(a3, nullptr, c3);
    }
    // s32 -> s16 (lane L: pixels 4L..4L+3 of rows 0 and 1, of rows 2 and 3), + zy, -> u8 (lane
    // L: rows 0..3 x pixels 4L..4L+3), the lower clamp as a byte max, then each lane's 4 x 4
    // bytes transposed to pixel-major words: 7 operations for the 4 vectors, where shifting
    // each row's codes into place and or-ing them took 10
    const __m512i b = _mm512_max_epu8(_mm512_packus_epi16(_mm512_add_epi16(_mm512_packs_epi32(u0, u1), c0.zy16),
                                                          _mm512_add_epi16(_mm512_packs_epi32(u2, u3), c0.zy16)),
                                      c0.lo8);
    const __m512i t = _mm512_maskz_broadcast_i32x4(0xFFFF, _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    const __m512i w = _mm512_shuffle_epi8(b, t);
    if (n == kPix) _mm512_storeu_si512(y, w);
    else _mm512_mask_storeu_epi32(y, m, w);
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
    for (int k = 0; k < KH; ++k) acc[k] = c.corr;
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
      acc[0] = c.corr;
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
      __m512i acc = c.corr;
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

// The byte masks of a 64-byte window of 16 input pixels (4 bytes each): its first px pixels,
// and those of a window starting at pixel `start` that lie inside a row of w pixels.
inline __mmask64 qpixel_bytes(int px) { return px >= 16 ? ~__mmask64(0) : (__mmask64(1) << (4 * px)) - 1; }
inline __mmask64 qrow_bytes(int start, int w) {
  const int lo = start < 0 ? -start : 0, hi = w - start < 16 ? w - start : 16;
  return hi > lo ? qpixel_bytes(hi) & ~qpixel_bytes(lo) : 0;
}

// The direct path (QDwDirectArgs): NB blocks of 4 output pixels side by side (16 bytes each)
// down the block's output rows. Each block keeps the permuted input rows its next output row
// shares with the current one in registers (2 at stride 1, 1 at stride 2), so an input row is
// loaded and permuted once per block (at stride 2 too, where the row-buffer path loaded the
// shared row twice). Loads read the plane in place: an interior block the bytes its window
// needs (zero-masked, nothing read past them); a block at the left or right border (Edge)
// merges the zero point into the bytes outside the row. A row above or below the plane is
// read from the pad row (the zero point throughout), so the loop has no branch. 4 blocks (64
// output bytes) narrow together.
template <int S, int NB, bool Edge>
__attribute__((target("avx512vbmi"))) void qdw_direct_cols(const QDwDirectArgs& a, int j, const __m512i& idx,
                                                           const __m512i* w, const QAvx512Vnni::RowConst& c) {
  static_assert(S == 1 || S == 2, "stride 1 or 2");
  const QDwRowArgs& d = a.d;
  const __mmask64 all = ~__mmask64(0);
  const __m512i padv = _mm512_set1_epi8(char(a.pad));
  const int64_t rs = int64_t(a.w) * 4;
  const int n = 4 * a.wo;
  __mmask64 m[NB];
  int64_t off[NB];
  for (int b = 0; b < NB; ++b) {
    const int start = (j / 4 + 4 * b) * S - a.pad_w;   // the block's first input pixel
    off[b] = int64_t(start) * 4;
    m[b] = Edge ? qrow_bytes(start, a.w) : qpixel_bytes(3 * S + a.kw);
  }
  // input row iy's first byte, or the pad row's (p + off: an address a masked load may take
  // outside the plane, its bytes there masked off)
  const auto row_at = [&](int iy) { return iy < 0 || iy >= a.h ? reinterpret_cast<uintptr_t>(a.pad_row)
                                                                : reinterpret_cast<uintptr_t>(a.x) + uintptr_t(iy * rs); };
#define SPE_QDW_ROW(p, b)                                                                            \
  _mm512_maskz_permutexvar_epi8(                                                                     \
      all, idx,                                                                                      \
      Edge ? _mm512_mask_loadu_epi8(padv, m[b], reinterpret_cast<const void*>((p) + uintptr_t(off[b]))) \
           : _mm512_maskz_loadu_epi8(m[b], reinterpret_cast<const void*>((p) + uintptr_t(off[b]))))
  const int iy0 = a.oy0 * S - a.pad_h;
  __m512i P0[NB], P1[NB];   // the current output row's input rows 0 and (stride 1) 1, permuted
  {
    const uintptr_t p0 = row_at(iy0), p1 = row_at(iy0 + 1);
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) {
      P0[b] = SPE_QDW_ROW(p0, b);
      if (S == 1) P1[b] = SPE_QDW_ROW(p1, b);
    }
  }
  for (int r = 0; r < a.n_out; ++r) {
    const int iy = iy0 + r * S;
    const uintptr_t p1 = row_at(iy + 1), p2 = row_at(iy + 2);
    __m512i acc[NB];
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) {
      const __m512i r1 = S == 1 ? P1[b] : SPE_QDW_ROW(p1, b), r2 = SPE_QDW_ROW(p2, b);
      acc[b] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_dpbusd_epi32(c.corr, P0[b], w[0]), r1, w[1]), r2, w[2]);
      if (S == 1) P0[b] = r1, P1[b] = r2;
      else P0[b] = r2;
    }
    const int64_t o = int64_t(r) * n + j;
    const uint8_t* res = d.res ? d.res + o : nullptr;
    if (NB == 4) {
      QAvx512Vnni::requant_store_group(d.y + o, acc[0], acc[NB > 1 ? 1 : 0], acc[NB > 2 ? 2 : 0], acc[NB > 3 ? 3 : 0],
                                       res, c, n - j < 64 ? n - j : 64);
    } else {
      for (int b = 0; b < NB; ++b) {
        const int mb = n - j - 16 * b < 16 ? n - j - 16 * b : 16;
        if (mb > 0) QAvx512Vnni::requant_store(d.y + o + 16 * b, acc[b], res ? res + 16 * b : nullptr, mb, c);
      }
    }
  }
#undef SPE_QDW_ROW
}

template <int S>
__attribute__((target("avx512vbmi"))) void qdw_direct_vbmi_s(const QDwDirectArgs& a) {
  const QAvx512Vnni::RowConst c = QAvx512Vnni::lane_const(a.d);
  const __m512i idx = _mm512_loadu_si512(a.idx);
  const __m512i w[3] = {_mm512_loadu_si512(a.wpat), _mm512_loadu_si512(a.wpat + 64),
                        _mm512_loadu_si512(a.wpat + 128)};
  const int n = 4 * a.wo, need = 3 * S + a.kw;   // input pixels a block's window reads
  int j = 0;
  for (; n - j >= 64; j += 64) {   // 16 output pixels: interior unless a window leaves the row
    const int first = j / 4 * S - a.pad_w, end = (j / 4 + 12) * S - a.pad_w + need;
    if (first >= 0 && end <= a.w) qdw_direct_cols<S, 4, false>(a, j, idx, w, c);
    else qdw_direct_cols<S, 4, true>(a, j, idx, w, c);
  }
  switch ((n - j + 15) / 16) {
    case 1: return qdw_direct_cols<S, 1, true>(a, j, idx, w, c);
    case 2: return qdw_direct_cols<S, 2, true>(a, j, idx, w, c);
    case 3: return qdw_direct_cols<S, 3, true>(a, j, idx, w, c);
    case 4: return qdw_direct_cols<S, 4, true>(a, j, idx, w, c);
    default: return;
  }
}

__attribute__((target("avx512vbmi"))) void qdw_direct_vbmi(const QDwDirectArgs& a) {
  if (a.stride == 1) qdw_direct_vbmi_s<1>(a);
  else qdw_direct_vbmi_s<2>(a);
}

// A direct conv block's sums (NB blocks of 4 output pixels x NQ output quads) requantized into
// the output quad planes.
template <int NQ, int NB>
inline void direct_store(const QConvDirectArgs& a, const QAvx512Vnni::RowConst* rc, const __m512i (&acc)[NB][NQ],
                         int q0, int r, int px0) {
  for (int b = 0; b < NB; ++b) {
    const int px = px0 + 4 * b, m = a.wo - px < 4 ? 4 * (a.wo - px) : 16;
    const int64_t o = (int64_t(r) * a.wo + px) * 4;
    for (int q = 0; q < NQ; ++q) {
      const int64_t at = int64_t(q0 + q) * a.plane + o;
      QAvx512Vnni::requant_store(a.y + at, acc[b][q], a.res ? a.res + at : nullptr, m, rc[q0 + q]);
    }
  }
}

// The direct conv of one input quad (QConvDirectArgs, the stems): a block of 4 output pixels
// of NQ output quads. Per kernel row one load of the input row (16 pixels from the block's
// first, the zero point merged in past the row's ends at a border block, the pad row above and
// below the plane), per tap one vpermd giving lane l the word (4 input channels) of its pixel
// l / 4, and one vpdpbusd per quad against the tap's weights of its lanes' channels.
template <int S, int K, int NQ, bool Edge, int NB = 1>   // K: a square kernel's side, 0: a.kh x a.kw
inline void qconv_direct_block(const QConvDirectArgs& a, const QAvx512Vnni::RowConst* rc, const __m512i* kidx,
                               int q0, int r, int px0, __mmask64 lm) {
  // NB interior blocks side by side (px0, px0 + 4, ...): independent sums for the pipelines
  const int KH = K ? K : a.kh, KW = K ? K : a.kw, T = KH * KW;
  const __m512i padv = _mm512_set1_epi8(char(a.pad));
  const int64_t rs = int64_t(a.w) * 4, off = int64_t(px0 * S - a.pad_w) * 4;
  __m512i acc[NB][NQ];
  for (int b = 0; b < NB; ++b)
    for (int q = 0; q < NQ; ++q) acc[b][q] = rc[q0 + q].corr;
  const int8_t* wq = a.wv + int64_t(q0) * T * 64;
#pragma GCC unroll 7
  for (int ky = 0; ky < KH; ++ky) {
    const int iy = (a.oy0 + r) * S - a.pad_h + ky;
    const uintptr_t row = iy < 0 || iy >= a.h ? reinterpret_cast<uintptr_t>(a.pad_row)
                                              : reinterpret_cast<uintptr_t>(a.x) + uintptr_t(iy * rs);
    __m512i v[NB];
    for (int b = 0; b < NB; ++b) {
      const void* p = reinterpret_cast<const void*>(row + uintptr_t(off + b * 16 * S));
      v[b] = Edge ? _mm512_mask_loadu_epi8(padv, lm, p) : _mm512_maskz_loadu_epi8(lm, p);
    }
#pragma GCC unroll 7
    for (int kx = 0; kx < KW; ++kx) {
      __m512i t[NB];
      for (int b = 0; b < NB; ++b) t[b] = _mm512_maskz_permutexvar_epi32(0xFFFF, kidx[kx], v[b]);
      const int8_t* wt = wq + int64_t(ky * KW + kx) * 64;
#pragma GCC unroll 8
      for (int q = 0; q < NQ; ++q) {
        const __m512i wv = _mm512_loadu_si512(wt + int64_t(q) * T * 64);
        for (int b = 0; b < NB; ++b) acc[b][q] = _mm512_dpbusd_epi32(acc[b][q], t[b], wv);
      }
    }
  }
  direct_store<NQ, NB>(a, rc, acc, q0, r, px0);
}

template <int S, int K, bool Edge, int NB = 1>
inline void qconv_direct_quads(const QConvDirectArgs& a, const QAvx512Vnni::RowConst* rc, const __m512i* kidx,
                               int r, int px0, __mmask64 lm) {
  for (int q0 = 0; q0 < a.quads;) {
    const int left = a.quads - q0;
    if (left >= 8) qconv_direct_block<S, K, 8, Edge, NB>(a, rc, kidx, q0, r, px0, lm), q0 += 8;
    else if (left >= 4) qconv_direct_block<S, K, 4, Edge, NB>(a, rc, kidx, q0, r, px0, lm), q0 += 4;
    else if (left >= 2) qconv_direct_block<S, K, 2, Edge, NB>(a, rc, kidx, q0, r, px0, lm), q0 += 2;
    else qconv_direct_block<S, K, 1, Edge, NB>(a, rc, kidx, q0, r, px0, lm), q0 += 1;
  }
}

// The packed form (QConvDirectArgs::chans > 0) of a K x K window of C channels: the same
// blocks, but per weight quad j one vpermt2b gathering each lane's 4 window bytes from the two
// window rows the quad spans, then one vpdpbusd per output quad.
// K and C fixed, so the loop over quads unrolls and the sums stay in registers (a loop over a
// runtime count made GCC copy all 16 of them each quad).
template <int S, int K, int C, int NQ, bool Edge, int NB>
__attribute__((target("avx512vbmi"))) inline void qconv_packed_block(
    const QConvDirectArgs& a, const QAvx512Vnni::RowConst* rc, int q0, int r, int px0, __mmask64 lm) {
  constexpr int RW = K * C, J = (K * RW + 3) / 4;   // weights a window row, weight quads
  const __m512i padv = _mm512_set1_epi8(char(a.pad));
  const int64_t rs = int64_t(a.w) * 4, off = int64_t(px0 * S - a.pad_w) * 4;
  __m512i v[NB][K];   // the window's rows (constant indices below: registers, or spilled for K 7)
#pragma GCC unroll 8
  for (int ky = 0; ky < K; ++ky) {
    const int iy = (a.oy0 + r) * S - a.pad_h + ky;
    const uintptr_t row = iy < 0 || iy >= a.h ? reinterpret_cast<uintptr_t>(a.pad_row)
                                              : reinterpret_cast<uintptr_t>(a.x) + uintptr_t(iy * rs);
    for (int b = 0; b < NB; ++b) {
      const void* p = reinterpret_cast<const void*>(row + uintptr_t(off + b * 16 * S));
      v[b][ky] = Edge ? _mm512_mask_loadu_epi8(padv, lm, p) : _mm512_maskz_loadu_epi8(lm, p);
    }
  }
  __m512i acc[NB][NQ];
  for (int b = 0; b < NB; ++b)
    for (int q = 0; q < NQ; ++q) acc[b][q] = rc[q0 + q].corr;
  const int8_t* wq = a.wv + int64_t(q0) * J * 64;
#pragma GCC unroll 64
  for (int j = 0; j < J; ++j) {
    const int ra = 4 * j / RW, rb = ra + 1 < K ? ra + 1 : ra;   // rb == ra: bit 6 never set
    const __m512i idx = _mm512_loadu_si512(a.pidx + 64 * j);
    __m512i t[NB];
    for (int b = 0; b < NB; ++b) t[b] = _mm512_permutex2var_epi8(v[b][ra], idx, v[b][rb]);
#pragma GCC unroll 8
    for (int q = 0; q < NQ; ++q) {
      const __m512i wv = _mm512_loadu_si512(wq + (int64_t(q) * J + j) * 64);
      for (int b = 0; b < NB; ++b) acc[b][q] = _mm512_dpbusd_epi32(acc[b][q], t[b], wv);
    }
  }
  direct_store<NQ, NB>(a, rc, acc, q0, r, px0);
}

template <int S, int K, int C, bool Edge, int NB = 1>
__attribute__((target("avx512vbmi"))) inline void qconv_packed_quads(
    const QConvDirectArgs& a, const QAvx512Vnni::RowConst* rc, int r, int px0, __mmask64 lm) {
  for (int q0 = 0; q0 < a.quads;) {
    const int left = a.quads - q0;
    if (left >= 8) qconv_packed_block<S, K, C, 8, Edge, NB>(a, rc, q0, r, px0, lm), q0 += 8;
    else if (left >= 4) qconv_packed_block<S, K, C, 4, Edge, NB>(a, rc, q0, r, px0, lm), q0 += 4;
    else if (left >= 2) qconv_packed_block<S, K, C, 2, Edge, NB>(a, rc, q0, r, px0, lm), q0 += 2;
    else qconv_packed_block<S, K, C, 1, Edge, NB>(a, rc, q0, r, px0, lm), q0 += 1;
  }
}

template <int S, int K, int C>
__attribute__((target("avx512vbmi"))) void qconv_packed_s(const QConvDirectArgs& a, const QAvx512Vnni::RowConst* rc) {
  const int need = 3 * S + K;   // input pixels a block's window reads
  const auto interior = [&](int px0) { return px0 * S - a.pad_w >= 0 && px0 * S - a.pad_w + need <= a.w && px0 + 4 <= a.wo; };
  for (int r = 0; r < a.n_out; ++r)
    for (int px0 = 0; px0 < a.wo; px0 += 4) {
      const int start = px0 * S - a.pad_w;
      if (interior(px0) && interior(px0 + 4)) {
        qconv_packed_quads<S, K, C, false, 2>(a, rc, r, px0, qpixel_bytes(need));
        px0 += 4;
      } else if (interior(px0)) {
        qconv_packed_quads<S, K, C, false>(a, rc, r, px0, qpixel_bytes(need));
      } else {
        qconv_packed_quads<S, K, C, true>(a, rc, r, px0, qrow_bytes(start, a.w));
      }
    }
}

// The windows the packed form is compiled for: 3x3 and 7x7 (the stems) of 3 channels (RGB).
bool qconv_packs(int kh, int kw, int chans) { return kh == kw && (kh == 3 || kh == 7) && chans == 3; }

template <int S>
void qconv_packed_k(const QConvDirectArgs& a, const QAvx512Vnni::RowConst* rc) {
  if (a.kh == 3) qconv_packed_s<S, 3, 3>(a, rc);
  else qconv_packed_s<S, 7, 3>(a, rc);
}

// The output quads' lane constants of a direct conv.
inline void direct_consts(const QConvDirectArgs& a, QAvx512Vnni::RowConst* rc) {
  for (int q = 0; q < a.quads && q < kQDirectMaxQuads; ++q)
    rc[q] = QAvx512Vnni::make_const(_mm512_loadu_si512(a.corr + 16 * q), _mm512_loadu_ps(a.scale + 16 * q),
                                    _mm512_loadu_ps(a.bias + 16 * q), a.res_scale, a.res_zero, a.six,
                                    a.out_zero, a.act);
}

template <int S, int K>
void qconv_direct_s(const QConvDirectArgs& a) {
  QAvx512Vnni::RowConst rc[kQDirectMaxQuads];
  direct_consts(a, rc);
  __m512i kidx[16];   // tap kx: lane l -> the word of input pixel (l / 4) * S + kx
  const __m512i base = _mm512_setr_epi32(0, 0, 0, 0, S, S, S, S, 2 * S, 2 * S, 2 * S, 2 * S, 3 * S, 3 * S, 3 * S, 3 * S);
  for (int kx = 0; kx < a.kw && kx < 16; ++kx) kidx[kx] = _mm512_add_epi32(base, _mm512_set1_epi32(kx));
  const int need = 3 * S + a.kw;   // input pixels a block's window reads
  const auto interior = [&](int px0) { return px0 * S - a.pad_w >= 0 && px0 * S - a.pad_w + need <= a.w && px0 + 4 <= a.wo; };
  for (int r = 0; r < a.n_out; ++r)
    for (int px0 = 0; px0 < a.wo; px0 += 4) {
      const int start = px0 * S - a.pad_w;
      if (interior(px0) && interior(px0 + 4)) {
        qconv_direct_quads<S, K, false, 2>(a, rc, kidx, r, px0, qpixel_bytes(need));
        px0 += 4;
      } else if (interior(px0)) {
        qconv_direct_quads<S, K, false>(a, rc, kidx, r, px0, qpixel_bytes(need));
      } else {
        qconv_direct_quads<S, K, true>(a, rc, kidx, r, px0, qrow_bytes(start, a.w));
      }
    }
}

template <int S>
void qconv_direct_k(const QConvDirectArgs& a) {
  if (a.kh == 3 && a.kw == 3) return qconv_direct_s<S, 3>(a);
  if (a.kh == 7 && a.kw == 7) return qconv_direct_s<S, 7>(a);
  qconv_direct_s<S, 0>(a);
}

void qconv_direct(const QConvDirectArgs& a) {
  if (a.chans > 0) {
    QAvx512Vnni::RowConst rc[kQDirectMaxQuads];
    direct_consts(a, rc);
    if (a.stride == 1) qconv_packed_k<1>(a, rc);
    else qconv_packed_k<2>(a, rc);
    return;
  }
  if (a.stride == 1) qconv_direct_k<1>(a);
  else qconv_direct_k<2>(a);
}

// A gemv tile (QSpmmKernels::gemv): R rows in the lanes of a ymm, one vpdpbusd per entry and
// pixel with the pixel's input word broadcast and the entry's R weight quads (R x 4 bytes, the
// tile layout's own) as the other operand; 4 entries in flight (vpdpbusd's latency), NP
// pixels. At one pixel this is 1 vpdpbusd per entry where the pixel tiles take R (one lane of
// 16 used).
template <int R, int NP>
void qgemv(const QTileArgs& a) {
  constexpr int U = 4;
  const __mmask8 m = __mmask8((1u << R) - 1u);
  __m256i acc[NP][U];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) acc[p][u] = _mm256_setzero_si256();
  const auto wload = [m](const int8_t* w) {
    return R == 8 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)) : _mm256_maskz_loadu_epi32(m, w);
  };
  const auto xword = [](const uint8_t* p) {
    int32_t q;
    __builtin_memcpy(&q, p, 4);
    return _mm256_set1_epi32(q);
  };
  const uint8_t* x = a.x;
  const int32_t* off = a.off;
  const int8_t* w = a.w;
  const int64_t n = a.n_entries;
  int64_t e = 0;
  for (; e + U <= n; e += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const __m256i wv = wload(w + (e + u) * R * 4);
      const uint8_t* xp = x + int64_t(off[e + u]) * 4;
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p) acc[p][u] = _mm256_dpbusd_epi32(acc[p][u], xword(xp + 4 * p), wv);
    }
  }
  for (; e < n; ++e) {
    const __m256i wv = wload(w + e * R * 4);
    const uint8_t* xp = x + int64_t(off[e]) * 4;
#pragma GCC unroll 4
    for (int p = 0; p < NP; ++p) acc[p][0] = _mm256_dpbusd_epi32(acc[p][0], xword(xp + 4 * p), wv);
  }
  // the requantization with the rows' constants in the lanes (qspmm.h: the same operations as
  // every tile's), each row's byte stored at its own address (NCHW4 or NCHW, QTileArgs::quads)
  const QEpilogue& ep = *a.epi;
  const __mmask16 m16 = __mmask16((1u << R) - 1u);
  const QAvx512Vnni::RowConst c = QAvx512Vnni::make_const(
      _mm512_maskz_loadu_epi32(m16, ep.corr + a.row0), _mm512_maskz_loadu_ps(m16, ep.scale + a.row0),
      _mm512_maskz_loadu_ps(m16, ep.bias + a.row0), ep.res_scale, ep.res_zero, ep.six, ep.out_zero, ep.act);
  const auto at = [&a](int64_t stride, int r, int p) {
    const int o = a.row0 + r;
    return a.quads ? (o >> 2) * stride + 4 * p + (o & 3) : o * stride + p;
  };
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p) {
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(acc[p][0], acc[p][1]), _mm256_add_epi32(acc[p][2], acc[p][3]));
    const __m512i sum = _mm512_add_epi32(_mm512_maskz_inserti64x4(0xFF, _mm512_setzero_si512(), s, 0), c.corr);
    __m512i rv;
    if (a.res) {
      alignas(64) int32_t rr[16] = {};
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) rr[r] = a.res[at(a.res_row_stride, r, p)];
      rv = _mm512_load_si512(rr);
    }
    alignas(64) int32_t q[16];
    _mm512_store_si512(q, _mm512_add_epi32(QAvx512Vnni::requant_r(sum, a.res ? &rv : nullptr, c), c.zy));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) a.y[at(a.y_row_stride, r, p)] = uint8_t(q[r]);
  }
}

template <int R, int NP>
void fill_gemv(QSpmmKernels& t) {
  t.gemv[R - 1][NP - 1] = &qgemv<R, NP>;
  if constexpr (NP > 1) fill_gemv<R, NP - 1>(t);
  else if constexpr (R > 1) fill_gemv<R - 1, kQGemvMaxPix>(t);
}

}  // namespace

template <>
const QSpmmKernels* qspmm_table<QVariant::avx512vnni>() {
  // the table is built once, then this CPU's answer added to a copy of it
  static const QSpmmKernels table = [] {
    QSpmmKernels t = *qspmm_table_of<QAvx512Vnni>("avx512vnni");
    const bool vbmi = __builtin_cpu_supports("avx512vbmi");
    t.dw_rows = vbmi ? &qdw_rows_vbmi : nullptr;
    t.dw_direct = vbmi ? &qdw_direct_vbmi : nullptr;
    t.conv_direct = &qconv_direct;
    t.conv_packed = vbmi ? &qconv_packs : nullptr;
    fill_gemv<kQMaxGroupRows, kQGemvMaxPix>(t);
    return t;
  }();
  return &table;
}

}  // namespace spe
