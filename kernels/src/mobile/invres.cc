// The fused inverted-residual block (spe.h; the method and the two schedules: invres.h).
//
// The inner loops are the families' own: every 1x1 runs the ISA's f32_spmm tiles (one row group
// over a run of pixels of a CHW tensor whose channel stride the entry offsets carry), every
// depthwise plane the ISA's f32_dwconv plane kernel, pointed at a band of rows of the expanded
// tensor (the plane kernel reads only the input rows its output rows need). This file decides
// what is computed where: bands, segments, buffers, and the tiling of each row group's pixels.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../common/error.h"
#include "../common/threadpool.h"
#include "../conv/geometry.h"
#include "../spmm/spmm.h"
#include "invres.h"
#include "spe/spe.h"

using spe::fail;

namespace spe {

// A packed 1x1 conv (spe.h's row groups; entry columns are input channels).
struct Pointwise {
  int out = 0, in = 0;
  std::vector<int32_t> row0, rows, col;
  std::vector<int64_t> ptr, vptr;
  std::vector<float> values, bias;
  int64_t groups() const { return int64_t(row0.size()); }
};

// The layout of one input size: geometry, schedule, the entry offsets of both 1x1 convs for
// the channel strides of their inputs, and (channels schedule) the whole depthwise output.
struct InvresWorkspace {
  int h = -1, w = -1, ho = 0, wo = 0;
  DwGeom dw{};
  int schedule = 1;    // 1 rows, 2 channels
  int band = 1;        // rows schedule: output rows per band
  int ecap = 0;        // rows schedule: expanded rows a band holds
  int64_t dstride = 0; // channel stride of the depthwise output the project reads
  // flat depthwise (see flat_depthwise): padded planes of wp columns, `plane` floats each
  bool flat = false;
  int wp = 0;
  int64_t plane = 0;
  std::vector<int32_t> off_x, off_d, off_dw;
  std::vector<float> dfull;
};

}  // namespace spe

struct spe_inverted_block {
  spe_inverted_block_params p{};
  spe::Pointwise expand, project;  // expand.out == 0: the block has no expand conv
  spe::Pointwise dw_flat;          // the depthwise conv as 1-row groups of k*k taps
  std::vector<float> dw_weight, dw_bias;
  const spe::SpmmKernels* mm = nullptr;
  spe::DwPlaneFn dw = nullptr;
  std::string name;
  std::mutex mu;  // guards ws; only ever try_locked (see run_block)
  spe::InvresWorkspace ws;
};

