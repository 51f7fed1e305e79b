// Scalar reference of the int8 SpMM microkernel and of the requantization: plain loops, the
// yardstick every variant is tested against bit for bit (qspmm_list.h's scalar lines).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "qspmm.h"

namespace spe {

// qspmm.h's requantization of one sum, given its output channel's constants.
uint8_t qrequant_with(int32_t a, const uint8_t* res, const QRowConst& c) {
  float v = std::fma(float(a + c.corr), c.scale, c.bias);
  if (res) v = std::fma(float(int32_t(*res) - c.res_zero), c.res_scale, v);
  if (c.act >= 1) v = std::max(v, 0.0f);
  if (c.act == 2) v = std::min(v, c.six);
  v = std::min(v, 512.0f);
  const int32_t q = v >= -2147483648.0f ? int32_t(std::nearbyint(v)) : INT32_MIN;
  return uint8_t(std::min(std::max(q + c.out_zero, 0), 255));  // q + zy: no overflow (zy >= 0)
}

uint8_t qrequant(int32_t a, const uint8_t* res, const QEpilogue& e, int o) {
  return qrequant_with(a, res, QRowConst{e.corr[o], e.res_zero, e.out_zero, e.scale[o], e.bias[o],
                                         e.res_scale, e.six, e.act});
}

uint8_t qrequant_lane(int32_t a, const uint8_t* res, const QDwRowArgs& d, int l) {
  const int k = l & 15;
  return qrequant_with(a, res, QRowConst{d.corr[k], d.res_zero, d.out_zero, d.scale[k], d.bias[k],
                                         d.res_scale, d.six, d.act});
}

namespace {

void qscalar_dw_row(const QDwRowArgs& d) {
  for (int j = 0; j < d.n; ++j) {
    int32_t s = 0;
    for (int t = 0; t < d.n_taps; ++t) s += int32_t(d.src[t][j]) * d.w[4 * t + (j & 3)];
    d.y[j] = qrequant_lane(s, d.res ? d.res + j : nullptr, d, j);
  }
}

template <int R>
void qscalar_tile_one(const QTileArgs& a) {
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < a.npix; ++p) {
      int32_t s = 0;
      for (int64_t e = 0; e < a.n_entries; ++e) {
        const uint8_t* xw = a.x + (int64_t(a.off[e]) + p) * 4;
        const int8_t* wq = a.w + (e * R + r) * 4;
        for (int c = 0; c < 4; ++c) s += int32_t(xw[c]) * int32_t(wq[c]);
      }
      if (a.acc_out) {
        a.acc_out[r * a.acc_row_stride + p] = s;
      } else {
        const uint8_t* res = a.res ? a.res + r * a.res_row_stride + p : nullptr;
        a.y[r * a.y_row_stride + p] = qrequant(s, res, *a.epi, a.row0 + r);
      }
    }
  }
}

template <int R>
void qscalar_tile(const QTileArgs& a) {
  QTileArgs b = a;
  for (int s = 0; s < (a.n_sub > 1 && !a.acc_out ? a.n_sub : 1); ++s) {
    qscalar_tile_one<R>(b);
    b.x += 4 * int64_t(a.npix);
    b.y += (a.quads ? 4 : 1) * int64_t(a.npix);
    if (b.res) b.res += (a.quads ? 4 : 1) * int64_t(a.npix);
  }
}

void qscalar_epi_row(uint8_t* d, const int32_t* acc, const uint8_t* res, int n,
                     const QEpilogue& e, int o) {
  for (int k = 0; k < n; ++k) d[k] = qrequant(acc[k], res ? res + k : nullptr, e, o);
}

template <int I>
void qfill_scalar(QSpmmKernels& k) {
  constexpr QSpmmUkernel u = kQSpmmUkernels[I];
  if constexpr (u.variant == QVariant::scalar) {
    static_assert(u.pixels >= 1 && u.pixels <= kQMaxTileVectors, "scalar tiles: 1..16 pixels");
    k.nv[u.rows - 1] = u.pixels;
    k.name[u.rows - 1] = u.name;
    k.full[u.rows - 1] = &qscalar_tile<u.rows>;
    for (int v = 0; v < u.pixels; ++v) k.tail[u.rows - 1][v] = &qscalar_tile<u.rows>;
  }
}

}  // namespace

template <>
const QSpmmKernels* qspmm_table<QVariant::scalar>() {
  static const QSpmmKernels table = [] {
    QSpmmKernels t{};
    t.variant = "scalar";
    t.width = 1;
    t.x_bias = 0;
    t.w_bytes = 4;
    t.epi_row = &qscalar_epi_row;
    t.dw_row = &qscalar_dw_row;
    for_each_index([&](auto i) { qfill_scalar<decltype(i)::value>(t); },
                   std::make_integer_sequence<int, kNumQSpmmUkernels>{});
    return t;
  }();
  return &table;
}

}  // namespace spe
