// The packed dense conv layer: implicit GEMM over the dense GEMM microkernels (dense/), and the
// C API of spe_dense_conv (spe.h).
//
// y (O x P, P = Ho*Wo, per image) = W (O x K, K = C*kh*kw) * im2col(x) (K x P). The weight is
// packed once into panels of the ISA's tallest tile (no index stream, no zero skipping). The
// input is never expanded as a whole: each work item (image, block of ~256 output pixels, block
// of output channels) packs the K x pixels panel it needs, KC rows at a time, straight from the
// NCHW input, with strides, padding and dilation resolved while gathering (a stride-2 1x1 conv
// needs no separate pass), into a buffer that stays in L2, and runs the microkernels over it:
// for each row tile, for each pixel tile, one call over the KC rows (the weight tile's KC x R
// floats stay in L1 across the pixel tiles). Partial sums over K blocks live in y; the last
// block adds the residual and applies the activation. A flat conv (1x1, stride 1, no padding)
// takes the pointwise path (dense_pointwise.cc) instead: the input read in place, no K blocks.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "../common/error.h"
#include "../common/threadpool.h"
#include "../isa/isa.h"
#include "dense_layer.h"
#include "geometry.h"

using spe::fail;

namespace spe {

float* ThreadBuffer::get(int64_t floats) {
  if (floats > n_) {
    const size_t bytes = ((size_t(floats) * sizeof(float) + 63) / 64) * 64;
    float* q = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!q) throw std::bad_alloc();
    p_.reset(q);
    n_ = floats;
  }
  return p_.get();
}

float* thread_buffer(int slot, int64_t floats) {
  static thread_local ThreadBuffer bufs[2];
  return bufs[slot].get(floats);
}

int pick_tile(const spe_dense_conv* c, int64_t P) {
  if (c->forced_tile >= 0) return c->forced_tile;
  const DenseKernels* k = c->k;
  const int64_t O = c->p.out_channels;
  int best = 0;
  double best_cost = std::numeric_limits<double>::infinity();
  for (int t = 0; t < k->n_tiles; ++t) {
    const int64_t R = k->rows[t], NR = k->pixels[t];
    const double cost = double((O + R - 1) / R * R) * double((P + NR - 1) / NR * NR);
    if (cost < best_cost * 0.97) best = t, best_cost = cost;  // ties: the wider, listed first
  }
  return best;
}

Geo make_geo(const spe_conv_params& p, int h, int w) {
  Geo g{h, w, out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h),
        out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w), 0, false};
  g.P = g.ho * g.wo;
  g.flat = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 &&
           p.pad_w == 0;
  if (g.flat) g.h = g.ho = 1, g.w = g.wo = g.P;
  return g;
}

namespace {
constexpr int64_t kPackAheadChannels = 4;
inline void zero_floats(float* d, int64_t n) {  // short runs, mostly none: no memset call
  for (int64_t i = 0; i < n; ++i) d[i] = 0.0f;
}
}  // namespace