namespace spe {
namespace {

// The expanded rows plus the depthwise output rows of a band stay within this (per thread, in
// L2 beside the band's input and the weights).
constexpr int64_t kBandBytes = 192 << 10;
// The channels schedule unless its whole depthwise output would exceed this: measured on
// MobileNetV2's blocks (Zen 4, 1 thread, python -m engine.bench.invres --threads 1), it beat
// the rows schedule at every size, 112x112 included (0.97x-0.74x its time), since its 1x1s run
// long pixel runs; bands cut them short and re-read each group's weights per band.
constexpr int64_t kChannelsMaxBytes = int64_t(8) << 20;
constexpr int64_t kMaxFloats = (int64_t(1) << 31) - 4096;  // int32 entry offsets, with slack
// Stride-1 depthwise planes up to this many pixels run flat on the SpMM tiles (flat_depthwise):
// the plane kernel's per-row work (row copies, partial vectors, two rows a pass) dominates a
// 14x14 or 7x7 plane (MobileNetV2's 7x7 depthwise layers ran at 8 GFLOP/s on it, 1 thread).
constexpr int64_t kFlatMaxPixels = 14 * 14;

// Row group gi of pw over pixels [0, npix) of an input at x (entry offsets `off`, per entry)
// into y, whose row `row_origin` is at y (row stride ys); residual likewise (or null). Tiles
// are the listed ones, then the remainder, as spe_sparse_conv runs them; SPE_INVRES_BALANCED_TILES
// cuts the pixels into equal tiles of whole vectors instead (196 pixels with a 96-pixel tile:
// 80 + 80 + 36, not 96 + 96 + 4). Measured on MobileNetV2's 14x14 and 7x7 blocks (1 thread,
// Zen 4) the balanced tiles were 1-4% slower: both are masked tail kernels, and the last
// 4-pixel tile of the listed cut is cheap.
void run_group(const Pointwise& pw, const SpmmKernels* k, int64_t gi, const int32_t* off,
               const float* x, int64_t npix, float* y, int64_t ys, const float* res, int64_t rs,
               int row_origin, int act, int flags) {
  const int r = pw.rows[gi], W = k->width, nv = k->nv[r - 1];
  const int64_t vecs = (npix + W - 1) / W, tiles = (vecs + nv - 1) / nv;
  const int64_t step = flags & SPE_INVRES_BALANCED_TILES ? (vecs + tiles - 1) / tiles * W
                                                         : int64_t(nv) * W;
  const int64_t row = pw.row0[gi] - row_origin;
  TileArgs a{};
  a.off = off + pw.ptr[gi];
  a.w = pw.values.data() + pw.vptr[gi];
  a.n_entries = pw.ptr[gi + 1] - pw.ptr[gi];
  a.bias = pw.bias.empty() ? nullptr : pw.bias.data() + pw.row0[gi];
  a.y_row_stride = ys;
  a.res_row_stride = rs;
  a.act = act;
  for (int64_t q = 0; q < npix; q += step) {
    a.npix = int(std::min(step, npix - q));
    a.x = x + q;
    a.y = y + row * ys + q;
    a.res = res ? res + row * rs + q : nullptr;
    a.prefetch = q == 0;
    if (a.npix == nv * W) k->full[r - 1](a);
    else k->tail[r - 1][(a.npix + W - 1) / W - 1](a);
  }
}

// A thread's buffers for one work item, 64-byte aligned: the depthwise scratch first (zeroed
// here, as the plane kernel needs), then `floats` more.
float* thread_scratch(const DwGeom& g, int64_t floats, float** rest) {
  thread_local std::vector<float> buf;
  const int64_t dws = (g.scratch_floats() + 15) / 16 * 16;
  if (buf.size() < size_t(dws + floats + 16)) buf.resize(size_t(dws + floats + 16));
  float* s = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t(63));
  std::fill(s, s + dws, 0.0f);
  *rest = s + dws;
  return s;
}

struct Image {
  const float* x;
  float* y;
};

// Depthwise conv of channels [c0, c1) over output rows [oy0, oy1): channel c's input row r is
// at in + (c - c0) * ics + r * w (rows outside [oy0, oy1)'s span are never read), its output
// row oy at out + (c - c0) * ocs + (oy - oy0) * wo.
void depthwise_rows(const spe_inverted_block* b, const InvresWorkspace& g, int c0, int c1,
                    const float* in, int64_t ics, float* out, int64_t ocs, int oy0, int oy1,
                    float* scratch) {
  const int kk = b->p.kernel * b->p.kernel;
  DwPlaneArgs a{};
  a.g = &g.dw;
  a.act = b->p.dw_act;
  a.scratch = scratch;
  a.oy0 = oy0;
  a.oy1 = oy1;
  for (int c = c0; c < c1; ++c) {
    a.x = in + (c - c0) * ics;
    a.w = b->dw_weight.data() + int64_t(c) * kk;
    a.bias = b->dw_bias.empty() ? 0.0f : b->dw_bias[c];
    a.y = out + (c - c0) * ocs - int64_t(oy0) * g.wo;
    b->dw(a);
  }
}

// Rows schedule: output rows [sy0, sy1) of one image, band by band (see invres.h).
void rows_segment(const spe_inverted_block* b, const InvresWorkspace& g, Image im, int sy0,
                  int sy1) {
  const auto& p = b->p;
  const int C = p.expanded, W = g.w, s = p.stride, k = p.kernel, pad = k / 2;
  const bool has_expand = b->expand.out > 0;
  const int64_t ecs = int64_t(g.ecap) * W, hw = int64_t(g.h) * W;
  float* E;
  float* dws = thread_scratch(g.dw, (has_expand ? C * ecs : 0) + C * g.dstride, &E);
  float* D = E + (has_expand ? C * ecs : 0);
  int e0 = 0, e1 = 0;  // expanded rows held in E: [e0, e1)
  for (int ob = sy0; ob < sy1; ob += g.band) {
    const int oe = std::min(sy1, ob + g.band);
    const int n0 = std::max(0, ob * s - pad), n1 = std::min(g.h, (oe - 1) * s - pad + k);
    const float* in = im.x;
    int64_t ics = hw;
    if (has_expand) {
      if (n0 < e0 || n0 >= e1) {
        e0 = e1 = n0;
      } else if (n0 > e0) {  // keep the rows this band shares with the last one
        for (int c = 0; c < C; ++c)
          std::memmove(E + c * ecs, E + c * ecs + int64_t(n0 - e0) * W,
                       sizeof(float) * size_t(e1 - n0) * W);
        e0 = n0;
      }
      if (n1 > e1)
        for (int64_t gi = 0; gi < b->expand.groups(); ++gi)
          run_group(b->expand, b->mm, gi, g.off_x.data(), im.x + int64_t(e1) * W,
                    int64_t(n1 - e1) * W, E + int64_t(e1 - e0) * W, ecs, nullptr, 0, 0,
                    p.expand_act, b->p.flags);
      e1 = n1;
      in = E - int64_t(e0) * W;
      ics = ecs;
    }
    depthwise_rows(b, g, 0, C, in, ics, D, g.dstride, ob, oe, dws);
    const float* res = p.residual ? im.x + int64_t(ob) * g.wo : nullptr;
    for (int64_t gi = 0; gi < b->project.groups(); ++gi)
      run_group(b->project, b->mm, gi, g.off_d.data(), D, int64_t(oe - ob) * g.wo,
                im.y + int64_t(ob) * g.wo, int64_t(g.ho) * g.wo, res, hw, 0, SPE_ACT_NONE, b->p.flags);
  }
}

void run_rows(const spe_inverted_block* b, const InvresWorkspace& g, Image im) {
  auto& pool = ThreadPool::global();
  // One contiguous range of rows per thread: expanded rows are recomputed only at the seams.
  const int segs = std::max(1, std::min(pool.num_threads(), g.ho));
  pool.parallel_for(segs, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s)
      rows_segment(b, g, im, int(s * g.ho / segs), int((s + 1) * g.ho / segs));
  });
}

