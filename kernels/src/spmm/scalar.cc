// Scalar reference of the f32 SpMM microkernel: plain loops, the yardstick every ISA variant
// is tested against; spmm_list.h's scalar lines ("vectors" are single floats here).
#include <algorithm>
#include <cmath>

#include "../isa/scalar.h"  // the traits give the table its ISA and width (1)
#include "../isa/table.h"
#include "spmm.h"

namespace spe {
namespace {

float scalar_act(float o, int act) {
  if (act == 1) return std::max(o, 0.0f);
  if (act == 2) return std::min(std::max(o, 0.0f), 6.0f);
  if (act == 3) return o * std::min(std::max(o + 3.0f, 0.0f), 6.0f) / 6.0f;
  if (act == 4) return o / (1.0f + std::exp(-o));  // libm's exp: the yardstick
  if (act == 5) return 0.5f * o * std::erfc(-o * 0.70710678f);
  if (act == 6) return o / (1.0f + std::exp(-1.5957691f * (o + 0.044715f * o * o * o)));
  return o;
}

void scalar_act_row(float* d, const float* s, const float* res, int n, int act) {
  for (int k = 0; k < n; ++k) d[k] = scalar_act(res ? s[k] + res[k] : s[k], act);
}

template <int R>
void scalar_tile(const TileArgs& a) {
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < a.npix; ++p) {
      // double: a reference, not a race (so a group's entries split across calls, acc_in,
      // round where one call would not: sparse_conv.cc runs no K stages on this table)
      double s = a.acc_in ? a.acc_in[r * a.y_row_stride + p] : a.bias ? a.bias[r] : 0.0;
      for (int64_t e = 0; e < a.n_entries; ++e) s += double(a.w[e * R + r]) * a.x[a.off[e] + p];
      float o = float(s);
      if (a.res) o += a.res[r * a.res_row_stride + p];
      a.y[r * a.y_row_stride + p] = scalar_act(o, a.act);
    }
  }
}

// Line I of the list, if it is a scalar kernel: one loop nest serves full tiles and tails.
template <int I>
void fill_listed(SpmmKernels& k) {
  constexpr SpmmUkernel u = kSpmmUkernels[I];
  if constexpr (u.isa == Isa::scalar) {
    static_assert(u.pixels >= 1 && u.pixels <= kMaxTileVectors, "scalar tiles: 1..16 pixels");
    k.nv[u.rows - 1] = u.pixels;
    k.name[u.rows - 1] = u.name;
    k.full[u.rows - 1] = &scalar_tile<u.rows>;
    for (int v = 0; v < u.pixels; ++v) k.tail[u.rows - 1][v] = &scalar_tile<u.rows>;
  }
}

}  // namespace

template <>
const SpmmKernels* spmm_table<Isa::scalar>() {
  return isa_table<SpmmKernels, Scalar, kNumSpmmUkernels>(
      [](SpmmKernels& k, auto i) {
        k.act_row = &scalar_act_row;
        fill_listed<decltype(i)::value>(k);
      });
}

}  // namespace spe
