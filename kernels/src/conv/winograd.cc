// Winograd F(m x m, 3x3) for dense 3x3 stride-1 convs (Lavin & Gray 2016): each m x m output
// tile is A^T [ (G g G^T) . (B^T d B) ] A over an n x n input patch d (n = m + 2), n^2
// multiplications per tile and channel pair instead of 9 m^2. Two variants, picked per input
// size by the GEMM work each leaves after padding its tiles to the microkernel's pixel width:
// F(4x4) (points 0, +-1, +-2, infinity; 36 GEMMs, 4x fewer multiplications) where the 4x4
// tiles fill the vectors (14x14 and larger outputs), F(2x2) (points 0, +-1, infinity; 16 GEMMs,
// 2.25x) where they would not (7x7: 2x2 tiles of 4x4 in a 16-lane vector; 4x4 tiles of 2x2 fill
// it), with 16/9 of the 3x3 weight's bytes to stream instead of 36/9.
//
// The 3x3 weight is kept at create; a variant's transformed filters U = G g G^T are packed on
// the first run that needs them (in double; installed lock-free: concurrent first runs each
// pack, one copy wins), in panels of the ISA's tallest tile, a panel's n^2 points one after
// the other (panel, point, channel, row): a row tile's weights for all points are one stream.
// A run splits the output tiles (raster order, across tile rows) into blocks of one GEMM panel
// width NR, and the output channels into as few blocks as the threads need; per work item, a
// chunk of input channels at a time (all of them for ResNet's layers), the item's patches are
// transformed (B^T d B, vectorised over the NR tiles: the patch columns of consecutive tiles
// are the stride-m phases of an input row, gathered and transformed in one pass per row, then
// the column pass writes the packed GEMM panels), and then per row tile of output channels the
// n^2 GEMMs run into M (n^2 x R x NR, in L1/L2) and the output transform (A^T M A, the row pass
// writing interleaved output rows) adds bias and residual and applies the activation at once.
// Numerics: kernels/README.md ("Winograd").
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "../common/threadpool.h"
#include "dense_layer.h"
#include "geometry.h"