// Depthwise conv of channels [c0, c1) (stride 1), their input planes at `in` (plane stride ics),
// into out (+ (c - c0) * P): the planes are copied into zero-padded planes of wp = w + 2 pad
// columns (pad, the borders, stay zero: only interiors are written), and each channel is one
// 1-row SpMM group of k*k taps at offsets ky * wp + kx over the "virtual" output pixels
// (ho rows of wp; the last 2 pad of each row are garbage), computed into vbuf and cropped into
// out row by row. The taps, bias and activation are the SpMM tile's, as in any 1x1 layer.
void flat_depthwise(const spe_inverted_block* b, const InvresWorkspace& g, int c0, int c1,
                    const float* in, int64_t ics, float* out, float* pad, float* vbuf) {
  const int pd = b->p.kernel / 2, W = g.w;
  const int64_t P = int64_t(g.ho) * g.wo, PV = int64_t(g.ho) * g.wp;
  for (int c = c0; c < c1; ++c)
    for (int y = 0; y < g.h; ++y)
      std::memcpy(pad + (c - c0) * g.plane + int64_t(y + pd) * g.wp + pd,
                  in + (c - c0) * ics + int64_t(y) * W, sizeof(float) * size_t(W));
  for (int c = c0; c < c1; ++c) {
    run_group(b->dw_flat, b->mm, c, g.off_dw.data(), pad - c0 * g.plane, PV, vbuf, PV, nullptr,
              0, c, b->p.dw_act, b->p.flags);
    for (int y = 0; y < g.ho; ++y)
      std::memcpy(out + (c - c0) * P + int64_t(y) * g.wo, vbuf + int64_t(y) * g.wp,
                  sizeof(float) * size_t(g.wo));
  }
}

