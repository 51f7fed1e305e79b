// The pointwise path of the packed dense conv (spe_dense_conv, dense_layer.h): a 1x1 stride-1
// unpadded conv, whose im2col(x) is x itself, run on the dense GEMM microkernels' direct
// variants and remainder kernel (dense/dense.h) with the NCHW input read in place.
#include <algorithm>
#include <cstdint>

#include "../common/threadpool.h"
#include "dense_layer.h"

namespace spe {
namespace {

// The first listed tile's direct variants read x in place (rows of P floats, no packing, all of
// K in registers at once) and the remainder kernel takes the pixels past the last whole vector
// (see dense.h). Work items: (image, block of output rows, band of pixel tiles); in an item, for each row
// tile of the block, every pixel tile of the band: the band's input (<= kPointwiseBandFloats)
// stays in L2 across the row tiles, and each row tile writes its rows as sequential streams
// (96x16 at 112x112: 80 GFLOP/s this way, 73 with the pixel tiles outside). Threads
// split the rows when the weights outweigh the input (small images: each thread streams half
// the weights, both read the small input), else the pixels.
constexpr int64_t kPointwiseBlockFloats = int64_t(1) << 16;  // 256 KiB of weights
constexpr int64_t kPointwiseBandFloats = int64_t(1) << 16;   // 256 KiB of input

struct PointwiseSplit { int64_t mc_panels, n_mb, band, n_pb; };

PointwiseSplit split_pointwise(int64_t O, int64_t K, int64_t P, int64_t PR, int64_t n_pt,
                               int64_t tile_px, int64_t n, int threads) {
  const int64_t panels = (O + PR - 1) / PR;
  PointwiseSplit s{std::clamp<int64_t>(kPointwiseBlockFloats / (K * PR), 1, panels), 0,
                   std::clamp<int64_t>(kPointwiseBandFloats / (K * tile_px), 1, n_pt), 1};
  s.n_mb = (panels + s.mc_panels - 1) / s.mc_panels;
  s.n_pb = (n_pt + s.band - 1) / s.band;
  // few items: make their count a multiple of the threads (each thread the same work)
  const int64_t T = threads;
  if (T > 1 && n * s.n_mb * s.n_pb < 4 * T) {
    if (panels >= T && (O >= P || n_pt < T)) {
      const int64_t want = std::min(panels, (s.n_mb + T - 1) / T * T);
      s.mc_panels = (panels + want - 1) / want;
      s.n_mb = (panels + s.mc_panels - 1) / s.mc_panels;
    } else {
      const int64_t want = std::min(n_pt, (s.n_pb + T - 1) / T * T);
      s.band = (n_pt + want - 1) / want;
      s.n_pb = (n_pt + s.band - 1) / s.band;
    }
  }
  return s;
}

}  // namespace

spe_status pointwise_run(const spe_dense_conv* c, const float* x, int n, int h, int w,
                         const float* res, float* y) {
  const DenseKernels* k = c->k;
  const int W = k->width, R = k->rows[0], NV = k->pixels[0] / W, PR = k->panel;
  const int64_t O = c->p.out_channels, K = c->K, P = int64_t(h) * w;
  const int64_t nvec = P / W, rem = P % W, n_pt = std::max<int64_t>(1, (nvec + NV - 1) / NV);
  auto& pool = ThreadPool::global();
  const PointwiseSplit s = split_pointwise(O, K, P, PR, n_pt, NV * W, n, pool.num_threads());
  const int np_max = rem ? k->cols_panels[rem - 1] : 1;
  pool.parallel_for(int64_t(n) * s.n_pb * s.n_mb, 1, [&](int64_t ib, int64_t ie) {
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / (s.n_pb * s.n_mb), pb = it / s.n_mb % s.n_pb, mb = it % s.n_mb;
      const int64_t o0 = mb * s.mc_panels * PR, o1 = std::min(O, o0 + s.mc_panels * PR);
      const float* xb = x + b * K * P;
      float* yb = y + b * O * P;
      const float* rb = res ? res + b * O * P : nullptr;
      GemmArgs a{};
      a.a_stride = PR;
      a.a_panel = K * PR;
      a.b_stride = P;
      a.kc = K;
      a.y_row_stride = a.res_row_stride = P;
      a.act = c->act;
      a.first = a.last = true;
      auto at = [&](int64_t r0, int64_t p0) {  // the tile at (row r0, pixel p0)
        a.a = c->w.data() + r0 / PR * K * PR + r0 % PR;
        a.b = xb + p0;
        a.y = yb + r0 * P + p0;
        a.res = rb ? rb + r0 * P + p0 : nullptr;
        a.bias = c->bias.empty() ? nullptr : c->bias.data() + r0;
      };
      const int64_t pt0 = pb * s.band, pt1 = std::min(n_pt, pt0 + s.band);
      for (int64_t r0 = o0; r0 < o1; r0 += R) {
        a.rows = int(std::min<int64_t>(R, o1 - r0));
        for (int64_t pt = pt0; pt < pt1; ++pt) {
          const int64_t v0 = pt * NV, nv = std::min<int64_t>(NV, nvec - v0);
          if (nv <= 0) break;
          a.npix = int(nv * W);
          a.prefetch = pt == pt0;  // the row tile's weights come from DRAM in a full model
          at(r0, v0 * W);
          k->direct[a.rows - 1][nv - 1](a);
        }
      }
      if (rem && pb == s.n_pb - 1) {  // the pixels past the last whole vector
        a.npix = int(rem);
        for (int64_t r0 = o0; r0 < o1;) {
          const int64_t left = (o1 - r0 + PR - 1) / PR;
          const int np = left >= np_max ? np_max : 1;
          at(r0, nvec * W);
          a.rows = int(std::min<int64_t>(np * PR, o1 - r0));
          k->cols[np - 1][rem - 1](a);
          r0 += np * PR;
        }
      }
    }
  });
  return SPE_OK;
}

bool use_pointwise(const spe_dense_conv* c) {
  const auto& p = c->p;
  const bool flat = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 &&
                    p.pad_h == 0 && p.pad_w == 0;
  return flat && c->path != spe_dense_conv::kPacked && c->forced_tile < 0;
}

}  // namespace spe
