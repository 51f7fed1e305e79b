// What the kernel test runner (kernel_tests.cc) and the randomized fuzz (fuzz.cc) share: a
// seeded generator, the packer that turns a dense masked weight into the row-group format, and
// the references every kernel is checked against. The references are plain loops over the
// dense weight in double precision, written from the definition of the operation (torch's
// conv2d / max_pool2d), independent of the packed format and of how the kernels work.
#ifndef SPE_KERNELS_TESTS_TEST_SUPPORT_H_
#define SPE_KERNELS_TESTS_TEST_SUPPORT_H_

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "spe/spe.h"

namespace spe_test {

inline std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
inline std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// 64-bit LCG (Knuth's MMIX constants); the high bits are the good ones.
struct Lcg {
  uint64_t s;
  explicit Lcg(uint64_t seed) : s(seed * 2862933555777941757ull + 3037000493ull) {}
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(s >> 32);
  }
  double uniform() { return (next() >> 8) * (1.0 / 16777216.0); }  // [0, 1), 24 bits
  float sym(float scale) { return float((2.0 * uniform() - 1.0) * scale); }
  int below(int n) { return int(next() % uint32_t(n)); }
  int range(int lo, int hi) { return lo + below(hi - lo + 1); }  // [lo, hi]
  bool chance(double p) { return uniform() < p; }
};

