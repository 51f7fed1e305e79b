// A packed sparse conv / linear layer and its execution (see spe.h for the method).
//
// run(): 1. geometry and the flat offset of every entry for this input size; 2. the input as
//        zero-padded phase planes (skipped for 1x1 stride-1 unpadded convs, which read NCHW
//        directly; in the layer's cached workspace the zero borders are written once per input
//        size); 3. the SpMM over (batch, band, row group, pixel tile) work items in the thread
//        pool (ItemPlan; a 1x1 projection on several threads in K stages, run_stages); when
//        virtual output pixels differ from real ones, each tile is computed into a small buffer
//        and cropped into y right away (residual and activation there), in L1.
//
// The geometry and phase-plane buffer of the last input size are cached in the layer, guarded
// by a mutex that run() only ever try_locks: a call that finds it busy (another thread inside
// this layer, or, in a forked child, a thread of the parent that no longer exists and left the
// mutex locked and the cache maybe half-written) computes the geometry and a buffer of its own
// instead. Nothing blocks, nothing reads a cache another thread may be writing, and the result
// is the same either way.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../common/error.h"
#include "geometry.h"
#include "row_groups.h"
#include "../common/split.h"
#include "../common/threadpool.h"
#include "../isa/isa.h"
#include "../spmm/spmm.h"
#include "spe/spe.h"

using spe::fail;

namespace spe {

// The layout of one input size: geometry, phase planes, and every entry's flat input offset.
struct ConvGeometry {
  int h = -1, w = -1, ho = 0, wo = 0, hp = 0, wp = 0, n_phases = 0;
  bool direct = false;  // read x as is (1x1, stride 1, no padding)
  int64_t plane = 0, chan_stride = 0, P = 0;
  int64_t xbuf_floats = 0;  // phase-plane buffer (0 when direct)
  int phase_index[64] = {};  // (row phase, column phase) -> used plane index, or -1
  int row_phases[8] = {};    // the row phases any kernel row reads
  int n_row_phases = 0;
  std::vector<int32_t> offsets;
};

}  // namespace spe

struct spe_sparse_conv {
  spe_conv_params p{};
  int K = 1;  // kh * kw
  std::vector<int32_t> row0, rows, col;
  std::vector<int64_t> ptr, vptr;
  std::vector<float> values, bias;
  int act = 0;
  const spe::SpmmKernels* k = nullptr;
  std::string name;
  int main_rows = 1;

  // The workspace of the last input size seen; only under a successful try_lock of mu.
  std::mutex mu;
  spe::ConvGeometry geo;
  std::vector<float> xbuf;
  bool xbuf_zeroed = false;  // xbuf holds the zero borders of geo
};

namespace spe {
namespace {

// The SpMM table for a C API isa argument (null means "auto"), or null if this CPU or build
// cannot run it.
const SpmmKernels* pick(const char* isa) {
  Isa i;
  if (!parse_isa(isa ? isa : "auto", &i) || !isa_runs(i)) return nullptr;
  return spmm_kernels(i);
}

// A layer's entries (and values / 8) are bounded well below anything that could overflow an
// int64 byte count.
constexpr int64_t kMaxEntries = int64_t(1) << 40;

// Phase planes the kernel positions use: (ky*dh % sh, kx*dw % sw) pairs.
int count_phases(const spe_conv_params& p) {
  bool used[64] = {};
  int n = 0;
  for (int ky = 0; ky < p.kh; ++ky)
    for (int kx = 0; kx < p.kw; ++kx) {
      const int ph = ((ky * p.dil_h) % p.stride_h) * p.stride_w + (kx * p.dil_w) % p.stride_w;
      if (!used[ph]) used[ph] = true, ++n;
    }
  return n;
}

bool is_direct(const spe_conv_params& p) {
  return p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 &&
         p.pad_w == 0;
}

// Entries address the phase planes (or, direct, the input) of every channel with int32 offsets,
// and the buffer holds a row and a vector of slack past them.
constexpr int64_t kMaxWorkspaceFloats = std::numeric_limits<int32_t>::max();

// Checks that an h x w input suits the layer: SPE_OK, or a status with the reason recorded.
// All in int64 without overflow (h, w, pads < 2^31; strides, kernels, dilations <= 64).
spe_status check_input(const spe_conv_params& p, int64_t h, int64_t w) {
  const int64_t ho = out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h);
  const int64_t wo = out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w);
  if (h <= 0 || w <= 0 || ho <= 0 || wo <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "input " + std::to_string(h) + "x" + std::to_string(w) +
                                              " too small for the kernel/padding");
  const bool direct = is_direct(p);
  const int64_t rows = direct ? h : (ho + (int64_t(p.dil_h) * (p.kh - 1)) / p.stride_h) * count_phases(p);
  const int64_t cols = direct ? w : wo + (int64_t(p.dil_w) * (p.kw - 1)) / p.stride_w;
  const int64_t limit = kMaxWorkspaceFloats - cols - 64;
  if (limit <= 0 || rows > limit / cols || p.in_channels > limit / (rows * cols))
    return fail(SPE_ERR_INVALID_ARGUMENT,
                "input " + std::to_string(h) + "x" + std::to_string(w) + " too large for this layer (" +
                    std::to_string(p.in_channels) + " channels): its " +
                    (direct ? "input" : "phase planes") + " would exceed 2^31 floats");
  return SPE_OK;
}