namespace spe {
namespace {

constexpr int kLanes = 64;  // stride of the lane arrays: >= any listed tile's pixels (dense_list.h)
constexpr int kBlock = 16;  // lanes a row pass computes at a time (a zmm; kLanes >= 48 + kBlock)
// V (the transformed input of a channel chunk: n^2 x kc x NR floats) within ~640 KiB of L2
constexpr int64_t kVFloats = int64_t(160) << 10;

// The transforms' loops run over lanes (tiles): on x86 the per-item functions below are cloned
// for AVX-512 and AVX2 and picked at load time (this file is compiled for the baseline ISA),
// the lane loops inlined into each clone; AArch64's baseline already has NEON.
#if defined(__x86_64__) && !defined(SPE_NO_TARGET_CLONES)
#define SPE_LANES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SPE_LANES
#endif
#define SPE_INLINE inline __attribute__((always_inline))

// The 1-D transforms of F(m x m, 3x3) on floats or lane vectors: in(d, o) is o = B^T d (n values),
// out(s, o) is o = A^T s (n values to m); G is the filter transform (n x 3).
template <int M> struct Tr;

template <>
struct Tr<4> {
  static constexpr int N = 6;
  static constexpr double G[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
  template <class T>
  SPE_INLINE static void in(const T* d, T* o) {
    const T a = d[4] - 4.0f * d[2], b = d[3] - 4.0f * d[1];
    const T c = d[4] - d[2], e = 2.0f * (d[3] - d[1]);
    o[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
    o[1] = a + b;
    o[2] = a - b;
    o[3] = c + e;
    o[4] = c - e;
    o[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
  }
  template <class T>
  SPE_INLINE static void out(const T* s, T* o) {
    const T a = s[1] + s[2], b = s[1] - s[2], c = s[3] + s[4], d = s[3] - s[4];
    o[0] = s[0] + a + c;
    o[1] = b + 2.0f * d;
    o[2] = a + 4.0f * c;
    o[3] = b + 8.0f * d + s[5];
  }
};

template <>
struct Tr<2> {
  static constexpr int N = 4;
  static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  template <class T>
  SPE_INLINE static void in(const T* d, T* o) {
    o[0] = d[0] - d[2];
    o[1] = d[1] + d[2];
    o[2] = d[2] - d[1];
    o[3] = d[1] - d[3];
  }
  template <class T>
  SPE_INLINE static void out(const T* s, T* o) {
    o[0] = s[0] + s[1] + s[2];
    o[1] = s[1] - s[2] - s[3];
  }
};

// One run's tiling: tiles of m x m outputs, th x tw of them, T in all.
struct Tiling {
  int m;
  int64_t h, w, ho, wo, th, tw, T, pad_h, pad_w;
};

// The variant and tile a run takes, and the work it leaves.
struct Choice {
  int m, tile;
  double cost;
};

Choice choose(const spe_dense_conv* c, int m, int64_t ho, int64_t wo) {
  const int64_t T = ((ho + m - 1) / m) * ((wo + m - 1) / m);
  const int t = pick_tile(c, T);
  const int64_t R = c->k->rows[t], NR = c->k->pixels[t], O = c->p.out_channels;
  const int n = m + 2;
  return {m, t, double(n * n) * double((O + R - 1) / R * R) * double((T + NR - 1) / NR * NR)};
}

// F(4x4) unless F(2x2) leaves no more than 1.1x its GEMM work: F(2x2) streams 16/36 of the
// weight bytes (cold inside a model) and rounds less.
Choice plan(const spe_dense_conv* c, int64_t ho, int64_t wo) {
  if (c->wino_m) return choose(c, c->wino_m, ho, wo);
  const Choice f4 = choose(c, 4, ho, wo), f2 = choose(c, 2, ho, wo);
  return f2.cost <= 1.1 * f4.cost ? f2 : f4;
}

// ---------------------------------------------------------------------------- lane loops
// A block of kBlock lanes as one GCC vector (one zmm on AVX-512, two ymm on AVX2, four q
// registers on NEON): the row passes gather the stride-m phases of an input row with shuffles.
typedef float Vec __attribute__((vector_size(4 * kBlock)));
typedef int32_t Idx __attribute__((vector_size(4 * kBlock)));
static_assert(kBlock == 16, "the row passes' shuffles are written for 16 lanes");

SPE_INLINE void load(Vec& v, const float* p) { std::memcpy(&v, p, sizeof v); }
SPE_INLINE void store(float* p, const Vec& v) { std::memcpy(p, &v, sizeof v); }

// d[j][l] = r[m l + j] (j < m + 2, l < 16): the patch columns of 16 consecutive tiles; reads
// r[0, 16 m + 16).
template <int M>
SPE_INLINE void phases(const float* r, Vec* d);

template <>
SPE_INLINE void phases<4>(const float* r, Vec* d) {
  Vec a0, a1, a2, a3, a4;
  load(a0, r), load(a1, r + 16), load(a2, r + 32), load(a3, r + 48), load(a4, r + 64);
  const Idx p01 = {0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29};
  const Idx p23 = {2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31};
  const Idx lo = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
  const Idx hi = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
  const Vec e0 = __builtin_shuffle(a0, a1, p01), e1 = __builtin_shuffle(a0, a1, p23);
  const Vec f0 = __builtin_shuffle(a2, a3, p01), f1 = __builtin_shuffle(a2, a3, p23);
  d[0] = __builtin_shuffle(e0, f0, lo);
  d[1] = __builtin_shuffle(e0, f0, hi);
  d[2] = __builtin_shuffle(e1, f1, lo);
  d[3] = __builtin_shuffle(e1, f1, hi);
  const Idx s0 = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  const Idx s1 = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17};
  d[4] = __builtin_shuffle(d[0], a4, s0);  // the next tile's columns 0 and 1
  d[5] = __builtin_shuffle(d[1], a4, s1);
}

template <>
SPE_INLINE void phases<2>(const float* r, Vec* d) {
  Vec a0, a1, a2;
  load(a0, r), load(a1, r + 16), load(a2, r + 32);
  const Idx even = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
  const Idx odd = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
  d[0] = __builtin_shuffle(a0, a1, even);
  d[1] = __builtin_shuffle(a0, a1, odd);
  const Idx s0 = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  const Idx s1 = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17};
  d[2] = __builtin_shuffle(d[0], a2, s0);
  d[3] = __builtin_shuffle(d[1], a2, s1);
}

// z[m l + q] = o[q][l] (q < m, l < 16): the inverse, the tiles' pixels interleaved into a row.
template <int M>
SPE_INLINE void interleave(const Vec* o, float* z);

template <>
SPE_INLINE void interleave<4>(const Vec* o, float* z) {
  const Idx lo = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
  const Idx hi = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const Vec e0 = __builtin_shuffle(o[0], o[1], lo), e1 = __builtin_shuffle(o[0], o[1], hi);
  const Vec f0 = __builtin_shuffle(o[2], o[3], lo), f1 = __builtin_shuffle(o[2], o[3], hi);
  const Idx q0 = {0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23};
  const Idx q1 = {8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31};
  store(z, __builtin_shuffle(e0, f0, q0));
  store(z + 16, __builtin_shuffle(e0, f0, q1));
  store(z + 32, __builtin_shuffle(e1, f1, q0));
  store(z + 48, __builtin_shuffle(e1, f1, q1));
}

template <>
SPE_INLINE void interleave<2>(const Vec* o, float* z) {
  const Idx lo = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
  const Idx hi = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  store(z, __builtin_shuffle(o[0], o[1], lo));
  store(z + 16, __builtin_shuffle(o[0], o[1], hi));
}

// t[k * kLanes + l] = (B^T d_l)[k] with d_l[j] = r[m l + j]: the patches' row pass, straight
// from an input row, kBlock lanes at a time: the lanes past len are computed on whatever r
// holds there (r must have m * roundup(len, kBlock) + kBlock readable floats) and are
// overwritten by the next run or zeroed.
template <int M>
SPE_INLINE void in_row(const float* r, float* t, int len) {
  constexpr int N = M + 2;
  for (int l0 = 0; l0 < len; l0 += kBlock) {
    Vec d[N], o[N];
    phases<M>(r + M * l0, d);
    Tr<M>::in(d, o);
    for (int k = 0; k < N; ++k) store(t + k * kLanes + l0, o[k]);
  }
}

// The column passes: dst[(i N + j) ds + l] = (X s_j)[i] over s_j[k] = src[(k N + j) ss + l],
// X = B^T for the input (kIn: the N rows of t into the packed GEMM panels), A^T for the output
// (M rows of u from the GEMMs' M).
template <int M, bool kIn>
SPE_INLINE void cols(const float* __restrict src, int64_t ss, float* __restrict dst, int64_t ds,
                     int n) {
  constexpr int N = M + 2, NO = kIn ? N : M;
  for (int j = 0; j < N; ++j) {
#pragma GCC ivdep
    for (int l = 0; l < n; ++l) {
      float d[N], o[N];
      for (int k = 0; k < N; ++k) d[k] = src[(k * N + j) * ss + l];
      if constexpr (kIn) Tr<M>::in(d, o);
      else Tr<M>::out(d, o);
      for (int i = 0; i < NO; ++i) dst[(i * N + j) * ds + l] = o[i];
    }
  }
}

// The output's row pass for one output row: z[m l + q] = (A^T u_l)[q], u_l[j] = u[j kLanes + l]:
// the tiles' pixels interleaved into the row they cover (kBlock lanes at a time, z past m len
// holding whatever the lanes past len gave).
template <int M>
SPE_INLINE void out_row(const float* u, float* z, int len) {
  constexpr int N = M + 2;
  for (int l0 = 0; l0 < len; l0 += kBlock) {
    Vec v[N], o[M];
    for (int j = 0; j < N; ++j) load(v[j], u + j * kLanes + l0);
    Tr<M>::out(v, o);
    interleave<M>(o, z + M * l0);
  }
}

// y[0, n) = act(z + bias [+ res]), in the order the other kernels apply it.
SPE_INLINE void epilogue(float* __restrict z, int n, float bias, const float* __restrict res,
                         float* __restrict y, int act) {
  if (res)
    for (int k = 0; k < n; ++k) z[k] = (z[k] + bias) + res[k];
  else
    for (int k = 0; k < n; ++k) z[k] += bias;
  switch (act) {
    case SPE_ACT_RELU:
      for (int k = 0; k < n; ++k) y[k] = std::max(z[k], 0.0f);
      break;
    case SPE_ACT_RELU6:
      for (int k = 0; k < n; ++k) y[k] = std::min(std::max(z[k], 0.0f), 6.0f);
      break;
    case SPE_ACT_HARDSWISH:
      for (int k = 0; k < n; ++k) y[k] = z[k] * std::min(std::max(z[k] + 3.0f, 0.0f), 6.0f) / 6.0f;
      break;
    case SPE_ACT_SILU:
      for (int k = 0; k < n; ++k) y[k] = z[k] / (1.0f + std::exp(-z[k]));
      break;
    case SPE_ACT_GELU:
      for (int k = 0; k < n; ++k) y[k] = 0.5f * z[k] * (1.0f + std::erf(z[k] * 0.70710678f));
      break;
    case SPE_ACT_GELU_TANH:
      for (int k = 0; k < n; ++k)
        y[k] = 0.5f * z[k] *
               (1.0f + std::tanh(0.7978845608f * (z[k] + 0.044715f * z[k] * z[k] * z[k])));
      break;
    default:
      std::memcpy(y, z, sizeof(float) * n);
  }
}

// ---------------------------------------------------------------------------- transforms
// One input row of one run of tiles (a tile row's share of a block): where it starts in a
// channel plane (off), which of its cols floats lie in the image ([ja, jb); none: a padding
// row), and whether it is read through a zero-padded copy (it reaches the padding, or its last
// lane block would read past the image).
struct RowRef {
  int64_t off;
  int lane, len, ja, jb, cols;
  bool copy;
};

// The rows every channel of a block reads, in lane order (a run's row pass overwrites what the
// one before computed past its own lanes); returns their count (<= N * nt).
template <int M>
int block_rows(const Tiling& g, const float* xc, const float* x_end, int64_t kc, int64_t t0,
               int nt, RowRef* refs) {
  constexpr int N = M + 2;
  int n = 0;
  const float* last_plane = xc + (kc - 1) * g.h * g.w;
  for (int s = 0; s < nt;) {
    const int64_t ty = (t0 + s) / g.tw, tx0 = (t0 + s) % g.tw;
    const int len = int(std::min<int64_t>(nt - s, g.tw - tx0));
    const int64_t ix0 = M * tx0 - g.pad_w, cols = M * int64_t(len) + 2;
    const int ja = int(std::clamp<int64_t>(-ix0, 0, cols));
    const int jb = int(std::clamp<int64_t>(g.w - ix0, ja, cols));
    const int64_t reads = M * int64_t((len + kBlock - 1) / kBlock * kBlock) + kBlock;
    for (int i = 0; i < N; ++i) {
      const int64_t iy = M * ty - g.pad_h + i;
      RowRef& r = refs[n++];
      r = {iy * g.w + ix0, s, len, ja, jb, int(cols), ja > 0 || jb < cols};
      if (iy < 0 || iy >= g.h) r.ja = r.jb = 0, r.copy = true;
      else if (last_plane + r.off + reads > x_end) r.copy = true;
    }
    s += len;
  }
  return n;
}

// The transformed patches of channels [0, kc) (planes h*w floats apart from xc, the image
// ending at x_end) for tiles [t0, t0 + nt) into v[(xi kc + ch) NR + lane]; lanes past nt are
// zero.
template <int M>
SPE_INLINE void input_chunk(const Tiling& g, const float* xc, const float* x_end, int64_t kc,
                            int64_t t0, int nt, int NR, float* v) {
  constexpr int N = M + 2;
  // Zeroed once: the row passes run whole lane blocks, so lanes past a run's tiles (and a
  // copied row's floats past its columns) are read before anything is written there, and
  // stack garbage read as floats is often denormal: a microcode assist per operation. F(4x4)
  // on a 14x14 output (4 tiles a row in 16 lanes) ran 3.7x slower than with FTZ / DAZ set,
  // and no result depends on those lanes.
  alignas(64) float t[N * N * kLanes] = {};
  alignas(64) float row[M * (kLanes + kBlock) + kBlock] = {};
  RowRef refs[N * kLanes];
  const int n_refs = block_rows<M>(g, xc, x_end, kc, t0, nt, refs);
  const int64_t plane = g.h * g.w, v_stride = kc * NR;
  for (int64_t ch = 0; ch < kc; ++ch, xc += plane) {
    for (int q = 0; q < n_refs; ++q) {
      const RowRef& rr = refs[q];
      float* ti = t + (q % N) * N * kLanes + rr.lane;
      if (rr.ja == rr.jb) {  // a padding row
        for (int j = 0; j < N; ++j) std::memset(ti + j * kLanes, 0, sizeof(float) * rr.len);
        continue;
      }
      const float* r = xc + rr.off;
      if (ch + 1 < kc)  // the next channel's row: the planes are too far apart for the hardware
        for (int j = rr.ja; j < rr.jb + 16; j += 16) __builtin_prefetch(r + plane + j);
      if (rr.copy) {
        for (int j = 0; j < rr.cols; ++j) row[j] = j >= rr.ja && j < rr.jb ? r[j] : 0.0f;
        r = row;
      }
      in_row<M>(r, ti, rr.len);
    }
    if (nt < NR)  // the last block's lanes past the tiles
      for (int k = 0; k < N * N; ++k) std::memset(t + k * kLanes + nt, 0, sizeof(float) * (NR - nt));
    cols<M, true>(t, kLanes, v + ch * NR, v_stride, NR);
  }
}

// What the output transform writes: output channel o0's plane and what goes into it.
struct Out {
  const float* bias;  // at o0, or null
  const float* res;   // residual plane of o0, or null
  float* y;           // output plane of o0
  int64_t plane;
  int act;
};

// y of output channels [0, rows) (planes e.plane apart) for tiles [t0, t0 + nt) from
// m[(xi rows_m + r) NR + lane].
template <int M>
SPE_INLINE void output_rows(const Tiling& g, const float* m, int64_t rows_m, int rows, int64_t t0,
                            int nt, int NR, const Out& e) {
  constexpr int N = M + 2;
  alignas(64) float u[M * N * kLanes] = {};  // zeroed: as input_chunk's buffers
  alignas(64) float z[M * (kLanes + kBlock)] = {};
  for (int r = 0; r < rows; ++r) {
    cols<M, false>(m + r * NR, rows_m * NR, u, kLanes, nt);
    const float bias = e.bias ? e.bias[r] : 0.0f;
    const float* res = e.res ? e.res + r * e.plane : nullptr;
    float* y = e.y + r * e.plane;
    for (int s = 0; s < nt;) {
      const int64_t ty = (t0 + s) / g.tw, tx0 = (t0 + s) % g.tw;
      const int len = int(std::min<int64_t>(nt - s, g.tw - tx0));
      const int n = int(std::min<int64_t>(M * int64_t(len), g.wo - M * tx0));
      for (int i = 0; i < M && M * ty + i < g.ho; ++i) {
        out_row<M>(u + i * N * kLanes + s, z, len);
        const int64_t at = (M * ty + i) * g.wo + M * tx0;
        epilogue(z, n, bias, res ? res + at : nullptr, y + at, e.act);
      }
      s += len;
    }
  }
}

SPE_LANES void input_chunk4(const Tiling& g, const float* xc, const float* x_end, int64_t kc,
                            int64_t t0, int nt, int NR, float* v) {
  input_chunk<4>(g, xc, x_end, kc, t0, nt, NR, v);
}
SPE_LANES void input_chunk2(const Tiling& g, const float* xc, const float* x_end, int64_t kc,
                            int64_t t0, int nt, int NR, float* v) {
  input_chunk<2>(g, xc, x_end, kc, t0, nt, NR, v);
}
SPE_LANES void output_rows4(const Tiling& g, const float* m, int64_t rows_m, int rows, int64_t t0,
                            int nt, int NR, const Out& e) {
  output_rows<4>(g, m, rows_m, rows, t0, nt, NR, e);
}
SPE_LANES void output_rows2(const Tiling& g, const float* m, int64_t rows_m, int rows, int64_t t0,
                            int nt, int NR, const Out& e) {
  output_rows<2>(g, m, rows_m, rows, t0, nt, NR, e);
}

// ---------------------------------------------------------------------------- filters
struct FreeFloats {
  void operator()(float* p) const { std::free(p); }
};

// U = G g G^T of every (output, input) channel pair, packed: (panel, point, channel, row).
template <int M>
float* pack_filters(const spe_dense_conv* c) {
  constexpr int N = M + 2;
  const auto& G = Tr<M>::G;
  const int64_t O = c->p.out_channels, C = c->p.in_channels, PR = c->k->panel;
  const int64_t floats = (O + PR - 1) / PR * N * N * C * PR;
  const size_t bytes = (size_t(floats) * sizeof(float) + 63) / 64 * 64;
  std::unique_ptr<float, FreeFloats> u(static_cast<float*>(std::aligned_alloc(64, bytes)));
  if (!u) throw std::bad_alloc();
  std::memset(u.get(), 0, bytes);  // the rows past O of the last panel
  for (int64_t o = 0; o < O; ++o)
    for (int64_t ch = 0; ch < C; ++ch) {
      const float* g = c->w.data() + (o * C + ch) * 9;
      double gg[N][3];  // G g
      for (int i = 0; i < N; ++i)
        for (int j = 0; j < 3; ++j) gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
      float* dst = u.get() + ((o / PR * N * N) * C + ch) * PR + o % PR;
      for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j)
          dst[(i * N + j) * C * PR] = float(gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2]);
    }
  return u.release();
}

// The packed filters of variant m, packed by the first run that needs them.
const float* filters(const spe_dense_conv* c, int m) {
  std::atomic<float*>& slot = c->wino_u[m == 4 ? 0 : 1];
  if (float* u = slot.load(std::memory_order_acquire)) return u;
  float* mine = m == 4 ? pack_filters<4>(c) : pack_filters<2>(c);
  float* seen = nullptr;
  if (slot.compare_exchange_strong(seen, mine, std::memory_order_acq_rel)) return mine;
  std::free(mine);  // another run installed its copy first
  return seen;
}

}  // namespace

