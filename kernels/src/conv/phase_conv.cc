// The phase path of the packed dense conv (spe_dense_conv, dense_layer.h): a strided conv with
// a kernel larger than 1x1 (ResNet-50's 7x7 stride-2 stem and its three 3x3 stride-2 convs)
// runs as a direct conv over the input's stride phase planes with the output pixels flattened
// (dense/phase_template.h), on the direct path's tiles and packed weights. Work items: (image,
// run of flattened output pixels); each lays out the planes of the input rows its pixels read
// and computes every output channel of them, so threads split the image spatially (a thread
// reads mostly what it wrote in the layer before) and never the output channels.
#include <algorithm>

#include "../common/threadpool.h"
#include "dense_layer.h"
#include "geometry.h"

namespace spe {
namespace {

// A band's planes: up to 2 MiB (whole images up to 256 channels at 28x28 at one thread), so
// that the weights are streamed once: 512 KiB bands cost 10% at 512x512 3x3/2 at 14x14.
constexpr int64_t kPhaseBandFloats = int64_t(1) << 19;

int64_t phase_wq(const spe_conv_params& p, int64_t wo) {
  return wo + int64_t(p.kw - 1) * p.dil_w / p.stride_w;
}

}  // namespace

bool phase_fits(const spe_conv_params& p) {
  return (p.stride_h > 1 || p.stride_w > 1) && (p.kh > 1 || p.kw > 1);
}

bool use_phase(const spe_dense_conv* c, int h, int w) {
  if (c->winograd || c->conv_w.empty()) return false;
  if (c->path == spe_dense_conv::kPhase) return true;
  if (c->path != spe_dense_conv::kAuto || c->forced_tile >= 0 || !phase_fits(c->p)) return false;
  // "gemm": a strided conv past 1x1 the direct path does not take, with an output of 64 pixels
  // or more. Below, its runs are under 4 vectors a band and the weights' stream dominates: the
  // gathered pointwise path (im2col of all K, then the pointwise tiles and remainder kernel)
  // does better. Zen 4, AVX-512, 1 thread, GFLOP/s, phase / gathered pointwise / packed GEMM:
  // 128x128 3x3/2 at 56: 100 / 86 / 75; 256x256 at 28: 92 / 92 / 65; 512x512 at 14 (7x7
  // out): 82 / 90 / 57.
  const auto& p = c->p;
  return out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h) * out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w) >= 64;
}

spe_status phase_run(const spe_dense_conv* c, const float* x, int n, int h, int w,
                     const float* res, float* y) {
  const auto& p = c->p;
  const int64_t ho = out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h);
  const int64_t wo = out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w);
  const int64_t wq = phase_wq(p, wo), nq = ho * wq, W = c->k->width;
  const int64_t tile_px = c->k->conv_pixels[c->conv_tile];
  const int64_t in_img = int64_t(p.in_channels) * h * w, out_img = int64_t(p.out_channels) * ho * wo;
  auto& pool = ThreadPool::global();
  const int64_t T = pool.num_threads();
  // runs of whole vectors: as many output rows as the band's planes allow, at least one per
  // thread, their count a multiple of the threads (equal shares: whole vectors cost alike)
  const int64_t nvec = (nq + W - 1) / W;
  const int64_t row_floats = int64_t(p.in_channels) * p.stride_h * p.stride_w * wq;
  const int64_t halo = int64_t(p.kh - 1) * p.dil_h / p.stride_h;
  const int64_t rows = std::max<int64_t>(1, kPhaseBandFloats / row_floats - halo);
  int64_t items = std::max<int64_t>(1, (nvec + rows * wq / W - 1) / std::max<int64_t>(1, rows * wq / W));
  if (T > 1) items = (std::max(items, T / std::max(1, n)) + T - 1) / T * T;
  const int64_t n_bands = std::min(items, nvec);
  // bands of whole vectors, in equal thread shares first (14 vectors in 4 bands: 4 + 3 and
  // 4 + 3, not 4 + 4 and 4 + 2), the last vector cut at nq
  auto band_begin = [&](int64_t i) {
    const int64_t sh = n_bands % T == 0 ? T : 1, m = n_bands / sh, t = i / m;
    const int64_t b0 = nvec / sh * t + std::min(t, nvec % sh);
    const int64_t b1 = nvec / sh * (t + 1) + std::min(t + 1, nvec % sh);
    return std::min(nq, (b0 + (b1 - b0) / m * (i % m) + std::min(i % m, (b1 - b0) % m)) * W);
  };
  int64_t band = 0;
  for (int64_t i = 0; i < n_bands; ++i) band = std::max(band, band_begin(i + 1) - band_begin(i));
  const int64_t floats = phase_scratch_floats(p, band, wq, tile_px);
  const PhaseFn fn = c->k->phase_fn[c->conv_tile];
  pool.parallel_for(int64_t(n) * n_bands, 1, [&](int64_t ib, int64_t ie) {
    const float** taps = conv_taps(c->K);
    float* scratch = thread_buffer(0, floats);
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / n_bands, q0 = band_begin(it % n_bands), q1 = band_begin(it % n_bands + 1);
      PhaseArgs a{{&p, x + b * in_img, h, w, ho, wo, q0 / wq, (q1 - 1) / wq + 1, c->conv_w.data(),
                   c->bias.empty() ? nullptr : c->bias.data(), res ? res + b * out_img : nullptr,
                   y + b * out_img, c->act, scratch, taps},
                  wq, c->K, q0, q1};
      fn(a);
    }
  });
  return SPE_OK;
}

}  // namespace spe
