// A depthwise conv layer (spe.h): validation, kernel choice, and the parallel loop over
// (batch, channel, block of output rows) work items; the plane kernels are in src/dwconv/.
//
// Rows are split into blocks only when there are too few planes to keep every thread busy
// (a block re-copies the few input rows it shares with its neighbour). Each thread keeps its
// row buffers in thread-local scratch, so a layer holds no mutable state and needs no lock (and
// nothing a fork could leave locked).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "../common/error.h"
#include "geometry.h"
#include "../common/threadpool.h"
#include "../dwconv/dwconv.h"
#include "../isa/isa.h"
#include "../spmm/spmm.h"
#include "spe/spe.h"

using spe::fail;

struct spe_depthwise_conv {
  spe_conv_params p{};
  std::vector<float> weight;  // (C, kh, kw)
  std::vector<float> bias;    // C, or empty
  int act = 0;       // the activation the plane kernels apply (none, ReLU, ReLU6, hardswish, SiLU)
  int post_act = 0;  // GELU / GELU-tanh: a pass over the output after them (post_activation)
  spe::ActRowFn act_row = nullptr;
  spe::DwPlaneFn fn = nullptr;
  spe::DwPlanesFn flat = nullptr;  // the kernel's flat method, or null
  std::string name;
};

namespace spe {
namespace {

// The plane kernels index rows, columns and row buffers with int: padded input dimensions and
// row buffers stay below 2^28 floats, far from overflowing any of their products.
constexpr int64_t kMaxDim = int64_t(1) << 28;

spe_status create_layer(const spe_conv_params* params, const float* weight, const float* bias,
                        spe_activation act, const char* isa, spe_depthwise_conv** out) {
  if (!params || !out) return fail(SPE_ERR_INVALID_ARGUMENT, "null params/out");
  if (!weight) return fail(SPE_ERR_INVALID_ARGUMENT, "null weight");
  const spe_conv_params& p = *params;
  if (p.out_channels <= 0 || p.in_channels <= 0 || p.kh <= 0 || p.kw <= 0 || p.stride_h <= 0 ||
      p.stride_w <= 0 || p.pad_h < 0 || p.pad_w < 0 || p.dil_h <= 0 || p.dil_w <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "invalid conv params (channels, kernel, stride, pad, dilation)");
  if (p.out_channels != p.in_channels)
    return fail(SPE_ERR_INVALID_ARGUMENT,
                "depthwise conv needs out_channels == in_channels, got " +
                    std::to_string(p.out_channels) + " and " + std::to_string(p.in_channels));
  if (p.kh > 64 || p.kw > 64 || p.dil_h > 64 || p.dil_w > 64)
    return fail(SPE_ERR_INVALID_ARGUMENT, "kernel size or dilation too large (max 64)");
  if (p.stride_h > 64 || p.stride_w > 64)
    return fail(SPE_ERR_INVALID_ARGUMENT, "stride too large (max 64 per dimension)");
  if (p.pad_h > 65536 || p.pad_w > 65536)
    return fail(SPE_ERR_INVALID_ARGUMENT, "padding too large (max 65536 per side)");
  if (act < SPE_ACT_NONE || act > SPE_ACT_LAST_) return fail(SPE_ERR_INVALID_ARGUMENT, "unknown activation");
  Isa which;
  if (!parse_isa(isa, &which) || !isa_runs(which))
    return fail(SPE_ERR_UNSUPPORTED_ISA, std::string("ISA not available on this CPU/build: ") + (isa ? isa : "null"));
  const DwKernels* k = dw_kernels(which);
  if (!k) return fail(SPE_ERR_UNSUPPORTED_ISA, std::string("no depthwise kernels for ISA ") + isa_name(which));

  auto c = std::make_unique<spe_depthwise_conv>();
  c->p = p;
  c->act = act;
  if (act == SPE_ACT_GELU || act == SPE_ACT_GELU_TANH) {
    // Not in the plane kernels' epilogues: two more instantiations of every plane and flat
    // kernel doubled their compile time (a depthwise conv followed by GELU is rare).
    const SpmmKernels* sk = spmm_kernels(which);
    if (!sk) return fail(SPE_ERR_UNSUPPORTED_ISA, std::string("no SpMM table for ISA ") + isa_name(which));
    c->act = SPE_ACT_NONE;
    c->post_act = act;
    c->act_row = sk->act_row;
  }
  const int64_t nw = int64_t(p.out_channels) * p.kh * p.kw;
  c->weight.assign(weight, weight + nw);
  if (bias) c->bias.assign(bias, bias + p.out_channels);
  c->fn = k->generic;
  c->name = k->generic_name;
  for (int i = 0; i < k->n_special; ++i) {  // a listed kernel for exactly this geometry
    const DwSpecialised& s = k->special[i];
    if (p.kh == s.k && p.kw == s.k && p.stride_h == s.s && p.stride_w == s.s && p.dil_h == 1 &&
        p.dil_w == 1) {
      c->fn = s.fn;
      c->flat = s.flat;
      c->name = s.name;
    }
  }
  *out = c.release();
  return SPE_OK;
}

// y = post_act(y) over `count` floats, in parallel runs of at most 2^20 (act_row takes an int).
void post_activation(const spe_depthwise_conv* c, float* y, int64_t count) {
  constexpr int64_t kRun = int64_t(1) << 20;
  const int64_t runs = (count + kRun - 1) / kRun;
  ThreadPool::global().parallel_for(runs, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* d = y + r * kRun;
      c->act_row(d, d, nullptr, int(std::min(kRun, count - r * kRun)), c->post_act);
    }
  });
}

