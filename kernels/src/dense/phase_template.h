// The phase path of the packed dense conv (conv/phase_conv.cc): a strided conv with a larger
// GEMM depth (ResNet's 7x7 stride-2 stem, its 3x3 stride-2 convs) as a direct conv over
// flattened stride phases, written once over vector traits V (dense_conv_table_of).
//
// The zero-padded input splits into stride_h x stride_w phase planes, plane (c, py, px)[i][j] =
// padded[c][i * sh + py][j * sw + px], each row Wq = wo + (kw - 1) * dw / sw floats long. Tap
// (c, ky, kx) of output pixel (oy, ox) is then plane (c, ky*dh % sh, kx*dw % sw) at row
// oy + ky*dh / sh, column ox + kx*dw / sw: with the output flattened at the planes' row length
// (q = oy * Wq + ox, the Wq - wo columns past each row computed and dropped) every tap reads
// one contiguous run of q, so a tile of R output channels x NV vectors of q runs over all K
// taps in registers like the direct path's tiles (direct_template.h), however narrow the
// output rows (7 wide at 7x7: the direct path's tiles ran at 7/16 of their lanes). Unlike
// im2col, the planes hold each input float once.
#ifndef SPE_DENSE_PHASE_TEMPLATE_H_
#define SPE_DENSE_PHASE_TEMPLATE_H_

#include <algorithm>
#include <cstring>
#include <string>

#include "direct_template.h"  // fma_step, store_out, split_stride2

namespace spe {
namespace dense {

// Taps a chunk: 256 x 8 rows of weights, 8 KiB (a 3x3 conv of 128 channels has K = 1152: its
// 36 KiB of weights a row tile, read once a pixel tile, came from L2).
constexpr int64_t kPhaseChunkTaps = 256;

// Writes a tile's accumulators t (R rows of NV*W floats, q0.. q0 + n) to y, dropping the
// columns past each output row.
template <class V>
void phase_store(const PhaseArgs& a, const float* t, int tw, int rows, int64_t r0, int64_t q0,
                 int64_t n) {
  constexpr int W = V::kWidth;
  const int64_t Wq = a.wq, P = a.ho * a.wo;
  for (int64_t q = q0; q < q0 + n;) {
    const int64_t oy = q / Wq, ox = q - oy * Wq, len = std::min(Wq - ox, q0 + n - q);
    const int64_t valid = std::min(len, a.wo - ox);
    for (int r = 0; r < rows; ++r) {
      const int64_t at = (r0 + r) * P + oy * a.wo + ox;
      const float* tr = t + r * tw + (q - q0);
      for (int64_t i = 0; i < valid; i += W)
        store_out<V>(a.y + at + i, a.res ? a.res + at + i : nullptr, V::load(tr + i), a.act,
                     int(std::min<int64_t>(W, valid - i)));
    }
    q += len;
  }
}

// A chunk of taps [k0, k1) of the tile (rows r0.., pixels q0.., n of them): from the bias (the
// first chunk) or the partial sums in acc (R rows of `aw` floats over the band's pixels, from
// the band's first), to acc again or (the last chunk) to y.
struct PhaseChunk {
  int64_t k0, k1;
  float* acc;
  int64_t aw, band0;
  bool first, last;
};

template <class V, int R, int NV>
void phase_tile(const PhaseArgs& a, const PhaseChunk& ch, const float* w, int rows, int64_t r0,
                int64_t q0, int64_t n, int64_t shift) {
  using reg = typename V::reg;
  constexpr int W = V::kWidth;
  reg acc[R][NV];
  float* part = ch.acc + (q0 - ch.band0);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const reg b = a.bias && r < rows ? V::set1(a.bias[r0 + r]) : V::zero();
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = ch.first ? b : V::load(part + r * ch.aw + v * W);
  }
  const float* const* taps = a.taps;
  const int64_t off = q0 - shift;  // the tile's first q in the planes
  w += ch.k0 * R;
  for (int64_t t = ch.k0; t < ch.k1; ++t, w += R) fma_step<V, R, NV>(acc, taps[t] + off, w);
  if (!ch.last) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) V::store(part + r * ch.aw + v * W, acc[r][v]);
    return;
  }
  // one spare row: phase_store loads whole vectors and stores only a row's valid lanes, so the
  // last row's final load may run past its end (read, never used)
  alignas(64) float buf[R + 1][NV * W];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) V::store(&buf[r][v * W], acc[r][v]);
  phase_store<V>(a, &buf[0][0], NV * W, rows, r0, q0, n);
}