// The geometry of input size h x w (check_input(h, w) passed), built into g. The caller either
// owns g privately or holds the layer's lock; g.h stays -1 until g is complete, so a g left
// behind by an exception is never taken for a valid one.
void build_geometry(const spe_sparse_conv* c, int h, int w, ConvGeometry* g) {
  const auto& p = c->p;
  g->h = g->w = -1;
  g->ho = int(out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h));
  g->wo = int(out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w));
  g->direct = is_direct(p);
  std::fill(std::begin(g->phase_index), std::end(g->phase_index), -1);
  g->n_row_phases = 0;
  if (g->direct) {
    g->hp = h;
    g->wp = w;
    g->plane = int64_t(h) * w;
    g->chan_stride = g->plane;
    g->n_phases = 1;
    g->phase_index[0] = 0;
    g->row_phases[g->n_row_phases++] = 0;
    g->xbuf_floats = 0;
  } else {
    g->hp = g->ho + (p.dil_h * (p.kh - 1)) / p.stride_h;
    g->wp = g->wo + (p.dil_w * (p.kw - 1)) / p.stride_w;
    g->plane = int64_t(g->hp) * g->wp;
    int n = 0;  // number the phases the kernel positions actually use
    bool row_used[8] = {};
    for (int ky = 0; ky < p.kh; ++ky)
      for (int kx = 0; kx < p.kw; ++kx) {
        const int py = (ky * p.dil_h) % p.stride_h;
        const int ph = py * p.stride_w + (kx * p.dil_w) % p.stride_w;
        if (g->phase_index[ph] < 0) g->phase_index[ph] = n++;
        row_used[py] = true;
      }
    // A 1x1 conv at stride (2, 1), or a dilation that is a multiple of the stride, reads only
    // some row phases: make_planes fills just those.
    for (int py = 0; py < p.stride_h; ++py)
      if (row_used[py]) g->row_phases[g->n_row_phases++] = py;
    g->n_phases = n;
    g->chan_stride = g->plane * n;
    g->xbuf_floats = int64_t(p.in_channels) * g->chan_stride + g->wp + 64;
  }
  g->P = int64_t(g->ho) * g->wp;
  g->offsets.resize(c->col.size());
  for (size_t e = 0; e < c->col.size(); ++e) {
    const int ch = c->col[e] / c->K, kk = c->col[e] % c->K;
    const int ky = kk / p.kw, kx = kk % p.kw;
    const int ph = ((ky * p.dil_h) % p.stride_h) * p.stride_w + (kx * p.dil_w) % p.stride_w;
    g->offsets[e] = int32_t(ch * g->chan_stride + g->phase_index[ph] * g->plane +
                            int64_t((ky * p.dil_h) / p.stride_h) * g->wp +
                            (kx * p.dil_w) / p.stride_w);
  }
  g->h = h;
  g->w = w;
}