// Channels schedule: expand + depthwise per group of expanded channels, then the project.
void run_channels(const spe_inverted_block* b, const InvresWorkspace& g, Image im, float* D) {
  const auto& p = b->p;
  const bool has_expand = b->expand.out > 0;
  const int64_t hw = int64_t(g.h) * g.w, P = int64_t(g.ho) * g.wo;
  auto& pool = ThreadPool::global();
  const int T = pool.num_threads();
  // without an expand conv, channels go in chunks of 8 (the expand's groups are 1..8 rows)
  const int64_t items = has_expand ? b->expand.groups() : (p.expanded + 7) / 8;
  const int64_t e_floats = has_expand ? kMaxGroupRows * hw : 0;
  const int64_t flat_floats = g.flat ? kMaxGroupRows * g.plane + int64_t(g.ho) * g.wp + 64 : 0;
  pool.parallel_for(items, std::max<int64_t>(1, items / (int64_t(T) * 4)), [&](int64_t i0, int64_t i1) {
    float* E;
    float* dws = thread_scratch(g.dw, e_floats + flat_floats, &E);
    float* pad = E + e_floats;
    if (g.flat) std::fill(pad, pad + kMaxGroupRows * g.plane, 0.0f);
    for (int64_t it = i0; it < i1; ++it) {
      int c0 = int(it * 8), c1 = std::min(p.expanded, c0 + 8);
      const float* in = im.x + c0 * hw;
      if (has_expand) {
        c0 = b->expand.row0[it], c1 = c0 + b->expand.rows[it];
        run_group(b->expand, b->mm, it, g.off_x.data(), im.x, hw, E, hw, nullptr, 0, c0,
                  p.expand_act, b->p.flags);
        in = E;
      }
      if (g.flat) flat_depthwise(b, g, c0, c1, in, hw, D + c0 * P, pad, pad + kMaxGroupRows * g.plane);
      else depthwise_rows(b, g, c0, c1, in, hw, D + c0 * P, P, 0, g.ho, dws);
    }
  });
  const int64_t G = b->project.groups();
  pool.parallel_for(G, std::max<int64_t>(1, G / (int64_t(T) * 4)), [&](int64_t g0, int64_t g1) {
    for (int64_t gi = g0; gi < g1; ++gi)
      run_group(b->project, b->mm, gi, g.off_d.data(), D, P, im.y, P,
                p.residual ? im.x : nullptr, hw, 0, SPE_ACT_NONE, b->p.flags);
  });
}

// Checks that an h x w input suits the block: SPE_OK or a status with the reason recorded.
spe_status check_input(const spe_inverted_block* b, int64_t h, int64_t w, int64_t* ho,
                       int64_t* wo) {
  const auto& p = b->p;
  *ho = out_dim(h, p.kernel / 2, 1, p.kernel, p.stride);
  *wo = out_dim(w, p.kernel / 2, 1, p.kernel, p.stride);
  const std::string size = std::to_string(h) + "x" + std::to_string(w);
  if (h <= 0 || w <= 0 || *ho <= 0 || *wo <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "input " + size + " too small for the block");
  const int64_t widest = std::max<int64_t>(p.in_channels, p.expanded);
  if (h >= (int64_t(1) << 28) || w >= (int64_t(1) << 28) || h * w > kMaxFloats / widest)
    return fail(SPE_ERR_INVALID_ARGUMENT, "input " + size + " too large for this block (" +
                                              std::to_string(widest) +
                                              " channels of it would exceed 2^31 floats)");
  return SPE_OK;
}

// The workspace of input size h x w (check_input passed) into g.
void build_workspace(const spe_inverted_block* b, int h, int w, InvresWorkspace* g) {
  const auto& p = b->p;
  const int pad = p.kernel / 2;
  g->h = -1;
  g->ho = int(out_dim(h, pad, 1, p.kernel, p.stride));
  g->wo = int(out_dim(w, pad, 1, p.kernel, p.stride));
  g->dw = DwGeom{p.kernel, p.kernel, p.stride, p.stride, pad, pad, 1, 1, h, w, g->ho, g->wo, 0, 0, 0};
  dw_layout(g->dw);
  const int64_t P = int64_t(g->ho) * g->wo;
  g->schedule = p.schedule ? p.schedule : (p.expanded * P * 4 <= kChannelsMaxBytes ? 2 : 1);
  const int64_t row_bytes = int64_t(p.expanded) * (int64_t(p.stride) * w + g->wo) * 4;
  g->band = p.band_rows > 0 ? std::min(p.band_rows, g->ho)
                            : int(std::clamp<int64_t>(kBandBytes / row_bytes, 1, g->ho));
  g->ecap = std::min(h, (g->band - 1) * p.stride + p.kernel);
  g->dstride = g->schedule == 2 ? P : int64_t(g->band) * g->wo;
  g->off_x.resize(b->expand.col.size());
  for (size_t e = 0; e < g->off_x.size(); ++e) g->off_x[e] = int32_t(b->expand.col[e] * int64_t(h) * w);
  g->off_d.resize(b->project.col.size());
  for (size_t e = 0; e < g->off_d.size(); ++e) g->off_d[e] = int32_t(b->project.col[e] * g->dstride);
  if (g->schedule == 2) g->dfull.resize(size_t(p.expanded * P));
  g->flat = g->schedule == 2 && !(p.flags & SPE_INVRES_PLANE_DEPTHWISE) && p.stride == 1 &&
            P <= kFlatMaxPixels;
  g->wp = w + 2 * pad;
  g->plane = int64_t(h + 2 * pad) * g->wp + 16;  // + slack: the last tile's vector reads past
  g->off_dw.clear();
  if (g->flat)
    for (int c = 0; c < p.expanded; ++c)
      for (int ky = 0; ky < p.kernel; ++ky)
        for (int kx = 0; kx < p.kernel; ++kx)
          g->off_dw.push_back(int32_t(c * g->plane + int64_t(ky) * g->wp + kx));
  g->h = h;
  g->w = w;
}

