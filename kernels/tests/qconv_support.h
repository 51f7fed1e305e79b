// What the int8 conv's tests share (qconv_sweep.cc, fuzz.cc): a random layer packed in column
// quads, the NCHW <-> NCHW4 relayouts, and the reference: the exact integer convolution of
// (x - zx) with the int8 weight, then spe.h's requantization written out on its own.
#ifndef SPE_KERNELS_TESTS_QCONV_SUPPORT_H_
#define SPE_KERNELS_TESTS_QCONV_SUPPORT_H_

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
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

// n bytes ending exactly at a PROT_NONE page: a byte past the end faults.
class GuardedBytes {
 public:
  explicit GuardedBytes(size_t n) : n_(n) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    data_ = ((std::max<size_t>(n, 1) + page - 1) / page) * page;
    base_ = static_cast<uint8_t*>(mmap(nullptr, data_ + page, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    mprotect(base_ + data_, page, PROT_NONE);
    page_ = page;
  }
  ~GuardedBytes() { munmap(base_, data_ + page_); }
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;
  uint8_t* data() { return base_ + (data_ - n_); }
  size_t size() const { return n_; }

 private:
  size_t n_, data_, page_ = 0;
  uint8_t* base_;
};


// The int8 depthwise conv (spe_qdepthwise) on every variant against a direct reference over
// NCHW: sum (x - zx) * w over the window (padding contributes nothing), then the requantization.
inline std::string run_dw_case(const char* variant, int c, int h, int w, int k, int s, int p, int d,
                        int act, bool residual, int batch, int zx, int threads, Lcg& rng) {
  const spe_conv_params prm = {c, c, k, k, s, s, p, p, d, d};
  std::vector<int8_t> wt(size_t(c) * k * k);
  for (auto& v : wt) v = int8_t(rng.range(-127, 127));
  std::vector<float> ws(static_cast<size_t>(c)), bias(static_cast<size_t>(c));
  for (int i = 0; i < c; ++i) ws[i] = float(0.001 + 0.02 * rng.uniform()), bias[i] = rng.sym(2.0f);
  spe_qconv_quant q{};
  q.input = {0.02f, zx};
  q.output = {0.05f + 0.05f * float(rng.uniform()), int32_t(rng.range(0, 255))};
  q.residual = {0.03f, 128};
  q.weight_scale = ws.data();
  q.bias = bias.data();
  q.input_layout = q.output_layout = SPE_QLAYOUT_NCHW4;
  spe_qdepthwise* dw = nullptr;
  if (spe_qdepthwise_create(&prm, wt.data(), &q, spe_activation(act), variant, &dw) != SPE_OK)
    return std::string("create failed: ") + spe_last_error();
  int32_t ho = 0, wo = 0;
  spe_qdepthwise_output_size(dw, h, w, &ho, &wo);
  const int64_t ipx = int64_t(h) * w, opx = int64_t(ho) * wo;
  std::vector<uint8_t> xs(size_t(batch) * c * ipx), rs(size_t(batch) * c * opx);
  for (auto& v : xs) v = uint8_t(rng.next() >> 24);
  for (auto& v : rs) v = uint8_t(rng.next() >> 24);
  const std::vector<uint8_t> xq = to_quads(xs.data(), batch, c, ipx, 13), rq = to_quads(rs.data(), batch, c, opx, 0);
  const size_t yn = size_t(batch) * ((c + 3) / 4) * opx * 4;
  GuardedBytes x(xq.size()), y(yn), rr(rq.size());
  std::memcpy(x.data(), xq.data(), xq.size());
  std::memcpy(rr.data(), rq.data(), rq.size());
  spe_set_num_threads(threads);
  const spe_status st = spe_qdepthwise_run(dw, x.data(), batch, h, w, residual ? rr.data() : nullptr, y.data());
  spe_set_num_threads(1);
  std::string err = st == SPE_OK ? "" : std::string("run failed: ") + spe_last_error();
  const double sy = q.output.scale;
  for (size_t at = 0; err.empty() && at < size_t(batch) * c * opx; ++at) {
    const int ox = int(at % wo), oy = int(at / wo % ho), ch = int(at / opx % c), b = int(at / (opx * c));
    int64_t a = 0;
    for (int ky = 0; ky < k; ++ky)
      for (int kx = 0; kx < k; ++kx) {
        const int iy = oy * s - p + ky * d, ix = ox * s - p + kx * d;
        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
        a += int64_t(xs[(size_t(b) * c + ch) * ipx + size_t(iy) * w + ix] - zx) * wt[size_t(ch) * k * k + ky * k + kx];
      }
    float v = std::fma(float(a), float(double(q.input.scale) * ws[ch] / sy), float(bias[ch] / sy));
    if (residual) v = std::fma(float(int(rs[at]) - 128), float(q.residual.scale / sy), v);
    if (act >= 1) v = std::max(v, 0.0f);
    if (act == 2) v = std::min(v, float(6.0 / sy));
    v = std::min(v, 512.0f);
    const long qv = std::lrint(v) + q.output.zero_point;
    const uint8_t want = uint8_t(std::min<long>(std::max<long>(qv, 0), 255));
    const uint8_t got = y.data()[((size_t(b) * ((c + 3) / 4) + ch / 4) * opx + size_t(oy) * wo + ox) * 4 + ch % 4];
    if (got != want) err = fmt("y[n=%d,c=%d,y=%d,x=%d] = %d, reference %d", b, ch, oy, ox, got, want);
  }
  for (int b = 0; err.empty() && b < batch; ++b)  // the last quad's pad channels: the zero point
    for (int ch = c; ch < (c + 3) / 4 * 4 && err.empty(); ++ch)
      for (int64_t i = 0; i < opx && err.empty(); ++i)
        if (y.data()[((size_t(b) * ((c + 3) / 4) + ch / 4) * opx + i) * 4 + ch % 4] != uint8_t(q.output.zero_point))
          err = fmt("pad channel %d is not the zero point", ch);
  spe_qdepthwise_destroy(dw);
  return err;
}

}  // namespace spe_test
#endif  // SPE_KERNELS_TESTS_QCONV_SUPPORT_H_