// x (C, H, W) -> the image part of the used phase planes (C, n_phases, hp, wp). Their zero
// borders depend only on the geometry: xb holds them already (run() zeroes a buffer once per
// input size) and this writes only the pixels that come from x, a row at a time with the row
// ranges and column ranges computed once (per-row bounds and small memsets used to cost more
// than the copy). Only the row phases the kernel reads are visited; within one, a column phase
// no kernel position uses has no plane (dst null) and is skipped.
void make_planes(const spe_sparse_conv* c, const ConvGeometry& g, const float* x, float* xb, int shares) {
  const auto& p = c->p;
  const int sh = p.stride_h, sw = p.stride_w, wp = g.wp;
  const int64_t H = g.h, W = g.w;
  // Per column phase px: plane column j reads image column j*sw + px - pw, valid for j in
  // [j0, j1).
  int j0[8], j1[8];
  for (int px = 0; px < sw; ++px) {
    const int64_t base = px - p.pad_w;
    j0[px] = int(std::min<int64_t>(wp, base >= 0 ? 0 : (-base + sw - 1) / sw));
    j1[px] = int(std::max<int64_t>(j0[px], std::min<int64_t>(wp, (W - base + sw - 1) / sw)));
  }
  // Work items: (channel, used row phase, block of plane rows); row blocks only when there are
  // few channels (the 3-channel stem), so both threads get work. When the SpMM splits the
  // pixels in `shares` runs, block-major instead, one block of rows per share: thread t writes
  // about the rows its tiles read.
  const int nrp = g.n_row_phases;
  const int rb = shares > 1 ? (g.hp + shares - 1) / shares
                            : p.in_channels * nrp >= 32 ? g.hp : std::max(1, std::min(g.hp, 8));
  const int nrb = (g.hp + rb - 1) / rb;
  const int64_t per_blk = int64_t(p.in_channels) * nrp;
  const int64_t items = per_blk * nrb;
  ThreadPool::global().parallel_for(items, std::max<int64_t>(1, items / 64), [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const bool blk_major = shares > 1;
      const int64_t ch = blk_major ? it % per_blk / nrp : it / (int64_t(nrp) * nrb);
      const int py = g.row_phases[blk_major ? it % nrp : it / nrb % nrp];
      const int blk = int(blk_major ? it / per_blk : it % nrb);
      // plane row i reads image row i*sh + py - ph, valid for i in [i0, i1)
      const int64_t base_r = py - p.pad_h;
      const int64_t i0 = std::max<int64_t>(int64_t(blk) * rb, base_r >= 0 ? 0 : (-base_r + sh - 1) / sh);
      const int64_t i1 = std::min<int64_t>(std::min<int64_t>(g.hp, int64_t(blk + 1) * rb),
                                           (H - base_r + sh - 1) / sh);
      const float* xc = x + ch * H * W;
      float* dst[8];
      for (int px = 0; px < sw; ++px) {
        const int idx = g.phase_index[py * sw + px];
        dst[px] = idx < 0 ? nullptr : xb + ch * g.chan_stride + idx * g.plane;
      }
      for (int64_t i = i0; i < i1; ++i) {
        const float* __restrict s = xc + (i * sh + base_r) * W;
        const int64_t ro = i * wp;
        if (sw == 1) {
          if (dst[0])
            std::memcpy(dst[0] + ro + j0[0], s + j0[0] - p.pad_w, sizeof(float) * (j1[0] - j0[0]));
        } else if (sw == 2 && dst[0] && dst[1]) {
          // both column phases in one pass: d0[j] = s[2j - pw], d1[j] = s[2j + 1 - pw]
          float* __restrict d0 = dst[0] + ro;
          float* __restrict d1 = dst[1] + ro;
          const int ja = std::max(j0[0], j0[1]), jb = std::min(j1[0], j1[1]);
          const int o0 = -p.pad_w, o1 = 1 - p.pad_w;
          for (int j = j0[0]; j < std::min(ja, j1[0]); ++j) d0[j] = s[2 * int64_t(j) + o0];
          for (int j = j0[1]; j < std::min(ja, j1[1]); ++j) d1[j] = s[2 * int64_t(j) + o1];
          const float* __restrict s0 = s + (2 * int64_t(ja) + o0);
          for (int j = 0; j < jb - ja; ++j) {
            d0[ja + j] = s0[2 * j];
            d1[ja + j] = s0[2 * j + 1];
          }
          for (int j = std::max(jb, j0[0]); j < j1[0]; ++j) d0[j] = s[2 * int64_t(j) + o0];
          for (int j = std::max(jb, j0[1]); j < j1[1]; ++j) d1[j] = s[2 * int64_t(j) + o1];
        } else {
          for (int px = 0; px < sw; ++px) {
            if (!dst[px]) continue;
            float* __restrict d = dst[px] + ro;
            const float* __restrict sj = s + (int64_t(j0[px]) * sw + px - p.pad_w);
            const int n = j1[px] - j0[px];
            if (sw == 2)  // a constant stride the compiler vectorises
              for (int j = 0; j < n; ++j) d[j0[px] + j] = sj[2 * j];
            else
              for (int j = 0; j < n; ++j) d[j0[px] + j] = sj[int64_t(j) * sw];
          }
        }
      }
    }
  });
}