// Walks the runs of a row of im2col(x) (one output row's pixels within one panel) without a
// division per run: the runs are short (14..112 pixels) and there is one per (k, output row),
// so their bookkeeping, not the copy, was most of the gather (~0.7 ns a float at 28x28).
void pack_input(const DenseKernels* dk, const spe_conv_params& p, const Geo& g, const float* x,
                int64_t k0, int64_t kc, int64_t p0, int64_t np, int NR, float* buf) {
  const int KK = p.kh * p.kw;
  const int64_t n_panels = (np + NR - 1) / NR, tail = n_panels * NR - np, sw = p.stride_w;
  const int64_t oy0 = p0 / g.wo, ox0 = p0 - oy0 * g.wo;
  for (int64_t k = k0; k < k0 + kc; ++k) {
    const int64_t c = k / KK, t = k % KK, ky = t / p.kw, kx = t % p.kw;
    const float* xc = x + c * g.h * g.w;
    float* row = buf + (k - k0) * NR;
    // the same rows kPackAheadChannels channels on (x is read from L3 or DRAM, a short run
    // of rows per channel: the hardware prefetcher barely starts on it)
    const int64_t ahead = c + kPackAheadChannels < p.in_channels ? kPackAheadChannels * g.h * g.w : 0;
    if (tail) zero_floats(row + (n_panels - 1) * kc * NR + (NR - tail), tail);
    // output columns [oxa, oxb) read the image: ix = ox * sw + off in [0, w)
    const int64_t off = kx * p.dil_w - p.pad_w;
    const int64_t oxa = std::min(g.wo, off >= 0 ? 0 : (-off + sw - 1) / sw);
    const int64_t oxb = std::max(oxa, std::min(g.wo, off >= g.w ? 0 : (g.w - 1 - off) / sw + 1));
    int64_t oy = oy0, ox = ox0, panel = 0, dp = 0;  // dp: the run's first pixel in its panel
    for (int64_t d = 0; d < np;) {
      const int64_t len = std::min({g.wo - ox, np - d, NR - dp});
      float* dst = row + panel * kc * NR + dp;
      const int64_t iy = oy * p.stride_h - p.pad_h + ky * p.dil_h;
      if (iy < 0 || iy >= g.h) {
        zero_floats(dst, len);
      } else {
        const int64_t ia = std::clamp<int64_t>(oxa - ox, 0, len);
        const int64_t ib = std::clamp<int64_t>(oxb - ox, ia, len);
        zero_floats(dst, ia);
        const float* src = xc + iy * g.w + (ox + ia) * sw + off;
        if (ahead && kx == 0) {
          const char* q = reinterpret_cast<const char*>(src + ahead);
          for (int64_t b = 0; b < (ib - ia) * sw * 4 + 64; b += 64) __builtin_prefetch(q + b, 0, 3);
        }
        if (ib > ia) dk->strided_row(src, sw, dst + ia, ib - ia);
        zero_floats(dst + ib, len - ib);
      }
      d += len, dp += len, ox += len;
      if (dp == NR) dp = 0, ++panel;
      if (ox == g.wo) ox = 0, ++oy;
    }
  }
}

namespace {

constexpr int64_t kKc = 256;          // K rows a block: a KC x R weight tile fits L1
constexpr int64_t kBlockPixels = 256; // pixels a work item packs: KC x 256 floats stay in L2
constexpr int64_t kMaxMc = 256;       // output rows a work item

spe_status check_input(const spe_conv_params& p, int n, int h, int w) {
  const int64_t ho = out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h);
  const int64_t wo = out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w);
  if (n < 0 || h <= 0 || w <= 0 || ho <= 0 || wo <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "input " + std::to_string(h) + "x" + std::to_string(w) +
                                              " too small for the kernel/padding (or n < 0)");
  return SPE_OK;
}

spe_status run_gemm(const spe_dense_conv* c, const float* x, int n, int h, int w,
                    const float* res, float* y) {
  const auto& p = c->p;
  const Geo g = make_geo(p, h, w);
  const DenseKernels* k = c->k;
  const int t = pick_tile(c, g.P);
  const int R = k->rows[t], NR = k->pixels[t], PR = k->panel;
  const GemmFn fn = k->fn[t];
  const int64_t O = p.out_channels, K = c->K, P = g.P;
  const int64_t n_kb = (K + kKc - 1) / kKc, kc_max = (K + n_kb - 1) / n_kb;
  const int64_t nc = std::max<int64_t>(1, kBlockPixels / NR) * NR;
  const int64_t n_pb = (P + nc - 1) / nc;
  auto& pool = ThreadPool::global();
  // output-channel blocks: at most kMaxMc rows, and enough items for every thread
  const int64_t panels = (O + PR - 1) / PR;
  int64_t mc_panels = std::max<int64_t>(1, kMaxMc / PR);
  while (mc_panels > 1 && n * n_pb * ((panels + mc_panels - 1) / mc_panels) < 2 * pool.num_threads())
    mc_panels = (mc_panels + 1) / 2;
  const int64_t n_mb = (panels + mc_panels - 1) / mc_panels;
  const int64_t in_img = int64_t(p.in_channels) * h * w, out_img = O * P;
  pool.parallel_for(int64_t(n) * n_pb * n_mb, 1, [&](int64_t ib, int64_t ie) {
    float* buf = thread_buffer(0, kc_max * nc);
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / (n_pb * n_mb), pb = it / n_mb % n_pb, mb = it % n_mb;
      const int64_t p0 = pb * nc, np = std::min(nc, P - p0);
      const int64_t o0 = mb * mc_panels * PR, o1 = std::min(O, o0 + mc_panels * PR);
      GemmArgs a{};
      a.a_stride = PR;
      a.y_row_stride = P;
      a.res_row_stride = P;
      a.act = c->act;
      for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
        const int64_t kc = std::min(kc_max, K - k0);
        pack_input(k, p, g, x + b * in_img, k0, kc, p0, np, NR, buf);
        a.kc = kc;
        a.first = k0 == 0;
        a.last = k0 + kc == K;
        for (int64_t r0 = o0; r0 < o1; r0 += R) {
          a.a = c->w.data() + (r0 / PR * K + k0) * PR + r0 % PR;
          a.rows = int(std::min<int64_t>(R, o1 - r0));
          a.bias = c->bias.empty() ? nullptr : c->bias.data() + r0;
          for (int64_t j = 0; j < np; j += NR) {
            a.b = buf + j * kc;
            a.npix = int(std::min<int64_t>(NR, np - j));
            a.y = y + b * out_img + r0 * P + p0 + j;
            a.res = res ? res + b * out_img + r0 * P + p0 + j : nullptr;
            fn(a);
          }
        }
      }
    }
  });
  return SPE_OK;
}