spe_status run_planes(spe_depthwise_conv* c, const float* x, int32_t n, int32_t h, int32_t w,
                      const float* residual, float* y);

spe_status run_layer(spe_depthwise_conv* c, const float* x, int32_t n, int32_t h, int32_t w,
                     const float* residual, float* y) {
  const spe_status st = run_planes(c, x, n, h, w, residual, y);
  if (st == SPE_OK && c->post_act && n > 0) {
    const spe_conv_params& p = c->p;
    post_activation(c, y, int64_t(n) * p.out_channels * out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h) *
                              out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w));
  }
  return st;
}

spe_status run_planes(spe_depthwise_conv* c, const float* x, int32_t n, int32_t h, int32_t w,
                      const float* residual, float* y) {
  if (!c || !x || !y || n < 0) return fail(SPE_ERR_INVALID_ARGUMENT, "null conv/x/y or n < 0");
  const spe_conv_params& p = c->p;
  const int64_t oh = out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h);
  const int64_t ow = out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w);
  if (h <= 0 || w <= 0 || oh <= 0 || ow <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "input " + std::to_string(h) + "x" + std::to_string(w) +
                                              " too small for the kernel/padding");
  if (int64_t(h) + 2 * p.pad_h >= kMaxDim || int64_t(w) + 2 * p.pad_w >= kMaxDim)
    return fail(SPE_ERR_INVALID_ARGUMENT, "input " + std::to_string(h) + "x" + std::to_string(w) +
                                              " too large (padded height and width must stay below 2^28)");
  if (n == 0) return SPE_OK;
  const int ho = int(oh), wo = int(ow);
  DwGeom g{p.kh, p.kw, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w,
           h, w, ho, wo, 0, 0, 0};
  dw_layout(g);

  const int C = p.out_channels, K = p.kh * p.kw;
  const int64_t in_plane = int64_t(h) * w, out_plane = int64_t(ho) * wo;
  const int64_t planes = int64_t(n) * C;
  auto& pool = ThreadPool::global();
  const int threads = pool.num_threads();
  // Few planes (the 3-channel stem, batch 1 of a narrow layer): split their rows as well, so
  // every thread gets a few work items.
  int64_t nblk = 1;
  if (threads > 1 && planes < 4 * int64_t(threads))
    nblk = std::min<int64_t>(ho, (4 * int64_t(threads) + planes - 1) / planes);
  const int rb = int((ho + nblk - 1) / nblk);
  nblk = (ho + rb - 1) / rb;
  const int64_t items = planes * nblk;
  const int64_t grain = std::max<int64_t>(1, items / (int64_t(threads) * 8));
  if (c->flat && nblk == 1 && dw_flat_fits(g)) {
    const DwPlanesFn flat = c->flat;
    pool.parallel_for(planes, grain, [&](int64_t b, int64_t e) {
      flat(DwPlanesArgs{&g, x, c->weight.data(), c->bias.empty() ? nullptr : c->bias.data(),
                        residual, y, C, b, e, c->act});
    });
    return SPE_OK;
  }
  const int64_t scratch = g.scratch_floats();
  const float* bias = c->bias.empty() ? nullptr : c->bias.data();
  const DwPlaneFn fn = c->fn;

  // A thread that cannot get its row buffers throws std::bad_alloc: the pool hands it to this
  // thread, and the C API guard turns it into SPE_ERR_OUT_OF_MEMORY.
  pool.parallel_for(items, grain, [&](int64_t b, int64_t e) {
    // The row buffers' padding must be zero. The kernels write only the image columns of a
    // row layout (w, pw, sw, lp: the same columns of every row, zeros elsewhere), so scratch
    // zeroed for this layout stays valid for the next chunk and the next call of any layer
    // with it; it is zeroed again only when the layout changes or outgrows the zeroed part
    // (zeroing up to tens of KiB per chunk cost 5-10% of a 112x112 layer).
    thread_local std::vector<float> buf;
    thread_local int64_t zeroed = 0;  // floats zeroed for the layout `key`
    thread_local int key[4] = {0, 0, 0, 0};
    const int layout[4] = {g.w, g.pw, g.sw, g.lp};
    if (buf.size() < size_t(scratch) + 16) {
      buf.resize(size_t(scratch) + 16);
      zeroed = 0;
    }
    float* s = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) &
                                        ~uintptr_t(63));
    if (zeroed < scratch || !std::equal(layout, layout + 4, key)) {
      std::fill(s, s + scratch, 0.0f);
      zeroed = scratch;
      std::copy(layout, layout + 4, key);
    }
    DwPlaneArgs a{};
    a.g = &g;
    a.act = c->act;
    a.scratch = s;
    // input rows [r0, r1) of output rows [oy0, oy1)
    auto in_rows = [&](int oy0, int oy1, int* r0, int* r1) {
      *r0 = std::max(0, oy0 * p.stride_h - p.pad_h);
      *r1 = std::min(h, (oy1 - 1) * p.stride_h - p.pad_h + (p.kh - 1) * p.dil_h + 1);
    };
    for (int64_t it = b; it < e; ++it) {
      const int64_t pl = it / nblk;
      const int blk = int(it % nblk), ch = int(pl % C);
      a.x = x + pl * in_plane;
      a.w = c->weight.data() + int64_t(ch) * K;
      a.bias = bias ? bias[ch] : 0.0f;
      a.res = residual ? residual + pl * out_plane : nullptr;
      a.y = y + pl * out_plane;
      a.oy0 = blk * rb;
      a.oy1 = std::min(ho, a.oy0 + rb);
      a.prefetch = nullptr;
      if (it + 1 < e) {  // the next item is this thread's too
        const int64_t npl = (it + 1) / nblk;
        const int nb = int((it + 1) % nblk), noy0 = nb * rb, noy1 = std::min(ho, noy0 + rb);
        int r0, r1;
        in_rows(noy0, noy1, &r0, &r1);
        if (r1 > r0) {
          a.prefetch = x + npl * in_plane + int64_t(r0) * w;
          a.prefetch_floats = int64_t(r1 - r0) * w;
        }
      }
      fn(a);
    }
  });
  return SPE_OK;
}

}  // namespace
}  // namespace spe

extern "C" {

spe_status spe_depthwise_conv_create(const spe_conv_params* params, const float* weight,
                                     const float* bias, spe_activation act, const char* isa,
                                     spe_depthwise_conv** out) {
  return spe::guarded("spe_depthwise_conv_create", [&] {
    return spe::create_layer(params, weight, bias, act, isa, out);
  });
}

spe_status spe_depthwise_conv_run(spe_depthwise_conv* c, const float* x, int32_t n, int32_t h,
                                  int32_t w, const float* residual, float* y) {
  return spe::guarded("spe_depthwise_conv_run",
                      [&] { return spe::run_layer(c, x, n, h, w, residual, y); });
}

void spe_depthwise_conv_output_size(const spe_depthwise_conv* c, int32_t h, int32_t w,
                                    int32_t* ho, int32_t* wo) {
  spe::conv_output_size(c ? &c->p : nullptr, h, w, ho, wo);
}

const char* spe_depthwise_conv_kernel_name(const spe_depthwise_conv* c) { return c ? c->name.c_str() : ""; }
void spe_depthwise_conv_destroy(spe_depthwise_conv* c) { delete c; }

}  // extern "C"