// Crops one computed tile: t holds `rows` rows (stride ts) of the virtual pixels [q, q + npix)
// (virtual row width wp, of which the first wo are real); each real pixel goes to y (row stride
// plane = ho*wo) with the residual and the activation. Runs right after the tile's microkernel,
// while the tile is in L1, instead of a separate pass over a whole virtual output buffer; the
// activation on the tiles' ISA (act_row), a row segment at a time: scalar hardswish / SiLU here
// made a fused SiLU slower than TVM's after the conv (EfficientNet-B0's stem).
void crop_tile(const float* t, int ts, int rows, int64_t q, int npix, int wp, int wo,
               int64_t plane, float* y, const float* res, int act, ActRowFn act_row) {
  for (int64_t pos = q, end = q + npix; pos < end;) {
    const int64_t i = pos / wp;
    const int j = int(pos - i * wp);
    const int64_t row_end = std::min<int64_t>(end, (i + 1) * wp);
    const int j1 = int(std::min<int64_t>(row_end - i * wp, wo));
    if (j < j1) {
      const int64_t dst = i * wo + j;
      for (int r = 0; r < rows; ++r)
        act_row(y + r * plane + dst, t + int64_t(r) * ts + (pos - q),
                res ? res + r * plane + dst : nullptr, j1 - j, act);
    }
    pos = row_end;
  }
}

// One image's SpMM work items, one per (tile, group) in the order share -> band -> group ->
// tile (a band's input stays in L2 while each group walks its tiles, writing its output rows
// sequentially), and how to run one of them.
struct ItemPlan {
  const spe_sparse_conv* c;
  const ConvGeometry* g;
  const SpmmKernels* k;
  const float* x;    // the image's input (NCHW, or its phase planes)
  float* y;          // the image's output
  const float* res;  // the image's residual, or null
  int64_t G, tile_px, band_tiles, shares;
  const int64_t* ps;  // share s: pixels [ps[s], ps[s + 1])
  const int64_t* io;  // share s: items [io[s], io[s + 1])
  bool crop;
  // K stages: the entries of group gi in stage s are [cuts[gi * (stages + 1) + s], .. + s + 1)
  const int64_t* cuts = nullptr;
  int stages = 1;