inline uint64_t seed_of(const std::string& s) {  // FNV-1a
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// ------------------------------------------------------------------------------ packed format

struct Packed {
  std::vector<int32_t> row0, rows, col;
  std::vector<int64_t> ptr;
  std::vector<float> values;
};

// Row groups of the given heights over a dense (O, ncols) weight: each group keeps every column
// non-zero in any of its rows, values entry-major (one float per row of the group).
inline Packed pack(const std::vector<float>& w, int ncols, const std::vector<int>& heights) {
  Packed p;
  p.ptr.push_back(0);
  int r0 = 0;
  for (int r : heights) {
    p.row0.push_back(r0);
    p.rows.push_back(r);
    for (int j = 0; j < ncols; ++j) {
      bool any = false;
      for (int i = 0; i < r; ++i) any = any || w[size_t(r0 + i) * ncols + j] != 0.0f;
      if (!any) continue;
      p.col.push_back(j);
      for (int i = 0; i < r; ++i) p.values.push_back(w[size_t(r0 + i) * ncols + j]);
    }
    p.ptr.push_back(int64_t(p.col.size()));
    r0 += r;
  }
  return p;
}

// ------------------------------------------------------------------------------ references

// A conv layer: o output channels, c input channels (depthwise: o == c, one filter each).
struct Geom {
  int o, c, kh, kw, sh, sw, ph, pw, dh, dw;
};

// torch's conv output size: floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1, 0 if negative.
inline int64_t out_dim(int64_t in, int64_t pad, int64_t dil, int64_t k, int64_t stride) {
  const int64_t span = in + 2 * pad - dil * (k - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

inline double activate(double s, int act) {
  if (act == SPE_ACT_RELU) return std::max(s, 0.0);
  if (act == SPE_ACT_RELU6) return std::min(std::max(s, 0.0), 6.0);
  if (act == SPE_ACT_HARDSWISH) return s * std::min(std::max(s + 3.0, 0.0), 6.0) / 6.0;
  if (act == SPE_ACT_SILU) return s / (1.0 + std::exp(-s));
  if (act == SPE_ACT_GELU) return 0.5 * s * std::erfc(-s / std::sqrt(2.0));
  if (act == SPE_ACT_GELU_TANH)
    return 0.5 * s * (1.0 + std::tanh(0.79788456080286536 * (s + 0.044715 * s * s * s)));
  return s;
}

// Direct convolution, double accumulation: y = act(conv(x, w) + bias [+ residual]); w is the
// dense (O, C, kh, kw) weight (depthwise: (C, kh, kw), each output channel reads its own input
// channel).
inline std::vector<double> ref_conv(const Geom& g, bool depthwise, const std::vector<float>& w,
                                    const float* bias, const float* x, int n, int h, int wd,
                                    const float* res, int act) {
  const int ho = int(out_dim(h, g.ph, g.dh, g.kh, g.sh)), wo = int(out_dim(wd, g.pw, g.dw, g.kw, g.sw));
  std::vector<double> y(size_t(n) * g.o * ho * wo);
  size_t i = 0;
  for (int b = 0; b < n; ++b)
    for (int o = 0; o < g.o; ++o)
      for (int oy = 0; oy < ho; ++oy)
        for (int ox = 0; ox < wo; ++ox, ++i) {
          double s = bias ? bias[o] : 0.0;
          const int c0 = depthwise ? o : 0, c1 = depthwise ? o + 1 : g.c;
          for (int c = c0; c < c1; ++c)
            for (int ky = 0; ky < g.kh; ++ky) {
              const int iy = oy * g.sh - g.ph + ky * g.dh;
              if (iy < 0 || iy >= h) continue;
              for (int kx = 0; kx < g.kw; ++kx) {
                const int ix = ox * g.sw - g.pw + kx * g.dw;
                if (ix < 0 || ix >= wd) continue;
                const size_t wi = depthwise ? (size_t(o) * g.kh + ky) * g.kw + kx
                                            : ((size_t(o) * g.c + c) * g.kh + ky) * g.kw + kx;
                s += double(w[wi]) * x[((size_t(b) * g.c + c) * h + iy) * wd + ix];
              }
            }
          if (res) s += res[i];
          y[i] = activate(s, act);
        }
  return y;
}

// torch's max_pool2d output size (floor mode, dilation 1) in int64, or -1 where torch raises:
// kernel or stride <= 0, padding < 0 or > kernel / 2, an empty plane, an output below 1x1.
inline int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p) {
  if (k <= 0 || s <= 0 || p < 0 || p > k / 2 || in <= 0) return -1;
  const int64_t span = in + 2 * p - k;
  const int64_t o = (span >= 0 ? span / s : -((-span + s - 1) / s)) + 1;  // floor division
  return o >= 1 ? o : -1;
}

// Max over each window's in-image elements (padding never wins), NaN propagating as in torch.
inline std::vector<float> ref_max_pool(const float* x, int n, int c, int h, int w, int kh, int kw,
                                       int sh, int sw, int ph, int pw) {
  const int64_t ho = pool_out(h, kh, sh, ph), wo = pool_out(w, kw, sw, pw);
  std::vector<float> y;
  for (int64_t plane = 0; plane < int64_t(n) * c; ++plane)
    for (int64_t oy = 0; oy < ho; ++oy)
      for (int64_t ox = 0; ox < wo; ++ox) {
        float m = -std::numeric_limits<float>::infinity();
        bool nan = false;
        const int64_t y0 = std::max<int64_t>(0, oy * sh - ph), y1 = std::min<int64_t>(h, oy * sh - ph + kh);
        const int64_t x0 = std::max<int64_t>(0, ox * sw - pw), x1 = std::min<int64_t>(w, ox * sw - pw + kw);
        for (int64_t iy = y0; iy < y1; ++iy)
          for (int64_t ix = x0; ix < x1; ++ix) {
            const float v = x[(plane * h + iy) * w + ix];
            nan = nan || std::isnan(v);
            m = std::max(m, v);
          }
        y.push_back(nan ? std::numeric_limits<float>::quiet_NaN() : m);
      }
  return y;
}

// ------------------------------------------------------------------ inverted-residual blocks

// A random (rows x cols) 1x1 weight whose (group, column) blocks are zero with probability
// `sparsity` (groups `heights` rows high; 0: mixed 1..8), its bias and its pack.
struct Conv1x1 {
  std::vector<float> w, bias;
  Packed p;
};

inline Conv1x1 random_1x1(int rows, int cols, double sparsity, int heights, Lcg& rng) {
  std::vector<int> hs;
  for (int r = 0, i = 0; r < rows; r += hs.back(), ++i)
    hs.push_back(std::min(rows - r, heights ? heights : 1 + i % 8));
  Conv1x1 c;
  c.w.assign(size_t(rows) * cols, 0.0f);
  int r0 = 0;
  for (int hgt : hs) {
    for (int j = 0; j < cols; ++j) {
      if (rng.chance(sparsity)) continue;
      for (int i = r0; i < r0 + hgt; ++i) c.w[size_t(i) * cols + j] = rng.sym(1.0f) / float(cols);
    }
    r0 += hgt;
  }
  for (int i = 0; i < rows; ++i) c.bias.push_back(rng.sym(0.5f));
  c.p = pack(c.w, cols, hs);
  return c;
}

inline spe_pointwise_weights pointwise_view(const Conv1x1& c) {
  return {int32_t(c.p.row0.size()), c.p.row0.data(), c.p.rows.data(), c.p.ptr.data(),
          c.p.col.data(), c.p.values.data(), c.bias.data()};
}

struct InvresGeom {
  int cin, ce, cout, k, s, n, h, w;
};

// The unfused reference of a block on x (n images): [1x1 -> ReLU6] -> depthwise k x k (stride
// s, padding k / 2) -> ReLU6 -> 1x1 [+ x]; each stage's output rounded to float, as stored.
inline std::vector<double> ref_inverted_block(const InvresGeom& g, const Conv1x1* ex,
                                              const std::vector<float>& dw,
                                              const std::vector<float>& dwb, const Conv1x1& pr,
                                              const float* x, bool residual) {
  const int pad = g.k / 2;
  std::vector<float> e(x, x + size_t(g.n) * g.cin * g.h * g.w);
  if (ex) {
    const auto d = ref_conv({g.ce, g.cin, 1, 1, 1, 1, 0, 0, 1, 1}, false, ex->w, ex->bias.data(),
                            x, g.n, g.h, g.w, nullptr, SPE_ACT_RELU6);
    e.assign(d.begin(), d.end());
  }
  const auto d = ref_conv({g.ce, g.ce, g.k, g.k, g.s, g.s, pad, pad, 1, 1}, true, dw, dwb.data(),
                          e.data(), g.n, g.h, g.w, nullptr, SPE_ACT_RELU6);
  const std::vector<float> df(d.begin(), d.end());
  const int ho = int(out_dim(g.h, pad, 1, g.k, g.s)), wo = int(out_dim(g.w, pad, 1, g.k, g.s));
  return ref_conv({g.cout, g.ce, 1, 1, 1, 1, 0, 0, 1, 1}, false, pr.w, pr.bias.data(), df.data(),
                  g.n, ho, wo, residual ? x : nullptr, SPE_ACT_NONE);
}

// Worst violation of |y - ref| <= atol + rtol |ref| (float32 accumulation over ncols products:
// error grows like sqrt(ncols)); "" if none. o, ho, wo name the failing element.
inline std::string compare(const float* y, const std::vector<double>& ref, int ncols, int o,
                           int ho, int wo) {
  double mx = 0.0;
  for (double v : ref) mx = std::max(mx, std::fabs(v));
  const double atol = 2e-5 * std::max(1.0, std::sqrt(double(ncols))) * std::max(1.0, std::sqrt(mx));
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::isfinite(y[i]) ? std::fabs(y[i] - ref[i]) / (atol + 1e-4 * std::fabs(ref[i]))
                                          : std::numeric_limits<double>::infinity();
    if (err > worst) worst = err, at = i;
  }
  if (worst <= 1.0) return "";
  const size_t img = size_t(o) * ho * wo, pl = size_t(ho) * wo;
  return fmt("y[n=%zu,o=%zu,y=%zu,x=%zu] = %.7g, reference %.7g (%.2fx the tolerance)", at / img,
             at % img / pl, at % pl / wo, at % wo, double(y[at]), ref[at], worst);
}

}  // namespace spe_test
#endif  // SPE_KERNELS_TESTS_TEST_SUPPORT_H_
