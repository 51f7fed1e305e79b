// 2-D max pooling, NCHW, parallel over (batch, channel). Separable: for each output row, the
// max over the kh input rows (contiguous, vectorisable), then the max over kw columns at the
// stride. Padding never wins (it is -inf), as in torch.
#include <algorithm>
#include <limits>
#include <vector>

#include "../common/threadpool.h"
#include "spe/spe.h"

extern "C" spe_status spe_max_pool2d(const float* x, int32_t n, int32_t c, int32_t h, int32_t w,
                                     int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t ph,
                                     int32_t pw, float* y) {
  if (!x || !y || n < 0 || c < 0 || h <= 0 || w <= 0 || kh <= 0 || kw <= 0 || sh <= 0 ||
      sw <= 0 || ph < 0 || pw < 0 || 2 * ph > kh || 2 * pw > kw)
    return SPE_ERR_INVALID_ARGUMENT;
  const int ho = (h + 2 * ph - kh) / sh + 1, wo = (w + 2 * pw - kw) / sw + 1;
  if (ho <= 0 || wo <= 0) return SPE_ERR_INVALID_ARGUMENT;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  spe::ThreadPool::global().parallel_for(int64_t(n) * c, 4, [&](int64_t b, int64_t e) {
    std::vector<float> row(size_t(w) + 2 * pw + kw);
    for (int64_t plane = b; plane < e; ++plane) {
      const float* xp = x + plane * int64_t(h) * w;
      float* yp = y + plane * int64_t(ho) * wo;
      for (int oy = 0; oy < ho; ++oy) {
        const int r0 = std::max(0, oy * sh - ph), r1 = std::min(h, oy * sh - ph + kh);
        float* rm = row.data() + pw;  // rm[-pw .. w+pw) ; pads stay -inf
        std::fill(row.begin(), row.end(), kNegInf);
        std::copy(xp + int64_t(r0) * w, xp + int64_t(r0) * w + w, rm);
        for (int r = r0 + 1; r < r1; ++r) {
          const float* xr = xp + int64_t(r) * w;
          for (int j = 0; j < w; ++j) rm[j] = std::max(rm[j], xr[j]);
        }
        const float* base = row.data();  // column j of the padded row is base[j]
        float* out = yp + int64_t(oy) * wo;
        for (int ox = 0; ox < wo; ++ox) {
          const float* win = base + ox * sw;
          float m = win[0];
          for (int k = 1; k < kw; ++k) m = std::max(m, win[k]);
          out[ox] = m;
        }
      }
    }
  });
  return SPE_OK;
}