  // Item `it`: with all of its group's entries (stage -1), or with stage s's (no K stages on
  // cropped layers): the first stage starts from the bias, the others from the partial sums
  // stored before them, and only the last adds the residual and applies the activation.
  void run(int64_t it, int stage, TileArgs& a, float* tbuf) const {
    const int64_t sh = shares == 1 ? 0 : std::upper_bound(io, io + shares + 1, it) - io - 1;
    const int64_t li = it - io[sh], nts = (io[sh + 1] - io[sh]) / G;
    const int64_t n_bands = (nts + band_tiles - 1) / band_tiles;
    const int64_t band = std::min(n_bands - 1, li / (G * band_tiles));
    const int64_t t0 = band * band_tiles, nt = std::min(band_tiles, nts - t0);
    const int64_t rem = li - t0 * G, gi = rem / nt, t = t0 + rem % nt;
    const int r = c->rows[gi], r0 = c->row0[gi];
    const int64_t p0 = ps[sh] + t * tile_px, p1 = std::min<int64_t>(ps[sh + 1], p0 + tile_px);
    const int sub = k->nv[r - 1] * k->width;
    const int64_t e0 = stage < 0 ? c->ptr[gi] : cuts[gi * (stages + 1) + stage];
    const int64_t e1 = stage < 0 ? c->ptr[gi + 1] : cuts[gi * (stages + 1) + stage + 1];
    const bool first = stage <= 0, last = stage < 0 || stage == stages - 1;
    const int ho = g->ho, wo = g->wo;
    const float* bias = c->bias.empty() ? nullptr : c->bias.data() + r0;
    for (int64_t q = p0; q < p1; q += sub) {
      const int npix = int(std::min<int64_t>(sub, p1 - q));
      a.x = x + q;
      a.off = g->offsets.data() + e0;
      a.w = c->values.data() + c->vptr[gi] + (e0 - c->ptr[gi]) * r;
      a.n_entries = e1 - e0;
      a.y = y + int64_t(r0) * ho * wo + q;
      a.y_row_stride = g->P;
      a.bias = first ? bias : nullptr;
      a.acc_in = first ? nullptr : a.y;
      a.res = res && !crop && last ? res + int64_t(r0) * g->P + q : nullptr;
      a.res_row_stride = g->P;
      a.act = crop || !last ? 0 : c->act;  // cropped tiles: residual and activation in crop_tile
      a.npix = npix;
      // The first tile of a group in a band reads its weights from DRAM (a full model's
      // weights do not stay cached between calls); the group's next tiles find them in L2.
      a.prefetch = t == t0 && q == p0;
      if (crop) {  // virtual pixels: compute into tbuf, then crop into y while in L1
        a.y = tbuf;
        a.y_row_stride = sub;
      }
      if (npix == sub) k->full[r - 1](a);
      else k->tail[r - 1][(npix + k->width - 1) / k->width - 1](a);
      if (crop)
        crop_tile(tbuf, sub, r, q, npix, g->wp, wo, int64_t(ho) * wo, y + int64_t(r0) * ho * wo,
                  res ? res + int64_t(r0) * ho * wo : nullptr, c->act, k->act_row);
    }
  }
};

// K stages. A projection (a 1x1 conv with many more input than output channels) typically
// reads a depthwise conv's output, which the threads wrote a run of channels each; split by
// pixels or by output rows, every thread reads all channels, half of them from the other
// core (on a 2-vCPU Xeon the projections of MobileNetV2 ran no faster on 2 threads than on 1).
// With stages, thread s takes the entries of input channels [C s / S, C (s + 1) / S) of every
// (tile, group) item, in the items' order: it starts an item from the partial sums stage s - 1
// stored for it and stores its own, so only those (output-sized) partial sums cross cores. A
// group's entries are consecutive per stage and a tile's sums carry over in the same order as
// in one call (an fp32 store and load are exact): the result is bit for bit the unstaged one,
// whatever the thread count. Not on the scalar table (its reference sums in double).
int k_stages(const spe_sparse_conv* c, const ConvGeometry& g, int threads) {
  const auto& p = c->p;
  if (threads < 2 || !g.direct || g.wp != g.wo || std::strcmp(c->k->isa, "scalar") == 0) return 1;
  if (p.in_channels < 2 * p.out_channels || p.in_channels < 16 * threads) return 1;
  return threads;
}

// Per group, the first entry of each stage's channels (the columns are sorted within a group,
// as every packer writes them; on unsorted ones the cuts are still monotone, so any order
// stays exact, only less local).
std::vector<int64_t> stage_cuts(const spe_sparse_conv* c, int S) {
  const int64_t G = int64_t(c->row0.size()), C = c->p.in_channels;
  std::vector<int64_t> cuts(size_t(G * (S + 1)));
  for (int64_t gi = 0; gi < G; ++gi) {
    const int32_t* b = c->col.data() + c->ptr[gi];
    const int32_t* e = c->col.data() + c->ptr[gi + 1];
    for (int s = 0; s <= S; ++s)
      cuts[size_t(gi * (S + 1) + s)] =
          s == 0 ? c->ptr[gi] : s == S ? c->ptr[gi + 1]
                              : c->ptr[gi] + (std::lower_bound(b, e, int32_t(part_begin(C, S, s))) - b);
  }
  return cuts;
}

