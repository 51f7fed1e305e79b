// Scalar reference of the f32 dense GEMM microkernel: plain loops over the same packed panels,
// the yardstick every ISA variant's layer is tested against (beside the direct reference
// convolution of the tests); dense_list.h's scalar lines ("vectors" are single floats).
#include <algorithm>
#include <cmath>

#include "../isa/scalar.h"  // the traits give the table its ISA and width (1)
#include "phase_template.h"

namespace spe {
namespace {

template <int R, int NR>
void scalar_tile(const GemmArgs& a) {
  const int64_t bs = a.b_stride ? a.b_stride : NR;
  for (int r = 0; r < a.rows; ++r)
    for (int p = 0; p < a.npix; ++p) {
      float s = a.first ? (a.bias ? a.bias[r] : 0.0f) : a.y[r * a.y_row_stride + p];
      for (int64_t k = 0; k < a.kc; ++k) s += a.a[k * a.a_stride + r] * a.b[k * bs + p];
      if (a.last) {
        if (a.res) s += a.res[r * a.res_row_stride + p];
        if (a.act == 1) s = std::max(s, 0.0f);
        else if (a.act == 2) s = std::min(std::max(s, 0.0f), 6.0f);
        else if (a.act == 3) s = s * std::min(std::max(s + 3.0f, 0.0f), 6.0f) / 6.0f;
        else if (a.act == 4) s = s / (1.0f + std::exp(-s));  // libm's exp: the yardstick
        else if (a.act == 5) s = 0.5f * s * std::erfc(-s * 0.70710678f);
        else if (a.act == 6) s = s / (1.0f + std::exp(-1.5957691f * (s + 0.044715f * s * s * s)));
      }
      a.y[r * a.y_row_stride + p] = s;
    }
}

struct ScalarTiles {
  template <int R, int Pixels>
  static GemmFn fn() { return &scalar_tile<R, Pixels>; }
  // the pointwise path: the same loops on the input in place; a 1-float vector leaves no
  // remainder for a cols kernel
  template <int R, int Pixels>
  static void direct(GemmFn (*out)[kMaxDenseVectors]) {
    for (int r = 0; r < R; ++r)
      for (int i = 0; i < Pixels; ++i) out[r][i] = &scalar_tile<R, Pixels>;
  }
  static void cols(DenseKernels&) {}
};

}  // namespace

template <>
const DenseKernels* dense_table<Isa::scalar>() {
  return dense::dense_conv_table_of<Scalar, ScalarTiles>();
}

}  // namespace spe
