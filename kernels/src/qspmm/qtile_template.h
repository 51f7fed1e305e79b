// The int8 SpMM microkernel body, written once over an int8 traits type Q (defined in each
// variant's translation unit, compiled with its flags), and the variant's table from the list.
//
// Q: kVariant, kPix (pixels a vector), kWBytes (bytes per weight quad), kXBias (qspmm.h's
// x_bias); acc; in, load(p) (kPix words from p), load_part(p, n) (n < kPix words,
// touching none past them: the planes may be the caller's own buffer); wt, weight(w, r) (row
// r's quad of an entry); madd(acc&, in, wt); acc, acc_zero(); ivec, finish(acc) (kPix s32
// sums), add_i32, load_acc(p, n) / store_acc(p, v, n) (n <= kPix of them); RowConst
// row_const(epilogue, o) (output channel o's constants, broadcast: .corr among them) with
// requant_store(y, a, res, n, row_const): qspmm.h's requantization of n pixels from a = sums +
// corr, and, where kGroup is 4, requant_store_group(y, a0, a1, a2, a3, res, row_const): the
// same for 4 whole vectors of consecutive pixels at once (kGroup 1: never called); where kQuads,
// requant_store_quads(y, a0, a1, a2, a3, res, n, c0, c1, c2, c3): 4 rows' n pixels stored as
// NCHW4 words (byte k of word p: row k's pixel p), the residual read the same way.
#ifndef SPE_QSPMM_QTILE_TEMPLATE_H_
#define SPE_QSPMM_QTILE_TEMPLATE_H_

#include "qspmm.h"

namespace spe {

// Input lines of the entry this far ahead are prefetched (entries jump between quads: no
// stream for the hardware prefetcher), as in the f32 tiles.
constexpr int kQInputPrefetchEntries = 8;

template <class Q, int R, int NV, bool kPartial>
void qspmm_tile_one(const QTileArgs& a) {
  constexpr int P = Q::kPix;
  // zeros, not corr: starting every accumulator of a row from one broadcast value makes GCC 12
  // copy and spill them inside the loop (a 4x6 tile: 42 moves, 31 stack accesses an entry)
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
  // the loop (an array of them for every row), they took the registers the loop needs. Whole
  // groups of kGroup vectors are stored first (a partial tile's last vector on its own); NCHW4
  // (a.quads) 4 rows at a time. The raw sums (acc_out) are stored in the same loop: a separate
  // loop for them, returning early, made GCC 12 copy and spill the accumulators inside the
  // entry loop (a 4x6 tile: 29 moves and 17 stack accesses an entry).
  constexpr int G = Q::kGroup, kGrouped = G > 1 ? (kPartial ? NV - 1 : NV) / G * G : 0;
  static_assert(G == 1 || G == 4, "requant_store_group takes 4 vectors");
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if constexpr (Q::kQuads && R % 4 == 0) {
      if (a.quads) {  // 4 rows at a time, each pixel's 4 channels interleaved in a word
        if (r % 4 == 0) {
          const typename Q::RowConst c0 = Q::row_const(*a.epi, a.row0 + r),
                                     c1 = Q::row_const(*a.epi, a.row0 + r + 1),
                                     c2 = Q::row_const(*a.epi, a.row0 + r + 2),
                                     c3 = Q::row_const(*a.epi, a.row0 + r + 3);
          uint8_t* y = a.y + r / 4 * a.y_row_stride;
          const uint8_t* res = a.res ? a.res + r / 4 * a.res_row_stride : nullptr;
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v)
            Q::requant_store_quads(y + v * P * 4, Q::add_i32(Q::finish(acc[r][v]), c0.corr),
                                   Q::add_i32(Q::finish(acc[r + 1][v]), c1.corr),
                                   Q::add_i32(Q::finish(acc[r + 2][v]), c2.corr),
                                   Q::add_i32(Q::finish(acc[r + 3][v]), c3.corr),
                                   res ? res + v * P * 4 : nullptr, v == NV - 1 ? last : P, c0, c1, c2, c3);
        }
        continue;
      }
    }
    const typename Q::RowConst c = Q::row_const(*a.epi, a.row0 + r);
    uint8_t* y = a.y + r * a.y_row_stride;
    const uint8_t* res = a.res ? a.res + r * a.res_row_stride : nullptr;
    if (a.acc_out) {
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v)
        Q::store_acc(a.acc_out + r * a.acc_row_stride + v * P, Q::finish(acc[r][v]), v == NV - 1 ? last : P);
      continue;
    }
#pragma GCC unroll 4
    for (int v = 0; v < kGrouped; v += G) {
      if constexpr (G == 4)
        Q::requant_store_group(y + v * P, Q::add_i32(Q::finish(acc[r][v]), c.corr),
                               Q::add_i32(Q::finish(acc[r][v + 1]), c.corr),
                               Q::add_i32(Q::finish(acc[r][v + 2]), c.corr),
                               Q::add_i32(Q::finish(acc[r][v + 3]), c.corr), res ? res + v * P : nullptr, c);
    }
#pragma GCC unroll 16
    for (int v = kGrouped; v < NV; ++v)
      Q::requant_store(y + v * P, Q::add_i32(Q::finish(acc[r][v]), c.corr), res ? res + v * P : nullptr,
                       v == NV - 1 ? last : P, c);
  }
}

// A call runs a.n_sub whole tiles side by side (QTileArgs::n_sub): one call, and the caller's
// bookkeeping, for several tiles of a group with few entries (a thin layer's tile is mostly
// its requantization, and the per-call work was a third of it).
template <class Q, int R, int NV, bool kPartial>
void qspmm_tile(const QTileArgs& a) {
  if (kPartial || a.n_sub <= 1 || a.acc_out) return qspmm_tile_one<Q, R, NV, kPartial>(a);
  constexpr int64_t T = int64_t(NV) * Q::kPix;
  const int64_t ystep = a.quads ? 4 * T : T;
  QTileArgs b = a;
  for (int s = 0; s < a.n_sub; ++s) {
    qspmm_tile_one<Q, R, NV, kPartial>(b);
    b.x += 4 * T;
    b.y += ystep;
    if (b.res) b.res += ystep;
  }
}

template <class Q>
void qepi_row(uint8_t* d, const int32_t* acc, const uint8_t* res, int n, const QEpilogue& e,
              int o) {
  constexpr int P = Q::kPix, G = Q::kGroup;
  const typename Q::RowConst c = Q::row_const(e, o);
  int k = 0;
  if constexpr (G == 4) {
    for (; k + G * P <= n; k += G * P) {
      const auto at = [&](int g) { return Q::add_i32(Q::load_acc(acc + k + g * P, P), c.corr); };
      Q::requant_store_group(d + k, at(0), at(1), at(2), at(3), res ? res + k : nullptr, c);
    }
  }
  for (; k < n; k += P) {
    const int m = n - k < P ? n - k : P;
    Q::requant_store(d + k, Q::add_i32(Q::load_acc(acc + k, m), c.corr), res ? res + k : nullptr, m, c);
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
    typename Q::ivec acc = c.corr;
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
    t.quads = Q::kQuads;
    for_each_index([&](auto i) { qfill_listed<Q, decltype(i)::value>(t); },
                   std::make_integer_sequence<int, kNumQSpmmUkernels>{});
    return t;
  }();
  return &table;
}

}  // namespace spe
#endif  // SPE_QSPMM_QTILE_TEMPLATE_H_
