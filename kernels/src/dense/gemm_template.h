// The f32 dense GEMM microkernel body, written once over a vector-traits type V (isa/*.h), and
// the table of V's kernels made from dense_list.h. Included by each ISA's translation unit,
// compiled with that ISA's flags.
#ifndef SPE_DENSE_GEMM_TEMPLATE_H_
#define SPE_DENSE_GEMM_TEMPLATE_H_

#include <algorithm>

#include "../isa/scalar.h"  // the remainder kernel's epilogue, a float at a time
#include "../isa/table.h"
#include "../spmm/tile_template.h"  // weight_of: NEON multiplies by a lane of a weight vector
#include "../isa/activation.h"
#include "dense.h"

namespace spe {
namespace dense {

// y[0, n) = act(o [+ res]) for one vector of n valid lanes (masked below a whole vector).
template <class V>
inline void store_out(float* y, const float* res, typename V::reg o, int act, int n) {
  const bool whole = n >= V::kWidth;
  const auto m = V::mask(whole ? V::kWidth : n);
  if (res) o = V::add(o, whole ? V::load(res) : V::load_mask(res, m));
  if (act == 1 || act == 2) o = V::max(o, V::zero());
  if (act == 2) o = V::min(o, V::set1(6.0f));
  else if (act == kActHardswish || act == kActSilu) o = ExtraActivation<V>::apply_inline(o, act);
  else if (act > 2) o = ExtraActivation<V>::apply(o, act);  // GELU: a call (too large inline)
  if (whole) V::store(y, o);
  else V::store_mask(y, o, m);
}

// How far ahead the pointwise path's direct tiles prefetch: the input row kDirectAheadK k's
// ahead (the rows are H*W floats apart, no stream the hardware prefetcher follows; like the
// SpMM's kInputPrefetchEntries) and the weights kPrefetchValueFloats ahead (cold inside a
// model: tile_template.h).
constexpr int kDirectAheadK = 8;

// One k of a register tile: acc[r][v] += w[r] * x[v * W ..], the NV input vectors loaded once,
// each row's weight broadcast (weight_of). Shared with the direct path's tiles.
template <class V, int R, int NV>
__attribute__((always_inline)) inline void fma_step(typename V::reg (&acc)[R][NV], const float* x,
                                                    const float* w) {
  typename V::reg xv[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) xv[v] = V::load(x + v * V::kWidth);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const typename V::reg wr = weight_of<V, R>(w, r);
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(wr, xv[v], acc[r][v]);
  }
}

// R x NV vectors of accumulators held in registers for the whole k-range; partial tiles (rows
// past a.rows, pixels past a.npix) compute on the packing's zeros and store only valid lanes.
// kDirect: b is the input itself (rows b_stride apart), every vector whole, with prefetches.
template <class V, int R, int NV, bool kDirect = false>
void gemm_tile(const GemmArgs& a) {
  using reg = typename V::reg;
  constexpr int W = V::kWidth;
  const bool full = kDirect || a.npix >= NV * W;  // direct tiles: whole vectors only
  reg acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const bool valid = r < a.rows;
    if (kDirect || a.first) {  // direct: all of K in one call
      const reg b = a.bias && valid ? V::set1(a.bias[r]) : V::zero();
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = b;
    } else {
      const float* yr = a.y + r * a.y_row_stride;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        const int n = full ? W : a.npix - v * W;
        acc[r][v] = !valid || n <= 0 ? V::zero()
                    : n >= W         ? V::load(yr + v * W)
                                     : V::load_mask(yr + v * W, V::mask(n));
      }
    }
  }
  const float* b = a.b;
  const float* w = a.a;
  const int64_t bs = a.b_stride ? a.b_stride : NV * W;
  const bool pf = kDirect && a.prefetch;
  for (int64_t k = 0; k < a.kc; ++k) {
    if (kDirect && k + kDirectAheadK < a.kc) {
      const char* xq = reinterpret_cast<const char*>(b + kDirectAheadK * bs);
#pragma GCC unroll 16
      for (int c = 0; c < NV * W * 4 + 64; c += 64) __builtin_prefetch(xq + c, 0, 3);
    }
    if (pf) __builtin_prefetch(w + kPrefetchValueFloats, 0, 3);  // never faults, even past w
    fma_step<V, R, NV>(acc, b, w);
    b += bs;
    w += a.a_stride;
  }
  const int act = kDirect || a.last ? a.act : 0;
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    if (r >= a.rows) break;
    float* yr = a.y + r * a.y_row_stride;
    const float* rr = a.last && a.res ? a.res + r * a.res_row_stride : nullptr;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const int n = full ? W : a.npix - v * W;
      if (n <= 0) break;
      store_out<V>(yr + v * W, rr ? rr + v * W : nullptr, acc[r][v], act, n);
    }
  }
}