spe_status run_block(spe_inverted_block* b, const float* x, int32_t n, int32_t h, int32_t w,
                     float* y) {
  if (!b || !x || !y || n < 0) return fail(SPE_ERR_INVALID_ARGUMENT, "null block/x/y or n < 0");
  int64_t ho, wo;
  if (const spe_status st = check_input(b, h, w, &ho, &wo); st != SPE_OK) return st;
  if (n == 0) return SPE_OK;
  // The block's workspace if it is free, else a private one (as spe_sparse_conv_run does: a
  // concurrent call, or a forked child whose parent held the lock, never waits).
  std::unique_lock<std::mutex> lock(b->mu, std::try_to_lock);
  InvresWorkspace own;
  InvresWorkspace* g = &own;
  if (lock.owns_lock()) {
    g = &b->ws;
    if (g->h != h || g->w != w) build_workspace(b, h, w, g);
  } else {
    build_workspace(b, h, w, g);
  }
  const int64_t in_img = int64_t(b->p.in_channels) * h * w, out_img = int64_t(b->p.out_channels) * ho * wo;
  for (int i = 0; i < n; ++i) {
    const Image im{x + i * in_img, y + i * out_img};
    if (g->schedule == 2) run_channels(b, *g, im, g->dfull.data());
    else run_rows(b, *g, im);
  }
  return SPE_OK;
}

// Validates one 1x1 conv's packed arrays (through spe_sparse_conv_create, the one validator
// of the format) and copies them into pw.
spe_status take_pointwise(const char* what, int out, int in, const spe_pointwise_weights& wt,
                          const char* isa, Pointwise* pw) {
  const spe_conv_params cp{out, in, 1, 1, 1, 1, 0, 0, 1, 1};
  spe_sparse_conv* check = nullptr;
  if (spe_sparse_conv_create(&cp, wt.n_groups, wt.group_row0, wt.group_rows, wt.group_ptr,
                             wt.entry_col, wt.values, wt.bias, SPE_ACT_NONE, isa, &check) != SPE_OK)
    return fail(SPE_ERR_INVALID_ARGUMENT, std::string(what) + ": " + spe_last_error());
  spe_sparse_conv_destroy(check);
  const int G = wt.n_groups;
  pw->out = out;
  pw->in = in;
  pw->row0.assign(wt.group_row0, wt.group_row0 + G);
  pw->rows.assign(wt.group_rows, wt.group_rows + G);
  pw->ptr.assign(wt.group_ptr, wt.group_ptr + G + 1);
  pw->col.assign(wt.entry_col, wt.entry_col + pw->ptr[G]);
  int64_t v = 0;
  for (int g = 0; g < G; ++g) {
    pw->vptr.push_back(v);
    v += (pw->ptr[g + 1] - pw->ptr[g]) * pw->rows[g];
  }
  pw->values.assign(wt.values, wt.values + v);
  if (wt.bias) pw->bias.assign(wt.bias, wt.bias + out);
  return SPE_OK;
}

bool valid_act(int a) { return a >= SPE_ACT_NONE && a <= SPE_ACT_RELU6; }

spe_status check_params(const spe_inverted_block_params& p, bool has_expand) {
  if (p.in_channels <= 0 || p.expanded <= 0 || p.out_channels <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "channel counts must be positive");
  if (!has_expand && p.expanded != p.in_channels)
    return fail(SPE_ERR_INVALID_ARGUMENT, "without an expand conv, expanded (" +
                                              std::to_string(p.expanded) + ") must equal in_channels (" +
                                              std::to_string(p.in_channels) + ")");
  if (!valid_act(p.expand_act) || !valid_act(p.dw_act))
    return fail(SPE_ERR_INVALID_ARGUMENT, "unknown activation");
  if (p.residual && (p.stride != 1 || p.in_channels != p.out_channels))
    return fail(SPE_ERR_INVALID_ARGUMENT, "a residual block needs stride 1 and in_channels == out_channels");
  if (p.schedule < 0 || p.schedule > 2 || p.band_rows < 0 || (p.flags & ~3) != 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "schedule must be 0, 1 or 2, band_rows >= 0, flags 0..3");
  return SPE_OK;
}

