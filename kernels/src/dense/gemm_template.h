// The f32 dense GEMM microkernel body, written once over a vector-traits type V (isa/*.h), and
// the table of V's kernels made from dense_list.h. Included by each ISA's translation unit,
// compiled with that ISA's flags.
#ifndef SPE_DENSE_GEMM_TEMPLATE_H_
#define SPE_DENSE_GEMM_TEMPLATE_H_

#include <algorithm>

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
  else if (act > 2) o = ExtraActivation<V>::apply(o, act);
  if (whole) V::store(y, o);
  else V::store_mask(y, o, m);
}

// R x NV vectors of accumulators held in registers for the whole k-range; partial tiles (rows
// past a.rows, pixels past a.npix) compute on the packing's zeros and store only valid lanes.
template <class V, int R, int NV>
void gemm_tile(const GemmArgs& a) {
  using reg = typename V::reg;
  constexpr int W = V::kWidth;
  const bool full = a.npix >= NV * W;
  reg acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const bool valid = r < a.rows;
    if (a.first) {
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
  for (int64_t k = 0; k < a.kc; ++k) {
    reg xv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) xv[v] = V::load(b + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const reg wr = weight_of<V, R>(w, r);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(wr, xv[v], acc[r][v]);
    }
    b += NV * W;
    w += a.a_stride;
  }
  const int act = a.last ? a.act : 0;
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

// The microkernels of vector traits V: gemm_tile over NV = pixels / width vectors.
template <class V>
struct SimdTiles {
  template <int R, int Pixels>
  static GemmFn fn() {
    constexpr int nv = Pixels / V::kWidth;
    static_assert(Pixels % V::kWidth == 0 && nv >= 1 && nv <= kMaxDenseVectors,
                  "dense_list.h: a tile's pixels must be 1..8 whole vectors of its ISA");
    return &gemm_tile<V, R, nv>;
  }
};

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
    }
  });
}

}  // namespace dense
}  // namespace spe
#endif  // SPE_DENSE_GEMM_TEMPLATE_H_