// The pointwise remainder: NPIX pixels (fewer than a vector) x NP weight panels, the panel's
// PR output channels in RV = PR / W vectors, y = act(W x + bias [+ res]) over all of K (a.kc)
// in one call. a.a: panel 0 at k = 0 (panels a.a_panel floats apart), a.b: the input at the
// first pixel (rows a.b_stride apart), a.rows: valid output rows from the first panel's first.
template <class V, int NPIX, int NP>
void gemm_cols(const GemmArgs& a) {
  using reg = typename V::reg;
  constexpr int W = V::kWidth, PR = dense_panel(V::kIsa), RV = PR / W, ROWS = NP * PR;
  static_assert(PR % W == 0, "the pointwise remainder needs panels of whole vectors");
  reg acc[NP][RV][NPIX];
#pragma GCC unroll 8
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 8
    for (int v = 0; v < RV; ++v) {
      const int r = p * PR + v * W, n = std::min(W, a.rows - r);
      const reg b = !a.bias || n <= 0 ? V::zero()
                    : n >= W          ? V::load(a.bias + r)
                                      : V::load_mask(a.bias + r, V::mask(n));
#pragma GCC unroll 16
      for (int j = 0; j < NPIX; ++j) acc[p][v][j] = b;
    }
  const float* x = a.b;
  const float* w = a.a;
  for (int64_t k = 0; k < a.kc; ++k) {
    reg xb[NPIX];
#pragma GCC unroll 16
    for (int j = 0; j < NPIX; ++j) xb[j] = V::set1(x[j]);
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p)
#pragma GCC unroll 8
      for (int v = 0; v < RV; ++v) {
        const reg wv = V::load(w + p * a.a_panel + v * W);
#pragma GCC unroll 16
        for (int j = 0; j < NPIX; ++j) acc[p][v][j] = V::fma(wv, xb[j], acc[p][v][j]);
      }
    x += a.b_stride;
    w += PR;
  }
  // the accumulators hold columns of y: through a small buffer, a row at a time
  alignas(64) float t[NPIX][ROWS];
#pragma GCC unroll 8
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 8
    for (int v = 0; v < RV; ++v)
#pragma GCC unroll 16
      for (int j = 0; j < NPIX; ++j) V::store(&t[j][p * PR + v * W], acc[p][v][j]);
  const int rows = std::min(a.rows, ROWS);
  for (int r = 0; r < rows; ++r) {
    float* yr = a.y + r * a.y_row_stride;
    const float* rr = a.res ? a.res + r * a.res_row_stride : nullptr;
    for (int j = 0; j < NPIX; ++j) {
      float o = t[j][r] + (rr ? rr[j] : 0.0f);
      if (a.act == 1) o = std::max(o, 0.0f);
      else if (a.act == 2) o = std::min(std::max(o, 0.0f), 6.0f);
      else if (a.act > 2) o = ExtraActivation<Scalar>::apply(o, a.act);
      yr[j] = o;
    }
  }
}

// The pointwise path at one pixel (a batch-1 linear layer, an SE block's 1x1 convs):
// y[0, a.rows) = act(W x + bias [+ res]), y and res contiguous (one pixel per row). The panels
// (a.a_panel floats apart, from a.a) are each streamed once front to back, NP at a time with
// U k's in flight: NP * RV * U independent accumulators, summed at the end. (The remainder
// kernel gave one panel of one pixel a single FMA chain, one FMA per latency: 92 us on
// 1280 -> 1000 from L3, 55 GB/s, Zen 4.)
template <class V, int NP, int U>
inline void gemv_block(const GemmArgs& a, int64_t p0) {
  using reg = typename V::reg;
  constexpr int W = V::kWidth, PR = dense_panel(V::kIsa), RV = PR / W;
  reg acc[NP][RV][U];
#pragma GCC unroll 8
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 8
    for (int v = 0; v < RV; ++v)
#pragma GCC unroll 8
      for (int u = 0; u < U; ++u) acc[p][v][u] = V::zero();
  const float* w = a.a + p0 * a.a_panel;
  const float* x = a.b;
  const int64_t K = a.kc, bs = a.b_stride;
  int64_t k = 0;
  for (; k + U <= K; k += U) {
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) {
      const reg xb = V::set1(x[(k + u) * bs]);
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p)
#pragma GCC unroll 8
        for (int v = 0; v < RV; ++v)
          acc[p][v][u] = V::fma(V::load(w + p * a.a_panel + (k + u) * PR + v * W), xb,
                                acc[p][v][u]);
    }
  }
  for (; k < K; ++k) {
    const reg xb = V::set1(x[k * bs]);
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p)
#pragma GCC unroll 8
      for (int v = 0; v < RV; ++v)
        acc[p][v][0] = V::fma(V::load(w + p * a.a_panel + k * PR + v * W), xb, acc[p][v][0]);
  }
#pragma GCC unroll 8
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 8
    for (int v = 0; v < RV; ++v) {
      const int64_t r = (p0 + p) * PR + v * W;
      const int n = int(std::min<int64_t>(W, a.rows - r));
      if (n <= 0) return;
      reg o = acc[p][v][0];
#pragma GCC unroll 8
      for (int u = 1; u < U; ++u) o = V::add(o, acc[p][v][u]);
      if (a.bias) o = V::add(o, n >= W ? V::load(a.bias + r) : V::load_mask(a.bias + r, V::mask(n)));
      store_out<V>(a.y + r, a.res ? a.res + r : nullptr, o, a.act, n);
    }
}

