// What the int8 conv's tests share (qconv_sweep.cc, fuzz.cc): a random layer packed in column
// quads, the NCHW <-> NCHW4 relayouts, and the reference: the exact integer convolution of
// (x - zx) with the int8 weight, then spe.h's requantization written out on its own.
#ifndef SPE_KERNELS_TESTS_QCONV_SUPPORT_H_
#define SPE_KERNELS_TESTS_QCONV_SUPPORT_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "spe/spe.h"
#include "test_support.h"

namespace spe_test {

// NCHW (n, c, hw) -> NCHW4 (n, ceil(c / 4), hw, 4), the channels past c set to fill.
inline std::vector<uint8_t> to_quads(const uint8_t* a, int n, int c, int64_t hw, uint8_t fill) {
  const int q = (c + 3) / 4;
  std::vector<uint8_t> out(size_t(n) * q * hw * 4, fill);
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < hw; ++i)
        out[((size_t(b) * q + ch / 4) * hw + i) * 4 + ch % 4] = a[(size_t(b) * c + ch) * hw + i];
  return out;
}

struct QLayer {
  std::vector<int8_t> w;  // dense (O, C, kh, kw)
  std::vector<float> wscale, bias;
  std::vector<int32_t> row0, rows, quad;
  std::vector<int64_t> ptr;
  std::vector<int8_t> values;
};

// What make_qlayer draws: a layer's shape and mask.
struct QShape {
  int o, c, kh, kw;
  int rows;         // group height 1..8; 0: mixed
  double sparsity;
  bool blocks;      // (rows x 4 channels) blocks at one tap, else single weights
  bool bias;
};

// A random int8 layer, its weights pruned as t says and packed in column quads (spe.h).
inline QLayer make_qlayer(const QShape& t, Lcg& rng) {
  QLayer L;
  const int K = t.kh * t.kw, Q = (t.c + 3) / 4;
  L.w.assign(size_t(t.o) * t.c * K, 0);
  for (int o0 = 0; o0 < t.o;) {  // groups, and the mask in (group x quad x tap) blocks
    const int r = std::min(t.o - o0, t.rows ? t.rows : rng.range(1, 8));
    L.row0.push_back(o0);
    L.rows.push_back(r);
    for (int q = 0; q < Q; ++q)
      for (int kk = 0; kk < K; ++kk) {
        const bool keep_block = !t.blocks || !rng.chance(t.sparsity);
        for (int rr = 0; rr < r; ++rr)
          for (int ch = 4 * q; ch < std::min(4 * q + 4, t.c); ++ch) {
            const bool keep = t.blocks ? keep_block : !rng.chance(t.sparsity);
            const int v = rng.range(-128, 127);
            L.w[(size_t(o0 + rr) * t.c + ch) * K + kk] = keep ? int8_t(v) : 0;
          }
      }
    o0 += r;
  }
  L.ptr.push_back(0);
  for (size_t g = 0; g < L.row0.size(); ++g) {
    for (int q = 0; q < Q; ++q)
      for (int kk = 0; kk < K; ++kk) {
        bool any = false;
        for (int rr = 0; rr < L.rows[g]; ++rr)
          for (int ch = 4 * q; ch < std::min(4 * q + 4, t.c); ++ch)
            any |= L.w[(size_t(L.row0[g] + rr) * t.c + ch) * K + kk] != 0;
        if (!any) continue;
        L.quad.push_back(q * K + kk);
        for (int rr = 0; rr < L.rows[g]; ++rr)
          for (int j = 0; j < 4; ++j) {
            const int ch = 4 * q + j;
            L.values.push_back(ch < t.c ? L.w[(size_t(L.row0[g] + rr) * t.c + ch) * K + kk] : 0);
          }
      }
    L.ptr.push_back(int64_t(L.quad.size()));
  }
  for (int o = 0; o < t.o; ++o) {
    L.wscale.push_back(float(0.001 + 0.02 * rng.uniform()));
    L.bias.push_back(t.bias ? rng.sym(2.0f) : 0.0f);
  }
  return L;
}

// spe.h's requantization, in units of the output scale (constants folded in double).
inline uint8_t requant_ref(int64_t a, double sxw, float bias, const uint8_t* r, const spe_qconv_quant& q,
                    int act) {
  const double sy = q.output.scale;
  float v = std::fma(float(a), float(sxw / sy), float(bias / sy));
  if (r) v = std::fma(float(int(*r) - q.residual.zero_point), float(q.residual.scale / sy), v);
  if (act == SPE_ACT_RELU || act == SPE_ACT_RELU6) v = std::max(v, 0.0f);
  if (act == SPE_ACT_RELU6) v = std::min(v, float(6.0 / sy));
  v = std::min(v, 512.0f);
  const long qv = (v < -2147483648.0f ? long(INT32_MIN) : std::lrint(v)) + q.output.zero_point;
  return uint8_t(std::min<long>(std::max<long>(qv, 0), 255));
}

// The reference output (NCHW) of an int8 conv with geometry g on an NCHW u8 input x.
inline std::vector<uint8_t> ref_qconv(const Geom& g, const QLayer& L, const spe_qconv_quant& q,
                                      int act, const uint8_t* x, int n, int h, int w,
                                      const uint8_t* res) {
  const int64_t ho = out_dim(h, g.ph, g.dh, g.kh, g.sh), wo = out_dim(w, g.pw, g.dw, g.kw, g.sw);
  std::vector<uint8_t> y(size_t(n) * g.o * ho * wo);
  const int K = g.kh * g.kw, zx = q.input.zero_point;
  for (size_t at = 0; at < y.size(); ++at) {
    const int ox = int(at % wo), oy = int(at / wo % ho), o = int(at / (size_t(wo) * ho) % g.o);
    const int b = int(at / (size_t(wo) * ho * g.o));
    int64_t a = 0;
    for (int ch = 0; ch < g.c; ++ch)
      for (int ky = 0; ky < g.kh; ++ky)
        for (int kx = 0; kx < g.kw; ++kx) {
          const int64_t iy = int64_t(oy) * g.sh - g.ph + int64_t(ky) * g.dh;
          const int64_t ix = int64_t(ox) * g.sw - g.pw + int64_t(kx) * g.dw;
          if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
          const int xv = x[((size_t(b) * g.c + ch) * h + iy) * w + ix];
          a += int64_t(xv - zx) * L.w[(size_t(o) * g.c + ch) * K + ky * g.kw + kx];
        }
    y[at] = requant_ref(a, double(q.input.scale) * L.wscale[o], q.bias ? L.bias[o] : 0.0f,
                        res ? res + at : nullptr, q, act);
  }
  return y;
}

}  // namespace spe_test
#endif  // SPE_KERNELS_TESTS_QCONV_SUPPORT_H_