spe_status create_block(const spe_inverted_block_params* params, const spe_pointwise_weights* expand,
                        const float* dw_weight, const float* dw_bias,
                        const spe_pointwise_weights* project, const char* isa,
                        spe_inverted_block** out) {
  if (!params || !out || !dw_weight || !project)
    return fail(SPE_ERR_INVALID_ARGUMENT, "null params/dw_weight/project/out");
  const spe_inverted_block_params& p = *params;
  if (const spe_status st = check_params(p, expand != nullptr); st != SPE_OK) return st;
  Isa which;
  if (!parse_isa(isa, &which) || !isa_runs(which) || !spmm_kernels(which) || !dw_kernels(which))
    return fail(SPE_ERR_UNSUPPORTED_ISA, std::string("ISA not available on this CPU/build: ") + (isa ? isa : "null"));
  const InvresUkernel* u = find_invres(which, p.kernel, p.stride);
  if (!u)
    return fail(SPE_ERR_INVALID_ARGUMENT, "no fused block kernel for a " + std::to_string(p.kernel) + "x" +
                                              std::to_string(p.kernel) + " stride-" + std::to_string(p.stride) +
                                              " depthwise conv (invres_list.h)");
  auto b = std::make_unique<spe_inverted_block>();
  b->p = p;
  if (expand) {
    if (const spe_status st = take_pointwise("expand", p.expanded, p.in_channels, *expand, isa, &b->expand); st != SPE_OK)
      return st;
  }
  if (const spe_status st = take_pointwise("project", p.out_channels, p.expanded, *project, isa, &b->project); st != SPE_OK)
    return st;
  b->dw_weight.assign(dw_weight, dw_weight + int64_t(p.expanded) * p.kernel * p.kernel);
  if (dw_bias) b->dw_bias.assign(dw_bias, dw_bias + p.expanded);
  b->mm = spmm_kernels(which);
  {
    const int kk = p.kernel * p.kernel;
    Pointwise& f = b->dw_flat;
    f.out = f.in = p.expanded;
    for (int c = 0; c < p.expanded; ++c) {
      f.row0.push_back(c);
      f.rows.push_back(1);
      f.ptr.push_back(int64_t(c) * kk);
      f.vptr.push_back(int64_t(c) * kk);
    }
    f.ptr.push_back(int64_t(p.expanded) * kk);
    f.values = b->dw_weight;
    f.bias = b->dw_bias;
  }
  const DwKernels* dk = dw_kernels(which);
  for (int i = 0; i < dk->n_special; ++i)
    if (dk->special[i].k == p.kernel && dk->special[i].s == p.stride) b->dw = dk->special[i].fn;
  b->name = u->name;
  *out = b.release();
  return SPE_OK;
}

}  // namespace
}  // namespace spe

extern "C" {

spe_status spe_inverted_block_create(const spe_inverted_block_params* params,
                                     const spe_pointwise_weights* expand, const float* dw_weight,
                                     const float* dw_bias, const spe_pointwise_weights* project,
                                     const char* isa, spe_inverted_block** out) {
  return spe::guarded("spe_inverted_block_create", [&] {
    return spe::create_block(params, expand, dw_weight, dw_bias, project, isa, out);
  });
}

spe_status spe_inverted_block_run(spe_inverted_block* block, const float* x, int32_t n,
                                  int32_t h, int32_t w, float* y) {
  return spe::guarded("spe_inverted_block_run", [&] { return spe::run_block(block, x, n, h, w, y); });
}

void spe_inverted_block_output_size(const spe_inverted_block* block, int32_t h, int32_t w,
                                    int32_t* ho, int32_t* wo) {
  if (!block) {
    spe::conv_output_size(nullptr, h, w, ho, wo);
    return;
  }
  const auto& p = block->p;
  const spe_conv_params cp{p.expanded, p.expanded, p.kernel, p.kernel, p.stride, p.stride,
                           p.kernel / 2, p.kernel / 2, 1, 1};
  spe::conv_output_size(&cp, h, w, ho, wo);
}

const char* spe_inverted_block_kernel_name(const spe_inverted_block* block) {
  return block ? block->name.c_str() : "";
}

void spe_inverted_block_destroy(spe_inverted_block* block) { delete block; }

}  // extern "C"
