// The direct conv tiles of the packed dense conv (dense_list.h; the driver: conv/direct_conv.cc),
// written once over vector traits V and compiled into each ISA's dense translation unit.
//
// A conv with few input channels (a mobile stem: 3 channels, 3x3, stride 2) has a GEMM depth K
// of ~27: the implicit GEMM spends as long gathering its strided im2col panel as multiplying it,
// and a tile's accumulators are loaded and stored every 27 FMAs. Here no im2col exists. Per
// output row, each input row a tap reads is laid out once in a phase row: zero-padded, and
// split by the stride (stride 2: the even and the odd columns), so that the tap (c, ky, kx)'s
// inputs for output pixels ox.. are whole contiguous vectors at phase (kx*dw) % s, offset
// (kx*dw) / s + ox. Rows shared by consecutive output rows (stride < kernel height) stay in
// their slot (channel, input row mod the kernel's height span). A tile of R output channels x
// NV vectors of pixels then runs over all K taps in registers: load the NV input vectors, one
// broadcast weight per row, the bias first and the epilogue (residual, activation) last.
#ifndef SPE_DENSE_DIRECT_TEMPLATE_H_
#define SPE_DENSE_DIRECT_TEMPLATE_H_

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gemm_template.h"  // store_out, weight_of

namespace spe {
namespace dense {

// Where a tile writes: y and res at (its first row, the output row, its first pixel).
struct ConvOut {
  float* y;
  const float* res;
  int64_t stride;      // floats from one output channel to the next (ho * wo)
  const float* bias;   // at the tile's first row, or null
  int rows;            // valid rows (<= R): the packed weights' others are zeros
  int act;
};

template <class V, int R, int NV>
void conv_tile(const float* const* taps, int64_t K, const float* w, int64_t ox, int npix,
               const ConvOut& o) {
  using reg = typename V::reg;
  constexpr int W = V::kWidth;
  reg acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const reg b = o.bias && r < o.rows ? V::set1(o.bias[r]) : V::zero();
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = b;
  }
  for (int64_t t = 0; t < K; ++t, w += R) fma_step<V, R, NV>(acc, taps[t] + ox, w);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    if (r >= o.rows) break;
    float* yr = o.y + r * o.stride;
    const float* rr = o.res ? o.res + r * o.stride : nullptr;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const int n = npix - v * W;
      if (n <= 0) break;
      store_out<V>(yr + v * W, rr ? rr + v * W : nullptr, acc[r][v], o.act, n);
    }
  }
}

// Stride 2: x's even and odd columns straight into the two phase rows, then the zeros around
// them. (Splitting a padded copy instead reads back vectors just stored one float off: with an
// odd padding every load waits on two stores it cannot forward from; measured ~2/3 of the
// path's per-row cost at 16 channels.) With pad = 2a + b, phase 0 holds x's even columns from
// a on (b = 0) or its odd ones from a + 1 (b = 1), phase 1 the others.
template <class V>
void split_stride2(const float* x, int64_t w, int64_t pad, int64_t L, float* ph0, float* ph1) {
  const int64_t a = pad / 2, b = pad % 2;
  float* E = b ? ph1 : ph0;  // x[2i] at E[e0 + i]
  float* O = b ? ph0 : ph1;  // x[2i + 1] at O[o0 + i]
  const int64_t e0 = std::min(a, L), o0 = std::min(a + b, L);
  const int64_t ne = std::min((w + 1) / 2, L - e0), no = std::min(w / 2, L - o0);  // no <= ne
  V::deinterleave(x, E + e0, O + o0, int(no));
  if (ne > no) E[e0 + no] = x[2 * no];
  std::memset(E, 0, sizeof(float) * size_t(e0));
  std::memset(E + e0 + ne, 0, sizeof(float) * size_t(L - e0 - ne));
  std::memset(O, 0, sizeof(float) * size_t(o0));
  std::memset(O + o0 + no, 0, sizeof(float) * size_t(L - o0 - no));
}