// Four panels at a time (four weight streams), 16 accumulators (8 with AVX2's 16 registers):
// 72 us on 1280 -> 1000 from L3 against 80 for two panels x 4 k's and 85 for one x 8 (Zen 4;
// software prefetches only slowed the hardware's streams down).
template <class V>
void gemv_panels(const GemmArgs& a) {
  constexpr int PR = dense_panel(V::kIsa), RV = PR / V::kWidth, NP = 4;
  constexpr int ACC = V::kRegs >= 32 ? 16 : 8, U = ACC / (NP * RV) > 0 ? ACC / (NP * RV) : 1;
  const int64_t panels = (a.rows + PR - 1) / PR;
  int64_t p = 0;
  for (; p + NP <= panels; p += NP) gemv_block<V, NP, U>(a, p);
  // the same U k-partial sums in the last panels: a row's sum does not depend on where a
  // thread's run of rows starts (the result does not depend on the thread count)
  for (; p < panels; ++p) gemv_block<V, 1, U>(a, p);
}

// Panels one remainder call of n pixels covers: its accumulators within 20 of 32 registers
// (10 of 16 on AVX2), the rest left to the broadcast inputs and the weight vectors.
template <class V>
constexpr int cols_panels(int n) {
  const int rv = dense_panel(V::kIsa) / V::kWidth;
  const int budget = V::kRegs >= 32 ? 20 : 10;
  return std::clamp(budget / (rv * n), 1, kMaxColsPanels);
}

// The microkernels of vector traits V: gemm_tile over NV = pixels / width vectors, its direct
// variants, and the pointwise remainder kernels.
template <class V>
struct SimdTiles {
  template <int R, int Pixels>
  static GemmFn fn() {
    constexpr int nv = Pixels / V::kWidth;
    static_assert(Pixels % V::kWidth == 0 && nv >= 1 && nv <= kMaxDenseVectors,
                  "dense_list.h: a tile's pixels must be 1..8 whole vectors of its ISA");
    return &gemm_tile<V, R, nv>;
  }
  template <int R, int Pixels>
  static void direct(GemmFn (*out)[kMaxDenseVectors]) {
    for_each_index([&](auto r) {
      for_each_index([&](auto v) {
        out[r][v] = &gemm_tile<V, decltype(r)::value + 1, decltype(v)::value + 1, true>;
      }, std::make_integer_sequence<int, Pixels / V::kWidth>{});
    }, std::make_integer_sequence<int, R>{});
  }
  static void cols(DenseKernels& k) {
    for_each_index([&](auto i) {
      constexpr int n = decltype(i)::value + 1, np = cols_panels<V>(n);
      k.cols_panels[n - 1] = np;
      k.cols[0][n - 1] = &gemm_cols<V, n, 1>;
      k.cols[np - 1][n - 1] = &gemm_cols<V, n, np>;
    }, std::make_integer_sequence<int, V::kWidth - 1>{});
  }
};

// StridedRowFn (dense.h): d[i] = s[i * sw], i < n. Stride 2 (ResNet's downsampling convs,
// gathered by pack_input) deinterleaves whole vectors: a strided scalar loop was ~7% of a
// 256 -> 512 1x1 stride-2 conv at 56x56. Reads no float past s[(n - 1) * sw].
template <class V>
void strided_row(const float* s, int64_t sw, float* d, int64_t n) {
  if (sw == 1) return V::copy(s, d, int(n));
  int64_t i = 0;
  if (sw == 2 && n > 1) {
    alignas(64) float odd[256];  // the odd floats, dropped
    for (; i < n - 1; i += 256) {  // n - 1 pairs: the last pair's odd float may be past the row
      V::deinterleave(s + 2 * i, d + i, odd, int(std::min<int64_t>(256, n - 1 - i)));
    }
    i = n - 1;
  }
  for (; i < n; ++i) d[i] = s[i * sw];
}

// The table of traits V (its ISA's lines of the list), each tile's function from Tiles.
template <class V, class Tiles = SimdTiles<V>>
const DenseKernels* dense_table_of() {
  return isa_table<DenseKernels, V, kNumDenseUkernels>([](DenseKernels& k, auto i) {
    constexpr DenseUkernel u = kDenseUkernels[decltype(i)::value];
    if constexpr (u.isa == V::kIsa) {
      const int t = k.n_tiles++;
      k.rows[t] = u.rows, k.pixels[t] = u.pixels, k.name[t] = u.name;
      k.fn[t] = Tiles::template fn<u.rows, u.pixels>();
      k.panel = std::max(k.panel, u.rows);
      k.strided_row = &strided_row<V>;
      if (t == 0) {  // the pointwise path's tile
        Tiles::template direct<u.rows, u.pixels>(k.direct);
        Tiles::cols(k);
      }
    }
  });
}

}  // namespace dense
}  // namespace spe
#endif  // SPE_DENSE_GEMM_TEMPLATE_H_
