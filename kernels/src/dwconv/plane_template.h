// The f32 depthwise plane kernel (see dwconv.h for the method), written once over a
// vector-traits type T and included by each ISA's translation unit, compiled with its flags.
//
// T is an ISA's vector traits (isa/*.h: the vector operations, kRegs and the row moves copy and
// deinterleave); the ISA's translation unit makes its table from the list (dw_table_of).
#ifndef SPE_DWCONV_PLANE_TEMPLATE_H_
#define SPE_DWCONV_PLANE_TEMPLATE_H_

#include <algorithm>

#include "../isa/table.h"
#include "dwconv.h"
#include "epilogue.h"
#include "flat_template.h"

namespace spe {
namespace dw {

// Copies input row xr (g.w floats) into the row buffer d (sw phases of g.lp floats): phase p,
// index i <- xr[i*sw + p - pw], for the indices that fall inside the image and the buffer. The
// other floats are padding and are never written (they stay zero).
template <class T>
inline void fill_row(const float* xr, float* d, const DwGeom& g, int sw) {
  const int w = g.w, pw = g.pw, lp = g.lp;
  constexpr int V = T::kWidth;
  if (sw == 1) {
    const int n = std::min(w, lp - pw);
    if (n <= 0) return;
    const int nv = (n + V - 1) / V;
    if (pw + nv * V > lp) {
      T::copy(xr, d + pw, n);
      return;
    }
    // Whole-vector stores (the last load's masked-off lanes are zeros, stored into the right
    // padding): the compute loads that follow get their data forwarded from plain stores.
    int k = 0;
    for (; k + V <= n; k += V) T::store(d + pw + k, T::load(xr + k));
    if (k < n) T::store(d + pw + k, T::load_mask(xr + k, T::mask(n - k)));
    return;
  }
  if (sw == 2) {
    if constexpr (T::kIsa == Isa::avx512) {  // whole vectors from padded index pw / 2 on
      const int i0 = pw >> 1, shift = pw & 1, nv = ((w + shift + 1) / 2 + V - 1) / V;
      if (i0 + nv * V <= lp) {
        T::deinterleave_zero_padded(xr, w, shift, d + i0, d + lp + i0, nv);
        return;
      }
    }
    // image column x is padded column c = x + pw: phase c & 1, index c >> 1. From the first
    // column with even c on, consecutive pairs go to (phase 0, phase 1) at one index.
    int x = 0;
    if (pw & 1) {
      if ((pw >> 1) < lp) d[lp + (pw >> 1)] = xr[0];
      x = 1;
    }
    const int i0 = (x + pw) >> 1;
    const int pairs = std::max(0, std::min((w - x) / 2, lp - i0));
    if (pairs > 0) T::deinterleave(xr + x, d + i0, d + lp + i0, pairs);
    for (x += 2 * pairs; x < w; ++x) {
      const int c = x + pw;
      if ((c >> 1) >= lp) break;
      d[(c & 1) * lp + (c >> 1)] = xr[x];
    }
    return;
  }
  for (int p = 0; p < sw; ++p) {
    // i*sw + p - pw in [0, w)  <=>  i in [ceil((pw - p) / sw), ceil((w + pw - p) / sw))
    const int i0 = pw - p <= 0 ? 0 : (pw - p + sw - 1) / sw;
    const int i1 = std::min(lp, (w + pw - p + sw - 1) / sw);
    float* dp = d + p * lp;
    const float* s = xr + (int64_t(i0) * sw + p - pw);
    for (int i = i0; i < i1; ++i) dp[i] = s[int64_t(i - i0) * sw];
  }
}

constexpr int kMaxUnroll = 4;  // vectors of an output row computed side by side

struct OutRow {
  float* y;          // the output row
  const float* res;  // its residual row, or null
};

// Vectors needed side by side for R output rows of KK taps: R*N accumulators, the weights
// (when they fit; x86 FMAs can also take them from memory) and an input vector in registers.
template <class T, int R, int KK>
constexpr int unroll_for() {
  const int weights = KK < T::kRegs / 2 ? KK : T::kRegs / 2;
  const int n = (T::kRegs - weights - 2) / R;
  return n < 1 ? 1 : n > kMaxUnroll ? kMaxUnroll : n;
}

// Vectors [j, j + N*V) of R consecutive output rows of a specialised kernel (KH x KW taps,
// stride S both ways, dilation 1, weights in wv). in[i], i < KH + (R-1)*S: the row buffers of
// the input rows from the first output row's top tap down; output row q uses in[q*S + ky], so
// rows shared by the R outputs are loaded once (stride 1: 4 input rows feed 2 output rows).
// R*N independent accumulators hide the FMA latency. kPartial: the last vector ends the row
// and may be partial (the row buffers hold whole vectors; only residual and y are masked).
template <class T, int R, int N, bool kPartial, int KH, int KW, int S, class E>
inline void block_special(const float* const* in, int lp, const typename T::reg* wv,
                          typename T::reg bias, int j, const OutRow* out, int wo,
                          const E& act) {
  using reg = typename T::reg;
  constexpr int V = T::kWidth;
  reg acc[R][N];
#pragma GCC unroll 4
  for (int q = 0; q < R; ++q)
#pragma GCC unroll 4
    for (int u = 0; u < N; ++u) acc[q][u] = bias;
#pragma GCC unroll 16
  for (int i = 0; i < KH + (R - 1) * S; ++i) {
#pragma GCC unroll 8
    for (int kx = 0; kx < KW; ++kx) {
      const float* src = in[i] + (kx % S) * lp + kx / S + j;
#pragma GCC unroll 4
      for (int u = 0; u < N; ++u) {
        const reg x = T::load(src + u * V);
#pragma GCC unroll 4
        for (int q = 0; q < R; ++q) {
          const int ky = i - q * S;
          if (ky >= 0 && ky < KH) acc[q][u] = T::fma(x, wv[ky * KW + kx], acc[q][u]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < R; ++q)
#pragma GCC unroll 4
    for (int u = 0; u < N; ++u) {
      const int jj = j + u * V;
      const float* rr = out[q].res ? out[q].res + jj : nullptr;
      if (kPartial && u == N - 1) store_out<T, true>(acc[q][u], rr, out[q].y + jj, wo - jj, act);
      else store_out<T, false>(acc[q][u], rr, out[q].y + jj, V, act);
    }
}

// The last `rem` (1..N) vectors of the rows, from j: one block of exactly rem vectors.
template <class T, int R, int N, int KH, int KW, int S, class E>
inline void last_block(int rem, bool partial, const float* const* in, int lp,
                       const typename T::reg* wv, typename T::reg bias, int j,
                       const OutRow* out, int wo, const E& act) {
  if (rem == N) {
    if (partial) block_special<T, R, N, true, KH, KW, S>(in, lp, wv, bias, j, out, wo, act);
    else block_special<T, R, N, false, KH, KW, S>(in, lp, wv, bias, j, out, wo, act);
  } else if constexpr (N > 1) {
    last_block<T, R, N - 1, KH, KW, S>(rem, partial, in, lp, wv, bias, j, out, wo, act);
  }
}

// R (1 or 2) whole output rows of a specialised kernel.
template <class T, int R, int KH, int KW, int S, class E>
inline void rows_special(const float* const* in, int lp, const typename T::reg* wv,
                         typename T::reg bias, const OutRow* out, int wo, const E& act) {
  constexpr int V = T::kWidth, U = unroll_for<T, R, KH * KW>();
  const bool partial = wo % V != 0;
  const int nv = (wo + V - 1) / V;  // vectors in a row, the last one maybe partial
  int v = 0;
  for (; nv - v > U; v += U)  // blocks before the last: all vectors full
    block_special<T, R, U, false, KH, KW, S>(in, lp, wv, bias, v * V, out, wo, act);
  last_block<T, R, U, KH, KW, S>(nv - v, partial, in, lp, wv, bias, v * V, out, wo, act);
}

// Vectors [j, j + N*V) of one output row of any geometry: tap (ky, kx) reads rows[ky] + coff[kx].
template <class T, int N, class E>
inline void block_generic(const float* const* rows, const int* coff, int kh, int kw,
                          const float* w, float bias, int j, const OutRow& out, int wo,
                          const E& act) {
  using reg = typename T::reg;
  constexpr int V = T::kWidth;
  reg a[N];
#pragma GCC unroll 4
  for (int u = 0; u < N; ++u) a[u] = T::set1(bias);
  for (int ky = 0; ky < kh; ++ky) {
    const float* rb = rows[ky] + j;
    for (int kx = 0; kx < kw; ++kx) {
      const reg wt = T::set1(w[ky * kw + kx]);
      const float* s = rb + coff[kx];
#pragma GCC unroll 4
      for (int u = 0; u < N; ++u) a[u] = T::fma(T::load(s + u * V), wt, a[u]);
    }
  }
#pragma GCC unroll 4
  for (int u = 0; u < N; ++u) {
    const int jj = j + u * V, n = std::min(V, wo - jj);
    const float* rr = out.res ? out.res + jj : nullptr;
    if (n < V) store_out<T, true>(a[u], rr, out.y + jj, n, act);
    else store_out<T, false>(a[u], rr, out.y + jj, V, act);
  }
}

template <class T, class E>
inline void row_generic(const float* const* rows, const int* coff, int kh, int kw,
                        const float* w, float bias, const OutRow& out, int wo,
                        const E& act) {
  constexpr int V = T::kWidth, U = kMaxUnroll;
  const int nv = (wo + V - 1) / V;
  int v = 0;
  for (; v + U <= nv; v += U)
    block_generic<T, U>(rows, coff, kh, kw, w, bias, v * V, out, wo, act);
  for (; v < nv; ++v) block_generic<T, 1>(rows, coff, kh, kw, w, bias, v * V, out, wo, act);
}

// Output rows [oy0, oy1) of one channel plane. KH == 0: the generic kernel (runtime geometry).
template <class T, int KH, int KW, int SW, class E>
void plane_with(const DwPlaneArgs& a, const E& act) {
  using reg = typename T::reg;
  constexpr bool kSpecial = KH > 0;
  const DwGeom& g = *a.g;
  const int kh = kSpecial ? KH : g.kh, kw = kSpecial ? KW : g.kw;
  const int sw = kSpecial ? SW : g.sw, dh = kSpecial ? 1 : g.dh, dw = kSpecial ? 1 : g.dw;
  const int sh = kSpecial ? SW : g.sh, h = g.h, lp = g.lp, wo = g.wo;
  const int64_t rf = g.row_floats();
  const float* zero_row = a.scratch;
  float* buf = a.scratch + rf;

  int coff[64];  // tap column -> offset in a row buffer
  for (int kx = 0; kx < kw; ++kx) coff[kx] = ((kx * dw) % sw) * lp + (kx * dw) / sw;
  reg wv[kSpecial ? KH * KW : 1];
  if constexpr (kSpecial)
    for (int t = 0; t < KH * KW; ++t) wv[t] = T::set1(a.w[t]);
  const reg bias = T::set1(a.bias);
  auto out_row = [&](int oy) {
    return OutRow{a.y + int64_t(oy) * wo, a.res ? a.res + int64_t(oy) * wo : nullptr};
  };

  // Prefetch of the next work item's input, spread over this item's output row passes.
  const char* pf = reinterpret_cast<const char*>(a.prefetch);
  const char* pf_end = pf ? pf + a.prefetch_floats * 4 : nullptr;
  const int64_t pf_step = pf ? (a.prefetch_floats * 4 / ((a.oy1 - a.oy0 + 1) / 2) + 63) & ~63 : 0;
  auto prefetch_some = [&] {
    for (const char* e = std::min(pf_end, pf + pf_step); pf < e; pf += 64) __builtin_prefetch(pf, 0, 3);
  };

  const float* rows[64 + 2];
  if (g.block == 0) {  // huge span (generic only): each output row copies its tap rows
    for (int oy = a.oy0; oy < a.oy1; ++oy) {
      for (int ky = 0; ky < kh; ++ky) {
        const int r = oy * sh - g.ph + ky * dh;
        rows[ky] = zero_row;
        if (r >= 0 && r < h) {
          fill_row<T>(a.x + int64_t(r) * g.w, buf + ky * rf, g, sw);
          rows[ky] = buf + ky * rf;
        }
      }
      row_generic<T>(rows, coff, kh, kw, a.w, a.bias, out_row(oy), wo, act);
    }
    return;
  }
  const int span = (kh - 1) * dh + 1;
  for (int ob = a.oy0; ob < a.oy1; ob += g.block) {
    const int oe = std::min(a.oy1, ob + g.block);
    const int r0 = ob * sh - g.ph;  // the block's input rows: [r0, r0 + slots)
    const int r1 = std::min(h, (oe - 1) * sh - g.ph + span);
    for (int r = std::max(r0, 0); r < r1; ++r)
      fill_row<T>(a.x + int64_t(r) * g.w, buf + (r - r0) * rf, g, sw);
    // the row buffer of input row r (the zero row outside the image)
    auto row = [&](int r) -> const float* {
      return unsigned(r) < unsigned(h) ? buf + (r - r0) * rf : zero_row;
    };
    if constexpr (kSpecial) {
      // Two output rows a pass share KH - S of their input rows. At stride 2 that is one row
      // of five, for twice the row pointers: past two vectors a row the compiler spills them,
      // and one row a pass is faster (1.15x on 112x112 stride 2, AVX-512 on Zen 4).
      const bool pairs = SW == 1 || wo <= 2 * T::kWidth;
      int oy = ob;
      for (; pairs && oy + 2 <= oe; oy += 2) {  // two output rows a pass: rows [rt, rt + KH + S)
        const int rt = oy * sh - g.ph;
        for (int i = 0; i < KH + SW; ++i) rows[i] = row(rt + i);
        const OutRow out[2] = {out_row(oy), out_row(oy + 1)};
        rows_special<T, 2, KH, KW, SW>(rows, lp, wv, bias, out, wo, act);
        prefetch_some();
      }
      for (; oy < oe; ++oy) {
        const int rt = oy * sh - g.ph;
        for (int i = 0; i < KH; ++i) rows[i] = row(rt + i);
        const OutRow out[1] = {out_row(oy)};
        rows_special<T, 1, KH, KW, SW>(rows, lp, wv, bias, out, wo, act);
        prefetch_some();
      }
    } else {
      for (int oy = ob; oy < oe; ++oy) {
        const int rt = oy * sh - g.ph;
        for (int ky = 0; ky < kh; ++ky) rows[ky] = row(rt + ky * dh);
        row_generic<T>(rows, coff, kh, kw, a.w, a.bias, out_row(oy), wo, act);
        if (oy & 1) prefetch_some();
      }
    }
  }
}

template <class T, int KH, int KW, int SW>
void plane(const DwPlaneArgs& a) {
  with_epilogue<T>(a.act, [&](const auto& act) { plane_with<T, KH, KW, SW>(a, act); });
}

// Line I of the list, if it is one of T's kernels.
template <class T, int I>
void fill_listed(DwKernels& t) {
  constexpr DwUkernel u = kDwUkernels[I];
  if constexpr (u.isa == T::kIsa && u.k == 0) {
    t.generic = &plane<T, 0, 0, 0>;
    t.generic_name = u.name;
  } else if constexpr (u.isa == T::kIsa) {
    static_assert(u.k >= 1 && u.s >= 1 && u.k + u.s <= 66,  // plane's rows[64 + 2]
                  "dwconv_list.h: a specialised kernel needs k >= 1, s >= 1, k + s <= 66");
    t.special[t.n_special++] =
        DwSpecialised{u.k, u.s, &plane<T, u.k, u.k, u.s>, u.name, flat_for<T, u.k, u.s>()};
  }
}

}  // namespace dw

// T's kernels, as dwconv_list.h lists them.
template <class T>
const DwKernels* dw_table_of() {
  return isa_table<DwKernels, T, kNumDwUkernels>(
      [](DwKernels& t, auto i) { dw::fill_listed<T, decltype(i)::value>(t); });
}

}  // namespace spe
#endif  // SPE_DWCONV_PLANE_TEMPLATE_H_
