// The int8 SpMM microkernel body, written once over an int8 traits type Q (defined in each
// variant's translation unit, compiled with its flags), and the variant's table from the list.
//
// Q: kVariant, kPix (pixels a vector), kWBytes (bytes per weight quad), kXBias (qspmm.h's
// x_bias); acc, acc_zero(); in, load(p) (kPix words from p), load_part(p, n) (n < kPix words,
// touching none past them: the planes may be the caller's own buffer); wt, weight(w, r) (row r's quad of an entry); madd(acc&, in, wt); ivec,
// finish(acc) (kPix s32 sums), load_acc(p, n) / store_acc(p, v, n) (n <= kPix of them), and
// RowConst row_const(epilogue, o) (output channel o's constants, broadcast) with
// requant_store(y, sums, res, n, row_const): qspmm.h's requantization of n pixels.
#ifndef SPE_QSPMM_QTILE_TEMPLATE_H_
#define SPE_QSPMM_QTILE_TEMPLATE_H_

#include "qspmm.h"

namespace spe {

// Input lines of the entry this far ahead are prefetched (entries jump between quads: no
// stream for the hardware prefetcher), as in the f32 tiles.
constexpr int kQInputPrefetchEntries = 8;

template <class Q, int R, int NV, bool kPartial>
void qspmm_tile(const QTileArgs& a) {
  constexpr int P = Q::kPix;
  typename Q::acc acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[r][v] = Q::acc_zero();
  const int last = kPartial ? a.npix - (NV - 1) * P : P;  // pixels of the last vector
  const uint8_t* x = a.x;
  const int32_t* off = a.off;
  const int8_t* w = a.w;
  for (int64_t e = 0; e < a.n_entries; ++e) {
    const uint8_t* xp = x + int64_t(off[e]) * 4;
    if (e + kQInputPrefetchEntries < a.n_entries) {
      const uint8_t* xq = x + int64_t(off[e + kQInputPrefetchEntries]) * 4;
#pragma GCC unroll 16
      for (int b = 0; b < NV * P * 4 + 64; b += 64) __builtin_prefetch(xq + b, 0, 3);
    }
    typename Q::in xv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v)
      xv[v] = kPartial && v == NV - 1 && last < P ? Q::load_part(xp + v * P * 4, last)
                                                 : Q::load(xp + v * P * 4);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const typename Q::wt wr = Q::weight(w, r);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) Q::madd(acc[r][v], xv[v], wr);
    }
    w += R * Q::kWBytes;
  }
  // Per row, its constants broadcast once (Q::RowConst), where they are used: made before
  // the loop (an array of them for every row), they took the registers the loop needs.
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const typename Q::RowConst c = Q::row_const(*a.epi, a.row0 + r);
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const int n = v == NV - 1 ? last : P;
      const typename Q::ivec s = Q::finish(acc[r][v]);
      if (a.acc_out) {
        Q::store_acc(a.acc_out + r * a.acc_row_stride + v * P, s, n);
      } else {
        const uint8_t* res = a.res ? a.res + r * a.res_row_stride + v * P : nullptr;
        Q::requant_store(a.y + r * a.y_row_stride + v * P, s, res, n, c);
      }
    }
  }
}

template <class Q>
void qepi_row(uint8_t* d, const int32_t* acc, const uint8_t* res, int n, const QEpilogue& e,
              int o) {
  const typename Q::RowConst c = Q::row_const(e, o);
  for (int k = 0; k < n; k += Q::kPix) {
    const int m = n - k < Q::kPix ? n - k : Q::kPix;
    Q::requant_store(d + k, Q::load_acc(acc + k, m), res ? res + k : nullptr, m, c);
  }
}

// An int8 depthwise row (QDwRowArgs) on Q: kPix lanes (bytes) at a time, the taps' weights and
// the lane constants as kPix-lane patterns (4 channels repeated: every kPix is a multiple of 4).
template <class Q>
void qdw_row(const QDwRowArgs& d) {
  constexpr int P = Q::kPix;
  static_assert(P % 4 == 0 && P <= 16, "lane patterns repeat every 4 lanes, 16 of them given");
  typename Q::ivec wv[64];
  const int taps = d.n_taps < 64 ? d.n_taps : 64;
  for (int t = 0; t < taps; ++t) {
    alignas(64) int32_t pat[16];
    for (int l = 0; l < 16; ++l) pat[l] = d.w[4 * t + (l & 3)];
    wv[t] = Q::load_i32(pat);
  }
  const typename Q::RowConst c = Q::lane_const(d);
  for (int j = 0; j < d.n; j += P) {
    const int m = d.n - j < P ? d.n - j : P;
    typename Q::ivec acc = Q::zero_i32();
    for (int t = 0; t < taps; ++t) acc = Q::mul_add(acc, Q::load_u8(d.src[t] + j, m), wv[t]);
    for (int t = taps; t < d.n_taps; ++t) {  // past 64 taps (a kernel over 8x8): patterns here
      alignas(64) int32_t pat[16];
      for (int l = 0; l < 16; ++l) pat[l] = d.w[4 * t + (l & 3)];
      acc = Q::mul_add(acc, Q::load_u8(d.src[t] + j, m), Q::load_i32(pat));
    }
    Q::requant_store(d.y + j, acc, d.res ? d.res + j : nullptr, m, c);
  }
}

template <class Q, int R, int NV>
struct QTailFill {
  static void fill(QSpmmKernels& k) {
    k.tail[R - 1][NV - 1] = &qspmm_tile<Q, R, NV, true>;
    if constexpr (NV > 1) QTailFill<Q, R, NV - 1>::fill(k);
  }
};

template <class Q, int I>
void qfill_listed(QSpmmKernels& k) {
  constexpr QSpmmUkernel u = kQSpmmUkernels[I];
  if constexpr (u.variant == Q::kVariant) {
    constexpr int nv = u.pixels / Q::kPix;
    static_assert(u.pixels % Q::kPix == 0 && nv >= 1 && nv <= kQMaxTileVectors,
                  "qspmm_list.h: a tile's pixels must be 1..16 whole vectors of its variant");
    k.nv[u.rows - 1] = nv;
    k.name[u.rows - 1] = u.name;
    k.full[u.rows - 1] = &qspmm_tile<Q, u.rows, nv, false>;
    QTailFill<Q, u.rows, nv>::fill(k);
  }
}

// Q's table, as qspmm_list.h lists its kernels. Built once.
template <class Q>
const QSpmmKernels* qspmm_table_of(const char* name) {
  static const QSpmmKernels table = [&] {
    QSpmmKernels t{};
    t.variant = name;
    t.width = Q::kPix;
    t.x_bias = Q::kXBias;
    t.w_bytes = Q::kWBytes;
    t.epi_row = &qepi_row<Q>;
    t.dw_row = &qdw_row<Q>;
    for_each_index([&](auto i) { qfill_listed<Q, decltype(i)::value>(t); },
                   std::make_integer_sequence<int, kNumQSpmmUkernels>{});
    return t;
  }();
  return &table;
}

}  // namespace spe
#endif  // SPE_QSPMM_QTILE_TEMPLATE_H_
