// The pointwise path of the packed dense conv (spe_dense_conv, dense_layer.h): a 1x1 stride-1
// unpadded conv, whose im2col(x) is x itself, run on the dense GEMM microkernels' direct
// variants and remainder kernel (dense/dense.h) with the NCHW input read in place; at one
// pixel (a batch-1 linear layer) on the GEMV (dense.h's gemv).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <numeric>

#include "../common/split.h"
#include "../common/threadpool.h"
#include "dense_layer.h"

namespace spe {
namespace {

// The first listed tile's direct variants read x in place (rows of P floats, no packing, all of
// K in registers at once) and the remainder kernel takes the pixels past the last whole vector
// (see dense.h). Work items: (image, band of pixels, block of output rows); in an item, for
// each row tile of the block, every pixel tile of the band: the band's input (about
// kPointwiseBandFloats) stays in L2 across the row tiles, and each row tile writes its rows as
// sequential streams (96x16 at 112x112: 80 GFLOP/s this way, 73 with the pixel tiles outside).
// Threads split the rows when the weights outweigh the input (small images: each thread streams
// its part of the weights, all read the small input), else the pixels. The item count is a
// multiple of the threads and the bands / blocks are near-equal runs of whole vectors / weight
// panels, so each thread gets the same work (at 7x7, 10 panels in blocks of 3 left one thread
// 6 and the other 4; at 28x28, 17 pixel tiles in bands of 9 left 27 vectors against 22), and
// the pool's thread t takes the t-th run of items: layer after layer, a thread keeps the same
// pixels (or output rows) where the split allows.
constexpr int64_t kPointwiseBlockFloats = int64_t(1) << 16;  // 256 KiB of weights
constexpr int64_t kPointwiseBandFloats = int64_t(1) << 16;   // 256 KiB of input

// blocks of weight panels and bands of pixel units: their counts, and sizes at one thread
struct PointwiseSplit { int64_t n_mb, n_pb, mc, band; };

// The same when the pool's T threads take parts / T consecutive parts each: the units are cut
// into T shares first, so that 10 panels in 4 parts give each thread 5 (3 + 2, 3 + 2), not 6
// and 4. One thread: parts of `size` units, the last one short (whole remainder-kernel calls).
int64_t share_begin(int64_t units, int64_t parts, int64_t size, int64_t T, int64_t i) {
  if (T <= 1) return std::min(units, i * size);
  if (parts % T != 0) return part_begin(units, parts, i);
  const int64_t m = parts / T, t = i / m, b = part_begin(units, T, t);
  return b + part_begin(part_begin(units, T, t + 1) - b, m, i % m);
}

// px_units: the runs of pixels bands are cut in (at least 1).
PointwiseSplit split_pointwise(int64_t O, int64_t K, int64_t P, int64_t PR, int64_t px_units,
                               int64_t unit_px, int64_t n, int threads) {
  const int64_t panels = (O + PR - 1) / PR;
  const int64_t mc = std::clamp<int64_t>(kPointwiseBlockFloats / (K * PR), 1, panels);
  const int64_t band = std::clamp<int64_t>(kPointwiseBandFloats / (K * unit_px), 1, px_units);
  PointwiseSplit s{(panels + mc - 1) / mc, (px_units + band - 1) / band, mc, band};
  const int64_t T = threads;
  if (T <= 1 || n * s.n_mb * s.n_pb % T == 0) return s;
  // round one count up so the items are a multiple of T: the rows where the weights dominate
  auto round_up = [&](int64_t count, int64_t other, int64_t cap) {
    const int64_t step = T / std::gcd(T, n * other);
    const int64_t want = (count + step - 1) / step * step;
    return want <= cap ? want : count;
  };
  if (panels >= T && (O >= P || px_units < T)) {
    s.n_mb = round_up(s.n_mb, s.n_pb, panels);
    if (n * s.n_mb * s.n_pb % T) s.n_pb = round_up(s.n_pb, s.n_mb, px_units);
  } else {
    s.n_pb = round_up(s.n_pb, s.n_mb, px_units);
    if (n * s.n_mb * s.n_pb % T) s.n_mb = round_up(s.n_mb, s.n_pb, panels);
  }
  return s;
}

// One pixel per image (a batch-1 linear): the GEMV, each thread streaming one contiguous run
// of weight panels (the pool's thread t takes item t: the same rows on every call).
spe_status gemv_run(const spe_dense_conv* c, const float* x, int n, const float* res, float* y) {
  const int PR = c->k->panel;
  const int64_t O = c->p.out_channels, K = c->K, panels = (O + PR - 1) / PR;
  auto& pool = ThreadPool::global();
  const int64_t T = std::clamp<int64_t>(pool.num_threads(), 1, panels);
  pool.parallel_for(int64_t(n) * T, 1, [&](int64_t ib, int64_t ie) {
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / T, t = it % T;
      const int64_t o0 = part_begin(panels, T, t) * PR;
      const int64_t o1 = std::min(O, part_begin(panels, T, t + 1) * PR);
      if (o1 <= o0) continue;
      GemmArgs a{};
      a.a = c->w.data() + o0 * K;
      a.a_panel = K * PR;
      a.b = x + b * K;
      a.b_stride = 1;
      a.kc = K;
      a.y = y + b * O + o0;
      a.res = res ? res + b * O + o0 : nullptr;
      a.bias = c->bias.empty() ? nullptr : c->bias.data() + o0;
      a.act = c->act;
      a.rows = int(o1 - o0);
      a.first = a.last = true;
      c->k->gemv(a);
    }
  });
  return SPE_OK;
}

// A run's id: a thread's gathered band is reused by its next item only within the same run.
uint64_t next_run_id() {
  static std::atomic<uint64_t> id{0};
  return ++id;
}

struct GatherKey {
  uint64_t run;
  int64_t image, band;
  bool operator==(const GatherKey& o) const { return run == o.run && image == o.image && band == o.band; }
};

// A conv that is not flat (a 1x1 with a stride: ResNet's downsampling shortcuts) reads
// im2col(x) gathered: rows [0, K) x pixels [p0, p0 + np) into this thread's buffer, rows
// `stride` floats apart. Items run band after band with the row blocks inside (mb fastest), so
// a band is gathered once per thread and run (and the gather is as parallel as the split).
const float* gathered(const DenseKernels* k, const spe_conv_params& p, const Geo& g,
                      const float* x, int64_t K, int64_t p0, int64_t np, int64_t stride,
                      const GatherKey& key) {
  static thread_local GatherKey held{0, -1, -1};
  float* buf = thread_buffer(1, K * stride);
  if (!(held == key)) {
    held = GatherKey{0, -1, -1};  // a throwing pack leaves nothing marked as held
    pack_input(k, p, g, x, 0, K, p0, np, int(stride), buf);
    held = key;
  }
  return buf;
}

}  // namespace