// Input row xrow (w floats) as s = stride_w phase rows of L floats each: out[q * L + m] =
// padded[m * s + q], padded[j] = xrow[j - pad_w] (zero outside the row). `pad`: s * L floats
// of scratch (stride 1 writes the padded row straight into out).
template <class V>
void conv_phase_rows(const spe_conv_params& p, const float* xrow, int64_t w, int64_t L,
                     float* pad, float* out) {
  if (p.stride_w == 2) return split_stride2<V>(xrow, w, p.pad_w, L, out, out + L);
  const int64_t s = p.stride_w, n = s * L;
  const int64_t lead = std::min<int64_t>(p.pad_w, n), len = std::clamp<int64_t>(n - p.pad_w, 0, w);
  float* dst = s == 1 ? out : pad;
  std::memset(dst, 0, sizeof(float) * size_t(lead));
  V::copy(xrow, dst + lead, int(len));
  std::memset(dst + lead + len, 0, sizeof(float) * size_t(n - lead - len));
  if (s > 1) {
    for (int64_t q = 0; q < s; ++q)
      for (int64_t m = 0; m < L; ++m) out[q * L + m] = pad[m * s + q];
  }
}

// ConvRowsFn (dense.h) of the tile R x NV vectors.
template <class V, int R, int NV>
void conv_rows(const ConvRowsArgs& a) {
  constexpr int W = V::kWidth;
  using TileFn = void (*)(const float* const*, int64_t, const float*, int64_t, int, const ConvOut&);
  TileFn tail[NV];  // tail[nv - 1]: the last, partial chunk of a row
  for_each_index([&](auto v) { tail[decltype(v)::value] = &conv_tile<V, R, decltype(v)::value + 1>; },
                 std::make_integer_sequence<int, NV>{});
  const spe_conv_params& p = *a.p;
  const int64_t C = p.in_channels, kh = p.kh, kw = p.kw, s = p.stride_w;
  const int64_t span = (kh - 1) * p.dil_h + 1, L = conv_phase_floats(p, a.wo, W), slot = s * L;
  const int64_t K = C * kh * kw, O = p.out_channels, P = a.ho * a.wo;
  float* zero = a.scratch + C * span * slot;
  float* pad = zero + slot;
  std::memset(zero, 0, sizeof(float) * size_t(slot));
  std::vector<int64_t> held(size_t(C * span), std::numeric_limits<int64_t>::min());
  for (int64_t oy = a.oy0; oy < a.oy1; ++oy) {
    const int64_t iy0 = oy * p.stride_h - p.pad_h;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t ky = 0; ky < kh; ++ky) {
        const int64_t iy = iy0 + ky * p.dil_h;
        const float* row = zero;
        if (iy >= 0 && iy < a.h) {
          const int64_t sl = c * span + iy % span;
          float* dst = a.scratch + sl * slot;
          if (held[size_t(sl)] != iy) {
            conv_phase_rows<V>(p, a.x + (c * a.h + iy) * a.w, a.w, L, pad, dst);
            held[size_t(sl)] = iy;
          }
          row = dst;
        }
        for (int64_t kx = 0; kx < kw; ++kx) {
          const int64_t off = kx * p.dil_w;
          a.taps[(c * kh + ky) * kw + kx] = row + (off % s) * L + off / s;
        }
      }
    for (int64_t r0 = 0; r0 < O; r0 += R) {
      const float* wt = a.wpk + r0 / R * K * R;
      ConvOut o{a.y + r0 * P + oy * a.wo, a.res ? a.res + r0 * P + oy * a.wo : nullptr, P,
                a.bias ? a.bias + r0 : nullptr, int(std::min<int64_t>(R, O - r0)), a.act};
      for (int64_t ox = 0; ox < a.wo; ox += NV * W) {
        const int n = int(std::min<int64_t>(NV * W, a.wo - ox));
        ConvOut at = o;
        at.y += ox;
        if (at.res) at.res += ox;
        if (n == NV * W) conv_tile<V, R, NV>(a.taps, K, wt, ox, n, at);
        else tail[(n + W - 1) / W - 1](a.taps, K, wt, ox, n, at);
      }
    }
  }
}

}  // namespace dense
}  // namespace spe
#endif  // SPE_DENSE_DIRECT_TEMPLATE_H_
