// The direct path of the packed dense conv (spe_dense_conv, dense_layer.h): a conv whose GEMM
// depth K = C*kh*kw is small (the mobile stems: 3 -> 16..32 channels, 3x3, stride 2, 224x224)
// runs on the direct conv tiles (dense/direct_template.h) instead of the implicit GEMM, whose
// strided im2col gather and per-tile accumulator traffic cost as much as its FMAs at K ~ 27.
// Work items: (image, band of output rows); a band computes every output channel of its rows.
#include <algorithm>
#include <vector>

#include "../common/threadpool.h"
#include "dense_layer.h"
#include "geometry.h"

namespace spe {
namespace {

// "gemm" takes the direct path up to this K, and while a thread's phase rows stay small (a very
// wide input goes to the implicit GEMM, whose buffers are bounded). Measured on Zen 4 (AVX-512,
// 1 thread, warm): at K = 27 (the 3x3 stems) 1.6-2.3x the implicit GEMM, at K = 72..288
// 1.3-1.9x; still ahead up to 256x256 3x3 at 14x14 (K = 2304), behind at 512x512 3x3 at 7x7 (the
// 9 MB weight re-read per output row). 64 keeps the path to the layers it was written for until
// the larger ones are measured at several threads.
constexpr int64_t kDirectMaxK = 64;
// ... and any conv of up to this many input channels (ResNet's 7x7 stride-2 stem, K = 147: 109
// GFLOP/s here, 103 on the phase path, 85 on the implicit GEMM; 2 threads 216 / 207).
constexpr int64_t kDirectMaxChannels = 4;

bool direct_k(const spe_dense_conv* c) {
  return c->K <= kDirectMaxK || c->p.in_channels <= kDirectMaxChannels;
}
constexpr int64_t kDirectMaxScratchFloats = int64_t(1) << 20;

int64_t scratch_floats(const spe_dense_conv* c, int64_t wo) {
  return conv_scratch_floats(c->p, wo, c->k->width);
}

}  // namespace

void direct_pack(spe_dense_conv* c, const float* weight) {
  // a second copy of the weight, for a layer that may take the path: forced, or a small K
  // (or the phase path, on the same tiles: forced, or "gemm" on a strided conv past 1x1)
  const bool may = c->path == spe_dense_conv::kDirect || c->path == spe_dense_conv::kPhase ||
                   (c->path == spe_dense_conv::kAuto && c->forced_tile < 0 &&
                    (direct_k(c) || phase_fits(c->p)));
  if (!may) return;
  if (c->conv_tile < 0) {  // not named: the tile padding the fewest rows (ties: listed first)
    auto padded = [&](int t) {
      const int64_t R = c->k->conv_rows[t];
      return (c->p.out_channels + R - 1) / R * R;
    };
    c->conv_tile = 0;
    for (int t = 1; t < c->k->n_conv; ++t)
      if (padded(t) < padded(c->conv_tile)) c->conv_tile = t;
  }
  const int64_t O = c->p.out_channels, K = c->K, R = c->k->conv_rows[c->conv_tile];
  const int64_t tiles = (O + R - 1) / R;
  c->conv_w.assign(size_t(tiles * K * R), 0.0f);
  for (int64_t r = 0; r < O; ++r)
    for (int64_t k = 0; k < K; ++k) c->conv_w[size_t((r / R * K + k) * R + r % R)] = weight[r * K + k];
}

const float** conv_taps(int64_t K) {
  static thread_local std::vector<const float*> taps;
  taps.resize(size_t(K));
  return taps.data();
}

bool use_direct(const spe_dense_conv* c, int w) {
  if (c->winograd || c->conv_w.empty()) return false;
  if (c->path == spe_dense_conv::kDirect) return true;
  if (c->path == spe_dense_conv::kPhase || !direct_k(c)) return false;
  const auto& p = c->p;
  const bool flat = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 &&
                    p.pad_h == 0 && p.pad_w == 0;
  return !flat && scratch_floats(c, out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w)) <=
                      kDirectMaxScratchFloats;
}

spe_status direct_run(const spe_dense_conv* c, const float* x, int n, int h, int w,
                      const float* res, float* y) {
  const auto& p = c->p;
  const int64_t ho = out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h);
  const int64_t wo = out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w);
  const int64_t in_img = int64_t(p.in_channels) * h * w, out_img = int64_t(p.out_channels) * ho * wo;
  auto& pool = ThreadPool::global();
  // one band per image on one thread (rows shared between output rows are laid out once);
  // else about 4 items per thread
  const int64_t T = pool.num_threads();
  const int64_t per_img = T > 1 ? std::clamp<int64_t>((4 * T + n - 1) / n, 1, ho) : 1;
  const int64_t band = (ho + per_img - 1) / per_img, n_bands = (ho + band - 1) / band;
  const int64_t floats = scratch_floats(c, wo);
  const ConvRowsFn fn = c->k->conv_fn[c->conv_tile];
  pool.parallel_for(int64_t(n) * n_bands, 1, [&](int64_t ib, int64_t ie) {
    const float** taps = conv_taps(c->K);
    float* scratch = thread_buffer(0, floats);
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / n_bands, oy0 = it % n_bands * band;
      ConvRowsArgs a{&p, x + b * in_img, h, w, ho, wo, oy0, std::min(ho, oy0 + band),
                     c->conv_w.data(), c->bias.empty() ? nullptr : c->bias.data(),
                     res ? res + b * out_img : nullptr, y + b * out_img, c->act, scratch, taps};
      fn(a);
    }
  });
  return SPE_OK;
}

}  // namespace spe
