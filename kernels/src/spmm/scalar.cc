// Scalar reference of the f32 SpMM microkernel: plain loops, the yardstick every ISA variant
// is tested against. "Vectors" are single floats here.
#include <algorithm>

#include "spmm.h"

namespace spe {
namespace {

template <int R>
void scalar_tile(const TileArgs& a) {
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < a.npix; ++p) {
      double s = a.bias ? a.bias[r] : 0.0;  // double: a reference, not a race
      for (int64_t e = 0; e < a.n_entries; ++e) s += double(a.w[e * R + r]) * a.x[a.off[e] + p];
      float o = float(s);
      if (a.res) o += a.res[r * a.res_row_stride + p];
      if (a.act == 1) o = std::max(o, 0.0f);
      else if (a.act == 2) o = std::min(std::max(o, 0.0f), 6.0f);
      a.y[r * a.y_row_stride + p] = o;
    }
  }
}

template <int R>
void fill(SpmmKernels& k) {
  k.nv[R - 1] = 16;  // a "tile" of 16 pixels; tails handle fewer
  k.full[R - 1] = &scalar_tile<R>;
  for (int v = 0; v < 16; ++v) k.tail[R - 1][v] = &scalar_tile<R>;
}

SpmmKernels make() {
  SpmmKernels k{};
  k.isa = "scalar";
  k.width = 1;
  fill<1>(k); fill<2>(k); fill<3>(k); fill<4>(k);
  fill<5>(k); fill<6>(k); fill<7>(k); fill<8>(k);
  return k;
}

}  // namespace

const SpmmKernels* spmm_kernels_scalar() {
  static const SpmmKernels k = make();
  return &k;
}

}  // namespace spe