// Packs the (O, K) weight into panels of PR rows: w[(r / PR) * K * PR + k * PR + r % PR].
void pack_weight(spe_dense_conv* c, const float* weight) {
  const int64_t O = c->p.out_channels, K = c->K, PR = c->k->panel;
  const int64_t panels = (O + PR - 1) / PR;
  c->w.assign(size_t(panels * K * PR), 0.0f);
  for (int64_t r = 0; r < O; ++r)
    for (int64_t k = 0; k < K; ++k) c->w[size_t((r / PR * K + k) * PR + r % PR)] = weight[r * K + k];
}

// The ISA table and the forced tile for the C API's isa and algo; SPE_OK or the reason.
spe_status pick_kernels(spe_dense_conv* c, const char* isa, const char* algo) {
  Isa i;
  if (!parse_isa(isa ? isa : "auto", &i) || !isa_runs(i) || !dense_kernels(i))
    return fail(SPE_ERR_UNSUPPORTED_ISA,
                std::string("ISA not available on this CPU/build: ") + (isa ? isa : "null"));
  c->k = dense_kernels(i);
  const std::string a = algo ? algo : "gemm";
  if (a == "gemm") return SPE_OK;
  if (a == "gemm-packed" || a == "gemm-pointwise" || a == "gemm-direct" || a == "gemm-phase") {
    c->path = a == "gemm-packed"      ? spe_dense_conv::kPacked
              : a == "gemm-pointwise" ? spe_dense_conv::kPointwise
              : a == "gemm-direct"    ? spe_dense_conv::kDirect
                                      : spe_dense_conv::kPhase;
    return SPE_OK;
  }
  if (a == "winograd" || a == "winograd-f4" || a == "winograd-f2") {
    c->winograd = true;
    c->wino_m = a == "winograd" ? 0 : a == "winograd-f4" ? 4 : 2;
    return SPE_OK;
  }
  for (int t = 0; t < c->k->n_tiles; ++t)
    if (a == c->k->name[t]) {
      c->forced_tile = t;
      return SPE_OK;
    }
  for (int t = 0; t < c->k->n_conv; ++t)
    if (a == c->k->conv_name[t]) {
      c->path = spe_dense_conv::kDirect;
      c->conv_tile = t;
      return SPE_OK;
    }
  return fail(SPE_ERR_INVALID_ARGUMENT, "unknown algo '" + a + "' (gemm, gemm-packed, "
                                            "gemm-pointwise, gemm-direct, gemm-phase, winograd, winograd-f4, "
                                            "winograd-f2, or a " +
                                            c->k->isa + " f32_gemm / f32_conv kernel name)");
}