// Runs the K stages of one image: chunk s of the pool's job is stage s. A thread claims the
// lowest unclaimed stage up to its chunk's and runs it whole, item by item, each item once
// the stage before has finished it. Only claimed stages are waited for, and the stage before
// a claimed one is claimed too, so nothing waits on work nobody runs (a thread that starts
// late, a runtime that runs a task on the wrong thread: the work just lands on fewer threads).
void run_stages(const ItemPlan& ip, int64_t items, ThreadPool& pool) {
  const int S = ip.stages;
  std::unique_ptr<std::atomic<int64_t>[]> done(new std::atomic<int64_t>[size_t(S)]);
  std::unique_ptr<std::atomic<bool>[]> claimed(new std::atomic<bool>[size_t(S)]);
  for (int s = 0; s < S; ++s) {
    done[s].store(0);
    claimed[s].store(false);
  }
  std::atomic<bool> failed{false};
  pool.parallel_for(S, 1, [&](int64_t sb, int64_t se) {
    alignas(64) float tbuf[kMaxGroupRows * kMaxTilePixels];
    TileArgs a{};
    for (int s = 0; s < int(se); ++s) {
      if (claimed[s].exchange(true)) continue;
      try {
        for (int64_t it = 0; it < items; ++it) {
          for (int spins = 0; s > 0 && done[s - 1].load(std::memory_order_acquire) <= it; ++spins) {
            if (failed.load(std::memory_order_relaxed)) throw std::runtime_error("K stage: an earlier stage failed");
            if ((spins & 1023) != 1023) cpu_relax();
            else std::this_thread::yield();
          }
          ip.run(it, s, a, tbuf);
          done[s].store(it + 1, std::memory_order_release);
        }
      } catch (...) {
        failed.store(true);
        throw;
      }
    }
    (void)sb;
  });
}

// y = act(conv(x) + bias [+ residual]); see spe_sparse_conv_run. Runs inside the C API guard.
spe_status run_layer(spe_sparse_conv* c, const float* x, int32_t n, int32_t h, int32_t w,
                     const float* residual, float* y) {
  if (!c || !x || !y || n < 0) return fail(SPE_ERR_INVALID_ARGUMENT, "null conv/x/y or n < 0");
  if (const spe_status st = check_input(c->p, h, w); st != SPE_OK) return st;
  if (n == 0) return SPE_OK;

  // The layer's workspace if it is free, else a private one (see the top of this file).
  std::unique_lock<std::mutex> lock(c->mu, std::try_to_lock);
  ConvGeometry own;
  std::vector<float> own_buf;
  const ConvGeometry* g;
  float* xb;
  if (lock.owns_lock()) {
    if (c->geo.h != h || c->geo.w != w) {
      c->xbuf_zeroed = false;
      build_geometry(c, h, w, &c->geo);
    }
    if (!c->geo.direct && !c->xbuf_zeroed) {  // make_planes writes only the image pixels
      c->xbuf.assign(std::max<size_t>(size_t(c->geo.xbuf_floats), c->xbuf.size()), 0.0f);
      c->xbuf_zeroed = true;
    }
    g = &c->geo;
    xb = c->xbuf.data();
  } else {
    build_geometry(c, h, w, &own);
    if (!own.direct) own_buf.assign(size_t(own.xbuf_floats), 0.0f);
    g = &own;
    xb = own_buf.data();
  }

  const auto& p = c->p;
  const int O = p.out_channels, ho = g->ho, wo = g->wo;
  const int64_t in_img = int64_t(p.in_channels) * h * w;
  const int64_t out_img = int64_t(O) * ho * wo;
  const bool crop = g->wp != wo;  // virtual pixels differ from real ones
  const SpmmKernels* k = c->k;
  const int tile_px = k->nv[c->main_rows - 1] * k->width;
  const int64_t n_tiles = (g->P + tile_px - 1) / tile_px;
  const int64_t G = int64_t(c->row0.size());
  auto& pool = ThreadPool::global();
  const int threads = pool.num_threads();
  // Shares: a layer that reads more per pixel than it writes (a projection; the input's
  // stride phases count) on a large image has its tiles cut into one contiguous run per thread (split.h),
  // each run's items ordered band -> group -> tile as below: no band is read by two threads
  // (with bands alone, a thread that took a band's last groups read the whole band again: the
  // project 1x1s of MobileNetV2 ran as long on two threads as on one), and thread t reads the
  // pixels it wrote last. Otherwise one share, and the threads split each band's groups
  // (output rows): an expanding layer writes whole output rows, its small input read by all.
  const bool reduces = int64_t(p.in_channels) * g->n_phases >= O;
  const int64_t shares =
      reduces && pixel_parts(int64_t(ho) * wo, threads) > 1 && n_tiles >= 4 * threads ? threads : 1;
  // Share s: pixels [ps[s], ps[s + 1]), near-equal runs of whole vectors (in whole tiles,
  // 28x28's 16.3 tiles left one thread 9 and the other 7.3); its items from io[s] on, one per
  // (tile, group): no empty ones past a short last band, and the pool's thread t takes about
  // the t-th run of them.
  std::vector<int64_t> ps(size_t(shares) + 1), io(size_t(shares) + 1, 0);
  const int64_t nvec = (g->P + k->width - 1) / k->width;
  int64_t share_tiles = 0;
  for (int64_t s = 0; s <= shares; ++s) {
    ps[s] = std::min<int64_t>(g->P, part_begin(nvec, shares, s) * k->width);
    if (s == 0) continue;
    const int64_t tiles = (ps[s] - ps[s - 1] + tile_px - 1) / tile_px;
    io[s] = io[s - 1] + tiles * G;
    share_tiles = std::max(share_tiles, tiles);
  }
  const int64_t items = io[shares];
  // Bands of pixel tiles whose input (all channels and phases of the tiles) fits ~1 MiB.
  const int64_t tile_in_bytes = int64_t(p.in_channels) * g->n_phases * tile_px * 4;
  const int64_t band_tiles = std::clamp<int64_t>((int64_t(1) << 20) / std::max<int64_t>(1, tile_in_bytes), 1,
                                                 share_tiles);
  const int64_t grain = std::max<int64_t>(1, items / (int64_t(threads) * 16));
  // K stages (run_stages): a 1x1 projection's entries cut by input channel, one run of channels
  // per thread, the runs' partial sums handed on tile by tile.
  const int stages = k_stages(c, *g, threads);
  std::vector<int64_t> cuts;
  if (stages > 1) cuts = stage_cuts(c, stages);

  for (int b = 0; b < n; ++b) {
    const float* xin = x + b * in_img;
    if (!g->direct) {
      make_planes(c, *g, xin, xb, int(shares));
      xin = xb;
    }
    ItemPlan ip{c, g, k, xin, y + b * out_img, residual ? residual + b * out_img : nullptr,
                G, tile_px, band_tiles, shares, ps.data(), io.data(), crop};
    if (stages > 1) {
      ip.cuts = cuts.data();
      ip.stages = stages;
      run_stages(ip, items, pool);
      continue;
    }
    pool.parallel_for(items, grain, [&](int64_t ib, int64_t ie) {
      alignas(64) float tbuf[kMaxGroupRows * kMaxTilePixels];
      TileArgs a{};
      for (int64_t it = ib; it < ie; ++it) ip.run(it, -1, a, tbuf);
    });
  }
  return SPE_OK;
}

