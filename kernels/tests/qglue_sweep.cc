// The int8 glue's float <-> u8 conversions (spe_quantize, spe_dequantize) against scalar
// references, on every path this machine has: on x86 the one-pass AVX-512 quantize and the
// portable one (SSE2, forced with set_quantize_avx512(false)), on aarch64 the NEON one (under
// qemu in tests/kernels/test_native_cross.py). NCHW and NCHW4, plane sizes on and off the
// vectors' widths, zero points 0 / 131 / 255, exact ties (a power-of-two scale), values past
// both clamps and past int32, signed zeros and subnormals; a non-finite value is refused with
// the index of the first.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "conv/qglue.h"
#include "qconv_support.h"
#include "runner.h"

namespace spe_test {
namespace {

uint8_t quantize_ref(float x, float inv, int32_t zp) {
  const float f = std::min(std::max(x * inv, -512.0f), 512.0f);
  return uint8_t(std::min<long>(std::max<long>(std::lrint(f) + zp, 0), 255));
}

std::vector<float> glue_values(size_t n, float scale, Lcg& rng) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    const int k = int(rng.range(-300, 300));
    switch (i % 8) {
      case 0: x[i] = (float(k) + 0.5f) * scale; break;            // a tie
      case 1: x[i] = float(k) * scale; break;                      // exact
      case 2: x[i] = rng.sym(3.0f); break;
      case 3: x[i] = i % 16 == 3 ? 1e30f : -1e30f; break;          // past int32
      case 4: x[i] = i % 16 == 4 ? -0.0f : 1e-40f; break;          // signed zero, subnormal
      case 5: x[i] = (float(k % 2 ? 255 : -255) + 0.5f) * scale; break;
      default: x[i] = rng.sym(400.0f) * scale;
    }
  }
  return x;
}

std::string quantize_case(int n, int c, int h, int w, int layout, float scale, int32_t zp, Lcg& rng) {
  const int64_t hw = int64_t(h) * w, C4 = (c + 3) / 4;
  const std::vector<float> xs = glue_values(size_t(n) * c * hw, scale, rng);
  const size_t yn = layout == SPE_QLAYOUT_NCHW4 ? size_t(n) * C4 * hw * 4 : xs.size();
  GuardedBytes x(xs.size() * 4), y(yn);
  std::memcpy(x.data(), xs.data(), xs.size() * 4);
  const float* xp = reinterpret_cast<const float*>(x.data());
  if (spe_quantize(xp, n, c, h, w, spe_qparams{scale, zp}, layout, y.data()) != SPE_OK)
    return std::string("quantize failed: ") + spe_last_error();
  const float inv = 1.0f / scale;
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < (layout == SPE_QLAYOUT_NCHW4 ? 4 * C4 : c); ++ch)
      for (int64_t i = 0; i < hw; ++i) {
        const size_t at = layout == SPE_QLAYOUT_NCHW4 ? ((size_t(b) * C4 + ch / 4) * hw + i) * 4 + ch % 4
                                                      : (size_t(b) * c + ch) * hw + i;
        const float v = ch < c ? xs[(size_t(b) * c + ch) * hw + i] : 0.0f;
        const uint8_t want = ch < c ? quantize_ref(v, inv, zp) : uint8_t(zp);
        if (y.data()[at] != want)
          return fmt("y[n=%d,c=%d,i=%lld] = %d for x = %.9g, reference %d", b, ch, (long long)i, y.data()[at],
                     double(v), want);
      }
  // a non-finite value: refused, naming the first one
  std::vector<float> bad = xs;
  const size_t first = bad.size() / 3;
  bad[first] = std::numeric_limits<float>::quiet_NaN();
  bad[bad.size() - 1] = std::numeric_limits<float>::infinity();
  std::memcpy(x.data(), bad.data(), bad.size() * 4);
  if (spe_quantize(xp, n, c, h, w, spe_qparams{scale, zp}, layout, y.data()) != SPE_ERR_INVALID_ARGUMENT)
    return "a NaN was not refused";
  const std::string why = spe_last_error(), want = "x[" + std::to_string(first) + "]";
  if (why.find(want) == std::string::npos) return "the error names another element: " + why;
  return "";
}

std::string dequantize_case(int n, int c, int h, int w, int layout, float scale, int32_t zp, Lcg& rng) {
  const int64_t hw = int64_t(h) * w, C4 = (c + 3) / 4;
  const size_t xn = layout == SPE_QLAYOUT_NCHW4 ? size_t(n) * C4 * hw * 4 : size_t(n) * c * hw;
  GuardedBytes x(xn), y(size_t(n) * c * hw * 4);
  for (size_t i = 0; i < xn; ++i) x.data()[i] = uint8_t(rng.next() >> 24);
  float* yp = reinterpret_cast<float*>(y.data());
  if (spe_dequantize(x.data(), n, c, h, w, spe_qparams{scale, zp}, layout, yp) != SPE_OK)
    return std::string("dequantize failed: ") + spe_last_error();
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < hw; ++i) {
        const uint8_t v = layout == SPE_QLAYOUT_NCHW4 ? x.data()[((size_t(b) * C4 + ch / 4) * hw + i) * 4 + ch % 4]
                                                      : x.data()[(size_t(b) * c + ch) * hw + i];
        const float got = yp[(size_t(b) * c + ch) * hw + i], want = float(int(v) - zp) * scale;
        if (std::memcmp(&got, &want, 4) != 0)
          return fmt("y[n=%d,c=%d,i=%lld] = %.9g for code %d, reference %.9g", b, ch, (long long)i, double(got), v,
                     double(want));
      }
  return "";
}

}  // namespace

size_t qglue_sweep(bool quick) {
  struct S { int n, c, h, w; };
  const S shapes[] = {{1, 3, 7, 7}, {2, 5, 13, 5}, {1, 4, 1, 1}, {1, 1, 33, 3}, {1, 8, 16, 16}, {2, 7, 9, 31},
                      {1, 3, 40, 40}};
  size_t n = 0;
#if defined(__x86_64__)
  const bool paths[] = {true, false};   // the one-pass AVX-512 paths where they run, the portable ones
#else
  const bool paths[] = {true};
#endif
  for (const bool avx512 : paths) {
    spe::set_quantize_avx512(avx512);
    int i = 0;
    for (const S& s : shapes)
      for (const int layout : {SPE_QLAYOUT_NCHW, SPE_QLAYOUT_NCHW4})
        for (const int32_t zp : {0, 131, 255}) {
          ++i;
          if (quick && i % 2) continue;
          const float scale = i % 3 ? 0.25f : 0.0371f;
          const std::string name = fmt("quantize-%s-%dx%dx%dx%d-%s-zp%d", avx512 ? "auto" : "portable", s.n, s.c,
                                       s.h, s.w, layout ? "nchw4" : "nchw", zp);
          set_current(name);
          Lcg rng(seed_of(name));
          std::string err = quantize_case(s.n, s.c, s.h, s.w, layout, scale, zp, rng);
          record(err.empty(), name, err);
          const std::string dn = "de" + name;
          set_current(dn);
          err = dequantize_case(s.n, s.c, s.h, s.w, layout, scale, zp, rng);
          record(err.empty(), dn, err);
          n += 2;
        }
  }
  spe::set_quantize_avx512(true);
  return n;
}

}  // namespace spe_test