void winograd_pack(spe_dense_conv* c, const float* weight) {
  c->w.assign(weight, weight + int64_t(c->p.out_channels) * c->p.in_channels * 9);
}

int winograd_tile(const spe_dense_conv* c, int64_t ho, int64_t wo) { return plan(c, ho, wo).tile; }

spe_status winograd_run(const spe_dense_conv* c, const float* x, int n, int h, int w,
                        const float* res, float* y) {
  const auto& p = c->p;
  const int64_t ho = out_dim(h, p.pad_h, 1, 3, 1), wo = out_dim(w, p.pad_w, 1, 3, 1);
  const Choice ch = plan(c, ho, wo);
  const int M = ch.m, N = M + 2, P = N * N;
  Tiling g{M, h, w, ho, wo, (ho + M - 1) / M, (wo + M - 1) / M, 0, p.pad_h, p.pad_w};
  g.T = g.th * g.tw;
  const DenseKernels* k = c->k;
  const int R = k->rows[ch.tile], NR = k->pixels[ch.tile], PR = k->panel;
  const GemmFn fn = k->fn[ch.tile];
  const int64_t O = p.out_channels, C = p.in_channels;
  const float* U = filters(c, M);
  // channel chunks of equal size within V's budget (one for ResNet's layers)
  const int64_t kc_max = std::max<int64_t>(8, kVFloats / (P * NR));
  const int64_t n_kb = (C + kc_max - 1) / kc_max, kc = (C + n_kb - 1) / n_kb;
  // output-channel blocks (whole panels): only as many as the threads need
  const int64_t panels = (O + PR - 1) / PR, n_tb = (g.T + NR - 1) / NR;
  auto& pool = ThreadPool::global();
  int64_t n_mb = 1;
  while (n_mb < panels && n * n_tb * n_mb < pool.num_threads()) ++n_mb;
  const int64_t mcp = (panels + n_mb - 1) / n_mb * PR;
  n_mb = (O + mcp - 1) / mcp;
  // M: one row tile's n^2 GEMM outputs, or with several chunks the whole block's partial sums
  const int64_t rows_m = n_kb == 1 ? R : (mcp + R - 1) / R * R;
  const int64_t in_img = C * h * w, plane = ho * wo, out_img = O * plane;
  pool.parallel_for(int64_t(n) * n_tb * n_mb, 1, [&](int64_t ib, int64_t ie) {
    float* v = thread_buffer(0, P * kc * NR);
    float* m = thread_buffer(1, P * rows_m * NR);
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / (n_tb * n_mb), tb = it / n_mb % n_tb, mb = it % n_mb;
      const int64_t t0 = tb * NR, o0 = mb * mcp, o1 = std::min(O, o0 + mcp);
      const int nt = int(std::min<int64_t>(NR, g.T - t0));
      GemmArgs a{};
      a.a_stride = PR;
      a.y_row_stride = NR;
      a.npix = NR;
      for (int64_t c0 = 0; c0 < C; c0 += kc) {
        const int64_t kk = std::min(kc, C - c0);
        const float* xc = x + b * in_img + c0 * h * w;
        (M == 4 ? input_chunk4 : input_chunk2)(g, xc, x + (b + 1) * in_img, kk, t0, nt, NR, v);
        a.kc = kk;
        a.first = c0 == 0;
        const bool last = c0 + kk == C;
        for (int64_t r0 = o0; r0 < o1; r0 += R) {
          const int rows = int(std::min<int64_t>(R, o1 - r0));
          float* mr = m + (n_kb == 1 ? 0 : (r0 - o0)) * NR;
          const float* ur = U + ((r0 / PR * P) * C + c0) * PR + r0 % PR;
          a.rows = rows;
          for (int xi = 0; xi < P; ++xi) {
            a.a = ur + xi * C * PR;
            a.b = v + xi * kk * NR;
            a.y = mr + xi * rows_m * NR;
            fn(a);
          }
          if (!last) continue;
          const Out e{c->bias.empty() ? nullptr : c->bias.data() + r0,
                      res ? res + b * out_img + r0 * plane : nullptr, y + b * out_img + r0 * plane,
                      plane, c->act};
          (M == 4 ? output_rows4 : output_rows2)(g, mr, rows_m, rows, t0, nt, NR, e);
        }
      }
    }
  });
  return SPE_OK;
}

}  // namespace spe

spe_dense_conv::~spe_dense_conv() {
  for (auto& u : wino_u) std::free(u.load());
}