spe_status create_layer(const spe_conv_params* params, const float* weight, const float* bias,
                        spe_activation act, const char* isa, const char* algo,
                        spe_dense_conv** out) {
  if (!params || !out || !weight) return fail(SPE_ERR_INVALID_ARGUMENT, "null params/weight/out");
  *out = nullptr;
  const spe_conv_params& p = *params;
  if (p.out_channels <= 0 || p.in_channels <= 0 || p.kh <= 0 || p.kw <= 0 || p.stride_h <= 0 ||
      p.stride_w <= 0 || p.pad_h < 0 || p.pad_w < 0 || p.dil_h <= 0 || p.dil_w <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "invalid conv params (channels, kernel, stride, pad, dilation)");
  if (p.kh > 64 || p.kw > 64 || p.dil_h > 64 || p.dil_w > 64 || p.stride_h > 64 || p.stride_w > 64)
    return fail(SPE_ERR_INVALID_ARGUMENT, "kernel size, stride or dilation too large (max 64)");
  if (p.pad_h > 65536 || p.pad_w > 65536) return fail(SPE_ERR_INVALID_ARGUMENT, "padding too large (max 65536)");
  if (act < SPE_ACT_NONE || act > SPE_ACT_LAST_) return fail(SPE_ERR_INVALID_ARGUMENT, "unknown activation");
  auto c = std::make_unique<spe_dense_conv>();
  c->p = p;
  c->act = act;
  if (const spe_status s = pick_kernels(c.get(), isa, algo); s != SPE_OK) return s;
  if (c->winograd) {
    if (p.kh != 3 || p.kw != 3 || p.stride_h != 1 || p.stride_w != 1 || p.dil_h != 1 || p.dil_w != 1)
      return fail(SPE_ERR_INVALID_ARGUMENT, "winograd needs a 3x3 kernel at stride 1, dilation 1");
    c->K = p.in_channels;
    winograd_pack(c.get(), weight);
  } else {
    c->K = int64_t(p.in_channels) * p.kh * p.kw;
    pack_weight(c.get(), weight);
    direct_pack(c.get(), weight);
  }
  if (bias) c->bias.assign(bias, bias + p.out_channels);
  *out = c.release();
  return SPE_OK;
}

spe_status run_layer(const spe_dense_conv* c, const float* x, int32_t n, int32_t h, int32_t w,
                     const float* res, float* y) {
  if (!c || !x || !y) return fail(SPE_ERR_INVALID_ARGUMENT, "null conv/x/y");
  if (const spe_status s = check_input(c->p, n, h, w); s != SPE_OK) return s;
  if (n == 0) return SPE_OK;
  if (c->winograd) return winograd_run(c, x, n, h, w, res, y);
  if (use_direct(c, w)) return direct_run(c, x, n, h, w, res, y);
  if (use_phase(c, h, w)) return phase_run(c, x, n, h, w, res, y);
  return use_pointwise(c, h, w) ? pointwise_run(c, x, n, h, w, res, y) : run_gemm(c, x, n, h, w, res, y);
}

}  // namespace
}  // namespace spe

extern "C" {

spe_status spe_dense_conv_create(const spe_conv_params* params, const float* weight,
                                 const float* bias, spe_activation act, const char* isa,
                                 const char* algo, spe_dense_conv** out) {
  return spe::guarded("spe_dense_conv_create", [&] {
    return spe::create_layer(params, weight, bias, act, isa, algo, out);
  });
}

spe_status spe_dense_conv_run(spe_dense_conv* c, const float* x, int32_t n, int32_t h,
                              int32_t w, const float* residual, float* y) {
  return spe::guarded("spe_dense_conv_run",
                      [&] { return spe::run_layer(c, x, n, h, w, residual, y); });
}

void spe_dense_conv_output_size(const spe_dense_conv* c, int32_t h, int32_t w, int32_t* ho,
                                int32_t* wo) {
  spe::conv_output_size(c ? &c->p : nullptr, h, w, ho, wo);
}

const char* spe_dense_conv_kernel_name(const spe_dense_conv* c, int32_t h, int32_t w) {
  if (!c || h <= 0 || w <= 0) return "";
  int32_t ho = 0, wo = 0;
  spe::conv_output_size(&c->p, h, w, &ho, &wo);
  if (ho <= 0 || wo <= 0) return "";
  if (spe::use_direct(c, w) || spe::use_phase(c, h, w)) return c->k->conv_name[c->conv_tile];
  if (c->winograd) return c->k->name[spe::winograd_tile(c, ho, wo)];
  const bool pointwise = spe::use_pointwise(c, h, w);
  if (pointwise && int64_t(ho) * wo == 1 && spe::make_geo(c->p, h, w).flat) return c->k->gemv_name;
  return c->k->name[pointwise ? 0 : spe::pick_tile(c, int64_t(ho) * wo)];
}

int spe_dense_conv_is_winograd(const spe_dense_conv* c) { return c && c->winograd ? 1 : 0; }

void spe_dense_conv_destroy(spe_dense_conv* c) { delete c; }

}  // extern "C"