// Validates and builds a layer; see spe_sparse_conv_create. Runs inside the C API guard.
spe_status create_layer(const spe_conv_params* params, int32_t n_groups, const int32_t* group_row0,
                        const int32_t* group_rows, const int64_t* group_ptr,
                        const int32_t* entry_col, const float* values, const float* bias,
                        spe_activation act, const char* isa, spe_sparse_conv** out) {
  if (!params || !out) return fail(SPE_ERR_INVALID_ARGUMENT, "null params/out");
  const spe_conv_params& p = *params;
  if (const spe_status st = check_packed_conv_params(p); st != SPE_OK) return st;
  if (int64_t(p.in_channels) * p.kh * p.kw > (int64_t(1) << 31) - 1)
    return fail(SPE_ERR_INVALID_ARGUMENT, "in_channels * kh * kw overflows int32 columns");
  if (act < SPE_ACT_NONE || act > SPE_ACT_LAST_) return fail(SPE_ERR_INVALID_ARGUMENT, "unknown activation");
  const SpmmKernels* k = pick(isa);
  if (!k) return fail(SPE_ERR_UNSUPPORTED_ISA, std::string("ISA not available on this CPU/build: ") + (isa ? isa : "null"));
  const int64_t ncols = int64_t(p.in_channels) * p.kh * p.kw;
  int64_t n_entries = 0, nvals = 0;
  std::vector<int> hist;
  if (const spe_status st = check_row_groups(p.out_channels, n_groups, group_row0, group_rows, group_ptr,
                                             kMaxGroupRows, kMaxEntries, &nvals, &hist);
      st != SPE_OK)
    return st;
  n_entries = n_groups > 0 ? group_ptr[n_groups] : 0;
  if ((n_entries > 0 && !entry_col) || (nvals > 0 && !values))
    return fail(SPE_ERR_INVALID_ARGUMENT, "null entry_col/values for a layer with entries");
  for (int64_t e = 0; e < n_entries; ++e)
    if (entry_col[e] < 0 || entry_col[e] >= ncols)
      return fail(SPE_ERR_INVALID_ARGUMENT, "entry column " + std::to_string(entry_col[e]) + " out of range [0, " + std::to_string(ncols) + ")");
  auto c = std::make_unique<spe_sparse_conv>();
  c->p = p;
  c->K = p.kh * p.kw;
  c->act = act;
  c->k = k;
  int64_t v = 0;
  for (int g = 0; g < n_groups; ++g) {
    c->vptr.push_back(v);
    v += (group_ptr[g + 1] - group_ptr[g]) * group_rows[g];
  }
  c->row0.assign(group_row0, group_row0 + n_groups);
  c->rows.assign(group_rows, group_rows + n_groups);
  c->ptr.assign(group_ptr, group_ptr + n_groups + 1);
  if (n_groups == 0) c->ptr.assign(1, 0);
  c->col.assign(entry_col, entry_col + n_entries);
  c->values.assign(values, values + nvals);
  if (bias) c->bias.assign(bias, bias + p.out_channels);
  c->main_rows = int(std::max_element(hist.begin(), hist.end()) - hist.begin());
  if (c->main_rows == 0) c->main_rows = 1;
  c->name = k->name[c->main_rows - 1];
  *out = c.release();
  return SPE_OK;
}

}  // namespace
}  // namespace spe