spe_status pointwise_run(const spe_dense_conv* c, const float* x, int n, int h, int w,
                         const float* res, float* y) {
  const DenseKernels* k = c->k;
  const int W = k->width, R = k->rows[0], NV = k->pixels[0] / W, PR = k->panel;
  const Geo g = make_geo(c->p, h, w);
  const int64_t O = c->p.out_channels, K = c->K, P = g.P, in_img = int64_t(c->p.in_channels) * h * w;
  if (P == 1 && g.flat) return gemv_run(c, x, n, res, y);
  auto& pool = ThreadPool::global();
  const int T = pool.num_threads();
  // Bands are runs of whole pixel tiles where each thread gets 32 or more (no partial tile
  // inside the image), else of vectors (28x28: 25 and 24 vectors, where tiles gave 27 and 22);
  // the last band also takes the remainder (at most 1/4 of a vector's work at 14x14).
  const int64_t nvec = P / W, rem = P % W;
  // A gathered small image (more output channels than pixels: 512x512 3x3/2 at 14x14, K =
  // 4608) is one band of whole tiles, the threads splitting the rows: bands of the budget's
  // size were 1 vector each at 2 threads (1-vector tiles, the 9 MB of weights streamed once a
  // band: 1.54x one thread).
  const bool one_band = !g.flat && O >= P;
  const int64_t unit = T == 1 || one_band || nvec >= 32 * NV * int64_t(T) ? NV : 1;
  const int64_t px_units = std::max<int64_t>(1, (nvec + unit - 1) / unit);
  const int64_t panels = (O + PR - 1) / PR;
  PointwiseSplit s = split_pointwise(O, K, P, PR, px_units, unit * W, n, T);
  if (one_band) {
    s.n_pb = 1, s.band = px_units;
    if (n * s.n_mb % T) s.n_mb = std::min(panels, (s.n_mb + T - 1) / T * T);
  }
  const int np_max = rem ? k->cols_panels[rem - 1] : 1;
  // a gathered run: a band's K x pixels of im2col(x) in rows of `gather_stride` floats
  int64_t band_max = 0;
  for (int64_t pb = 0; pb < s.n_pb && !g.flat; ++pb)
    band_max = std::max(band_max, (std::min(nvec, share_begin(px_units, s.n_pb, s.band, T, pb + 1) * unit) -
                                   std::min(nvec, share_begin(px_units, s.n_pb, s.band, T, pb) * unit)) * W + rem);
  const int64_t gather_stride = (band_max + 15) / 16 * 16;
  const uint64_t run_id = next_run_id();
  // One band (small images: the threads split the output rows): gathered once for all threads,
  // each gathering a share of K, rather than each thread all of it (512x512 3x3/2 at 14x14, 2
  // threads: 1.59x one thread with a gather each)
  const float* whole = nullptr;
  if (!g.flat && s.n_pb == 1 && T > 1) {
    float* buf = thread_buffer(1, n * K * gather_stride);
    pool.parallel_for(n * K, 1, [&](int64_t kb, int64_t ke) {
      for (int64_t i = kb; i < ke;) {  // rows of one image at a time
        const int64_t b = i / K, k0 = i % K, kc = std::min(ke - i, K - k0);
        pack_input(k, c->p, g, x + b * in_img, k0, kc, 0, P, int(gather_stride),
                   buf + (b * K + k0) * gather_stride);
        i += kc;
      }
    });
    whole = buf;
  }
  pool.parallel_for(int64_t(n) * s.n_pb * s.n_mb, 1, [&](int64_t ib, int64_t ie) {
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / (s.n_pb * s.n_mb), pb = it / s.n_mb % s.n_pb, mb = it % s.n_mb;
      const int64_t o0 = share_begin(panels, s.n_mb, s.mc, T, mb) * PR;
      const int64_t o1 = std::min(O, share_begin(panels, s.n_mb, s.mc, T, mb + 1) * PR);
      const int64_t v0 = std::min(nvec, share_begin(px_units, s.n_pb, s.band, T, pb) * unit);
      const int64_t v1 = std::min(nvec, share_begin(px_units, s.n_pb, s.band, T, pb + 1) * unit);
      const bool has_rem = rem && pb == s.n_pb - 1;
      const float* xb = g.flat  ? x + b * K * P
                        : whole ? whole + b * K * gather_stride
                                : gathered(k, c->p, g, x + b * in_img, K, v0 * W,
                                           (v1 - v0) * W + (has_rem ? rem : 0), gather_stride,
                                           GatherKey{run_id, b, pb});
      const int64_t x0 = g.flat ? 0 : v0 * W;  // the image's pixel at xb[0]
      float* yb = y + b * O * P;
      const float* rb = res ? res + b * O * P : nullptr;
      GemmArgs a{};
      a.a_stride = PR;
      a.a_panel = K * PR;
      a.b_stride = g.flat ? P : gather_stride;
      a.kc = K;
      a.y_row_stride = a.res_row_stride = P;
      a.act = c->act;
      a.first = a.last = true;
      auto at = [&](int64_t r0, int64_t p0) {  // the tile at (row r0, pixel p0)
        a.a = c->w.data() + r0 / PR * K * PR + r0 % PR;
        a.b = xb + (p0 - x0);
        a.y = yb + r0 * P + p0;
        a.res = rb ? rb + r0 * P + p0 : nullptr;
        a.bias = c->bias.empty() ? nullptr : c->bias.data() + r0;
      };
      for (int64_t r0 = o0; r0 < o1; r0 += R) {
        a.rows = int(std::min<int64_t>(R, o1 - r0));
        for (int64_t v = v0; v < v1; v += NV) {
          const int64_t nv = std::min<int64_t>(NV, v1 - v);
          a.npix = int(nv * W);
          a.prefetch = v == v0;  // the row tile's weights come from DRAM in a full model
          at(r0, v * W);
          k->direct[a.rows - 1][nv - 1](a);
        }
      }
      if (has_rem) {  // the pixels past the last whole vector
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

bool use_pointwise(const spe_dense_conv* c, int h, int w) {
  if (c->path == spe_dense_conv::kPointwise) return true;
  if (c->path != spe_dense_conv::kAuto || c->forced_tile >= 0) return false;
  // every 1x1 conv: a strided one gathers its pixels (1x the output's pixels; 512x256 1x1/2 at
  // 56x56, Zen 4 1 thread: 108 GFLOP/s, 87 on the packed GEMM); and the strided convs past
  // 1x1 that the phase path leaves (small outputs, phase_conv.cc): im2col gathered
  return (c->p.kh == 1 && c->p.kw == 1) || (phase_fits(c->p) && !use_phase(c, h, w));
}

}  // namespace spe