// PhaseFn (dense.h) of the tile R x NV vectors: lays out the planes of the rows q0..q1 read,
// then every row tile over every pixel tile.
template <class V, int R, int NV>
void phase_rows(const PhaseArgs& a) {
  constexpr int W = V::kWidth;
  using TileFn = void (*)(const PhaseArgs&, const PhaseChunk&, const float*, int, int64_t,
                          int64_t, int64_t, int64_t);
  TileFn tiles[NV];  // tiles[nv - 1]: nv vectors (the band's last, partial tile)
  for_each_index([&](auto v) { tiles[decltype(v)::value] = &phase_tile<V, R, decltype(v)::value + 1>; },
                 std::make_integer_sequence<int, NV>{});
  const spe_conv_params& p = *a.p;
  const int64_t sh = p.stride_h, sw = p.stride_w, Wq = a.wq;
  const int64_t i0 = a.q0 / Wq, i1 = (a.q1 - 1) / Wq + 1 + (p.kh - 1) * p.dil_h / sh;  // plane rows
  const int64_t ps = phase_plane_floats(p, i1 - i0, Wq, NV * W);
  float* planes = a.scratch;
  float* row = planes + p.in_channels * sh * sw * ps;  // sw phase rows of Wq, then their padded row
  for (int64_t c = 0; c < p.in_channels; ++c)
    for (int64_t py = 0; py < sh; ++py) {
      float* pl = planes + (c * sh + py) * sw * ps;  // plane (c, py, px) at pl + px * ps
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t iy = i * sh + py - p.pad_h;
        const bool in = iy >= 0 && iy < a.h;
        if (in && sw == 2) {
          split_stride2<V>(a.x + (c * a.h + iy) * a.w, a.w, p.pad_w, Wq, pl + (i - i0) * Wq,
                           pl + ps + (i - i0) * Wq);
          continue;
        }
        if (in) conv_phase_rows<V>(p, a.x + (c * a.h + iy) * a.w, a.w, Wq, row + sw * Wq, row);
        for (int64_t px = 0; px < sw; ++px) {
          float* d = pl + px * ps + (i - i0) * Wq;
          if (in) std::memcpy(d, row + px * Wq, sizeof(float) * size_t(Wq));
          else std::memset(d, 0, sizeof(float) * size_t(Wq));
        }
      }
      const int64_t used = (i1 - i0) * Wq;
      for (int64_t px = 0; px < sw; ++px)
        std::memset(pl + px * ps + used, 0, sizeof(float) * size_t(ps - used));
    }
  for (int64_t c = 0; c < p.in_channels; ++c)
    for (int64_t ky = 0; ky < p.kh; ++ky)
      for (int64_t kx = 0; kx < p.kw; ++kx) {
        const int64_t dy = ky * p.dil_h, dx = kx * p.dil_w;
        a.taps[(c * p.kh + ky) * p.kw + kx] =
            planes + ((c * sh + dy % sh) * sw + dx % sw) * ps + (dy / sh) * Wq + dx / sw;
      }
  // per row tile, the taps in chunks whose weights (kc x R) stay in L1 across the band's pixel
  // tiles, the partial sums between chunks in `acc` (R rows over the band)
  const int64_t shift = i0 * Wq, O = p.out_channels, K = a.K;
  const int64_t n_kc = (K + kPhaseChunkTaps - 1) / kPhaseChunkTaps, kc = (K + n_kc - 1) / n_kc;
  const int64_t aw = (a.q1 - a.q0 + NV * W - 1) / (NV * W) * (NV * W);
  float* acc = row + (2 * sw * Wq + 15) / 16 * 16;
  for (int64_t r0 = 0; r0 < O; r0 += R) {
    const float* wt = a.wpk + r0 / R * K * R;
    const int rows = int(std::min<int64_t>(R, O - r0));
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
      const PhaseChunk ch{k0, std::min(K, k0 + kc), acc, aw, a.q0, k0 == 0, k0 + kc >= K};
      for (int64_t q = a.q0; q < a.q1; q += NV * W) {
        const int64_t n = std::min<int64_t>(NV * W, a.q1 - q);
        tiles[(n + W - 1) / W - 1](a, ch, wt, rows, r0, q, n, shift);
      }
    }
  }
}

// V's whole table: the GEMM tiles (dense_table_of, Tiles as there) and, for each of
// dense_list.h's SPE_CONV_UKERNEL lines of V's ISA, its direct and phase path tiles.
template <class V, class Tiles = SimdTiles<V>>
const DenseKernels* dense_conv_table_of() {
  static const DenseKernels table = [] {
    DenseKernels k = *dense_table_of<V, Tiles>();
    static const std::string gemv_name =
        "f32_gemv_" + std::to_string(k.panel) + "__" + std::string(k.isa);
    k.gemv = &gemv_panels<V>;
    k.gemv_name = gemv_name.c_str();
    for_each_index([&](auto i) {
      constexpr DenseUkernel u = kConvUkernels[decltype(i)::value];
      if constexpr (u.isa == V::kIsa) {
        static_assert(u.pixels % V::kWidth == 0 && u.pixels / V::kWidth <= 2 * kMaxDenseVectors,
                      "dense_list.h: a direct tile's pixels must be 1..16 whole vectors of its ISA");
        const int t = k.n_conv++;
        k.conv_rows[t] = u.rows, k.conv_pixels[t] = u.pixels, k.conv_name[t] = u.name;
        k.conv_fn[t] = &conv_rows<V, u.rows, u.pixels / V::kWidth>;
        k.phase_fn[t] = &phase_rows<V, u.rows, u.pixels / V::kWidth>;
      }
    }, std::make_integer_sequence<int, kNumConvUkernels>{});
    return k;
  }();
  return &table;
}

}  // namespace dense
}  // namespace spe
#endif  // SPE_DENSE_PHASE_TEMPLATE_H_