using spe::ThreadPool;

extern "C" {

spe_status spe_sparse_conv_create(const spe_conv_params* params, int32_t n_groups,
                                  const int32_t* group_row0, const int32_t* group_rows,
                                  const int64_t* group_ptr, const int32_t* entry_col,
                                  const float* values, const float* bias, spe_activation act,
                                  const char* isa, spe_sparse_conv** out) {
  return spe::guarded("spe_sparse_conv_create", [&] {
    return spe::create_layer(params, n_groups, group_row0, group_rows, group_ptr, entry_col,
                             values, bias, act, isa, out);
  });
}

void spe_sparse_conv_output_size(const spe_sparse_conv* c, int32_t h, int32_t w, int32_t* ho,
                                 int32_t* wo) {
  spe::conv_output_size(c ? &c->p : nullptr, h, w, ho, wo);
}

int64_t spe_sparse_conv_nnz(const spe_sparse_conv* c) { return c ? int64_t(c->values.size()) : 0; }
const char* spe_sparse_conv_kernel_name(const spe_sparse_conv* c) { return c ? c->name.c_str() : ""; }
void spe_sparse_conv_destroy(spe_sparse_conv* c) { delete c; }

spe_status spe_sparse_conv_run(spe_sparse_conv* c, const float* x, int32_t n, int32_t h,
                               int32_t w, const float* residual, float* y) {
  return spe::guarded("spe_sparse_conv_run",
                      [&] { return spe::run_layer(c, x, n, h, w, residual, y); });
}

void spe_set_num_threads(int32_t n) {
  try {
    ThreadPool::global().set_num_threads(n);
  } catch (...) {  // no pool at all (out of memory): the kernels' callers will report it
  }
}

spe_status spe_set_parallel_runtime(const spe_parallel_runtime* rt) {
  return spe::guarded("spe_set_parallel_runtime", [&] {
    if (rt != nullptr && rt->launch != nullptr && rt->num_threads == nullptr)
      return spe::fail(SPE_ERR_INVALID_ARGUMENT,
                       "spe_set_parallel_runtime: launch is set but num_threads is NULL");
    ThreadPool::global().set_runtime(rt != nullptr && rt->launch != nullptr ? rt : nullptr);
    return SPE_OK;
  });
}

int32_t spe_get_num_threads(void) {
  try {
    return ThreadPool::global().num_threads();
  } catch (...) {
    return 1;
  }
}

const char* spe_last_error(void) { return spe::last_error(); }

}  // extern "C"
