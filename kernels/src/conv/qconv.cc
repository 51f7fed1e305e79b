// A packed int8 conv / linear layer (spe.h, "int8 conv") and its execution.
//
// run(): 1. the geometry of this input size (spe.h's phase planes, with the channels in quads);
//        2. the u8 input as quad planes: the phase planes of 4 channels interleaved into one
//        32-bit word per pixel (from NCHW an interleave, from NCHW4 word copies; an NCHW4 input
//        to a 1x1 stride-1 unpadded conv is its own quad planes and is read in place), the
//        zero padding and the channels past C written as the input's zero point once per input
//        size; 3. the SpMM over (band, row group, pixel tile) items in the thread pool, each
//        tile requantized into y as it is stored (NCHW4: a group of whole quads of rows by the
//        tile itself, 4 rows' bytes into each pixel's word, where the variant can (kernels'
//        quads); otherwise into a stage, then interleaved into quads), or, where virtual output
//        pixels differ from real ones, its s32 sums kept in a small buffer and requantized into
//        y right after (crop).
// The workspace of the last input size is cached under a try_lock, as in sparse_conv.cc: a call
// that finds it busy works in a buffer of its own, with the same result.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../common/error.h"
#include "../common/threadpool.h"
#include "../isa/isa.h"
#include "../qspmm/qspmm.h"
#include "../spmm/spmm.h"
#include "geometry.h"
#include "interleave.h"
#include "qglue.h"
#include "row_groups.h"
#include "spe/spe.h"

using spe::fail;

namespace spe {

struct QGeometry {
  int h = -1, w = -1, ho = 0, wo = 0, hp = 0, wp = 0, n_phases = 0;
  int64_t plane = 0, quad_stride = 0, P = 0, xbuf_words = 0;
  int phase_index[64] = {};
  int row_phases[8] = {};
  int n_row_phases = 0;
  std::vector<int32_t> offsets;  // per entry, in words
};

}  // namespace spe

struct spe_qconv {
  spe_conv_params p{};
  int K = 1, Q = 1;  // kh * kw; input channel quads
  std::vector<int32_t> row0, rows, col;
  std::vector<int64_t> ptr, vptr;
  std::vector<int8_t> values;        // the variant's weight quads (s8, or s16 for avx2)
  std::vector<int32_t> corr;         // -(zx - x_bias) * sum of row o's weights
  std::vector<float> scale, bias;    // sx * sw[o]; bias (zeros without one)
  int64_t nnz = 0;
  spe::QEpilogue epi{};
  uint8_t pad_byte = 0;              // the input's zero point (padding, channels past C)
  spe_qparams in_q{}, out_q{};       // the input's and output's (spe_qconv_run_linear)
  int in_layout = SPE_QLAYOUT_NCHW, out_layout = SPE_QLAYOUT_NCHW;
  std::vector<uint8_t> pad_row;      // the output's zero point, a tile wide (NCHW4 rows past O)
  const spe::QSpmmKernels* k = nullptr;
  std::string name;
  int main_rows = 1;

  // the variant's direct path (QConvDirectArgs: one input quad, NCHW4 in and out, a spatial
  // kernel: the stems), when it has one and the geometry suits: the dense weights per quad as the lanes read them, the lanes'
  // constants (channels past O: 0, then their bytes set to zy)
  bool direct = false, packed = false;   // packed: QConvDirectArgs::chans > 0
  std::vector<int8_t> dwv;
  std::vector<uint8_t> pidx;               // the packed form's gathers
  std::vector<int32_t> dcorr;
  std::vector<float> dscale, dbias;

  std::mutex mu;
  spe::QGeometry geo;
  std::vector<uint8_t> xbuf;
  bool xbuf_ready = false;
};

namespace spe {
namespace {

// Columns (channel quads x 4 x taps) a layer may have: every s32 sum, and its zero-point
// correction, stays exact (255 * 128 * 65536 < 2^31).
constexpr int64_t kMaxQColumns = 65536;
constexpr int64_t kMaxQEntries = int64_t(1) << 40;
constexpr int64_t kMaxQWorkspaceWords = (int64_t(1) << 29) - 1;  // 2 GiB of planes

bool finite_positive(float f) { return std::isfinite(f) && f > 0.0f; }

spe_status check_qparams(const spe_qparams& q, const char* what) {
  if (!finite_positive(q.scale) || !std::isfinite(1.0f / q.scale))
    return fail(SPE_ERR_INVALID_ARGUMENT, std::string(what) + " scale must be finite and > 0 (got " +
                                              std::to_string(q.scale) + ")");
  if (q.zero_point < 0 || q.zero_point > 255)
    return fail(SPE_ERR_INVALID_ARGUMENT, std::string(what) + " zero point must be in [0, 255] (got " +
                                              std::to_string(q.zero_point) + ")");
  return SPE_OK;
}

bool quad_geometry(const spe_qconv* c, int h, int w, QGeometry* g, std::string* why) {
  const auto& p = c->p;
  g->h = g->w = -1;  // set once g is complete: a failed or interrupted build is never taken for one
  const int64_t ho = out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h);
  const int64_t wo = out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w);
  if (h <= 0 || w <= 0 || ho <= 0 || wo <= 0) {
    *why = "input " + std::to_string(h) + "x" + std::to_string(w) + " too small for the kernel/padding";
    return false;
  }
  const int64_t hp = ho + (int64_t(p.dil_h) * (p.kh - 1)) / p.stride_h;
  const int64_t wp = wo + (int64_t(p.dil_w) * (p.kw - 1)) / p.stride_w;
  int n = 0, row_used[8] = {};
  std::fill(std::begin(g->phase_index), std::end(g->phase_index), -1);
  for (int ky = 0; ky < p.kh; ++ky)
    for (int kx = 0; kx < p.kw; ++kx) {
      const int py = (ky * p.dil_h) % p.stride_h;
      const int ph = py * p.stride_w + (kx * p.dil_w) % p.stride_w;
      if (g->phase_index[ph] < 0) g->phase_index[ph] = n++;
      row_used[py] = 1;
    }
  const int64_t limit = kMaxQWorkspaceWords - wp - 64;
  if (limit <= 0 || hp > limit / wp || int64_t(c->Q) * n > limit / (hp * wp)) {
    *why = "input " + std::to_string(h) + "x" + std::to_string(w) + " too large for this layer (" +
           std::to_string(p.in_channels) + " channels): its quad planes would exceed 2 GiB";
    return false;
  }
  g->ho = int(ho);
  g->wo = int(wo);
  g->hp = int(hp);
  g->wp = int(wp);
  g->n_phases = n;
  g->n_row_phases = 0;
  for (int py = 0; py < p.stride_h; ++py)
    if (row_used[py]) g->row_phases[g->n_row_phases++] = py;
  g->plane = hp * wp;
  g->quad_stride = g->plane * n;
  g->P = ho * wp;
  g->xbuf_words = c->Q * g->quad_stride + wp + 64;
  g->offsets.resize(c->col.size());
  for (size_t e = 0; e < c->col.size(); ++e) {
    const int q = c->col[e] / c->K, kk = c->col[e] % c->K;
    const int ky = kk / p.kw, kx = kk % p.kw;
    const int ph = ((ky * p.dil_h) % p.stride_h) * p.stride_w + (kx * p.dil_w) % p.stride_w;
    g->offsets[e] = int32_t(q * g->quad_stride + g->phase_index[ph] * g->plane +
                            int64_t((ky * p.dil_h) / p.stride_h) * wp + (kx * p.dil_w) / p.stride_w);
  }
  g->h = h;
  g->w = w;
  return true;
}

// One image x (NCHW, or NCHW4: (ceil(C / 4), H, W, 4)) -> the image part of the quad planes
// (the borders and the channels past C hold the pad byte already). From NCHW4 a plane row is
// whole words: a copy (stride 1) or a gather of every sw-th word.
void make_qplanes(const spe_qconv* c, const QGeometry& g, const uint8_t* x, uint8_t* xb) {
  const auto& p = c->p;
  const int sh = p.stride_h, sw = p.stride_w, wp = g.wp, C = p.in_channels;
  const int64_t H = g.h, W = g.w;
  const bool quads = c->in_layout == SPE_QLAYOUT_NCHW4;
  int j0[8], j1[8];
  for (int px = 0; px < sw; ++px) {
    const int64_t base = px - p.pad_w;
    j0[px] = int(std::min<int64_t>(wp, base >= 0 ? 0 : (-base + sw - 1) / sw));
    j1[px] = int(std::max<int64_t>(j0[px], std::min<int64_t>(wp, (W - base + sw - 1) / sw)));
  }
  const int nrp = g.n_row_phases;
  const int64_t items = int64_t(c->Q) * nrp;
  ThreadPool::global().parallel_for(items, 1, [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int q = int(it / nrp), py = g.row_phases[it % nrp];
      const int64_t base_r = py - p.pad_h;
      const int64_t i0 = base_r >= 0 ? 0 : (-base_r + sh - 1) / sh;
      const int64_t i1 = std::min<int64_t>(g.hp, (H - base_r + sh - 1) / sh);
      const bool whole = 4 * q + 4 <= C;
      for (int px = 0; px < sw; ++px) {
        const int idx = g.phase_index[py * sw + px];
        if (idx < 0) continue;
        uint8_t* dst = xb + 4 * (q * g.quad_stride + idx * g.plane);
        const int n = j1[px] - j0[px];
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t src = (i * sh + base_r) * W + int64_t(j0[px]) * sw + px - p.pad_w;
          uint8_t* d = dst + 4 * (i * wp + j0[px]);
          if (quads) {
            const uint8_t* s = x + 4 * (q * H * W + src);
            if (sw == 1) {
              std::memcpy(d, s, size_t(4) * n);
            } else {
              for (int j = 0; j < n; ++j) std::memcpy(d + 4 * j, s + 4 * int64_t(j) * sw, 4);
            }
          } else if (sw == 1 && whole) {
            const uint8_t* s = x + int64_t(4 * q) * H * W + src;
            interleave4(s, s + H * W, s + 2 * H * W, s + 3 * H * W, d, n);
          } else {
            for (int t = 0; t < 4 && 4 * q + t < C; ++t) {
              const uint8_t* s = x + int64_t(4 * q + t) * H * W + src;
              for (int j = 0; j < n; ++j) d[4 * j + t] = s[int64_t(j) * sw];
            }
          }
        }
      }
    }
  });
}

// The rows [r0, r0 + R) of a run of n output pixels, computed into stage (row stride ss), into
// an NCHW4 output y4 (out_px pixels a quad plane) at pixel dst. A quad the group covers whole
// is interleaved as words (its rows past O, in the last quad, get the output's zero point);
// one it shares with another group gets its own bytes only (that group writes the others,
// maybe on another thread at once: bytes, never a read-modify-write of the word).
void put_quads(uint8_t* y4, int64_t out_px, int O, int r0, int R, const uint8_t* stage, int ss,
               int64_t dst, int n, const uint8_t* pad_row) {
  for (int qo = r0 / 4; qo <= (r0 + R - 1) / 4; ++qo) {
    uint8_t* d = y4 + 4 * (qo * out_px + dst);
    const int lo = 4 * qo, hi = std::min(4 * qo + 4, O);
    if (lo >= r0 && hi <= r0 + R) {
      const uint8_t* s[4];
      for (int t = 0; t < 4; ++t) s[t] = lo + t < O ? stage + (lo + t - r0) * ss : pad_row;
      interleave4(s[0], s[1], s[2], s[3], d, n);
      continue;
    }
    const bool pads = r0 + R == O;  // this group has row O - 1: it writes the pad rows too
    for (int t = 0; t < 4; ++t) {
      const int row = lo + t;
      const bool own = row >= r0 && row < r0 + R;
      if (!own && !(pads && row >= O)) continue;
      const uint8_t* sr = own ? stage + (row - r0) * ss : pad_row;
      for (int j = 0; j < n; ++j) d[4 * j + t] = sr[j];
    }
  }
}

// The inverse for a residual: rows [r0, r0 + R) of n pixels at src of an NCHW4 tensor, into
// stage (row stride ss).
void get_quads(const uint8_t* r4, int64_t out_px, int r0, int R, int64_t src, int n,
               uint8_t* stage, int ss) {
  for (int rr = 0; rr < R; ++rr) {
    const int row = r0 + rr;
    const uint8_t* s = r4 + 4 * ((row / 4) * out_px + src) + row % 4;
    uint8_t* d = stage + rr * ss;
    for (int j = 0; j < n; ++j) d[j] = s[4 * j];
  }
}

// The most pixels a tile of r rows runs as a gemv tile (QSpmmKernels::gemv) rather than a
// pixel tile: measured per variant in kernels/README.md ("int8 gemv tiles").
inline int gemv_pix(const QSpmmKernels* k, int r) {
  if (!k->gemv[r - 1][0]) return 0;
  return r >= 4 ? kQGemvMaxPix : 2;
}

// One (band, group, tile) item of image b: the tile's sums requantized into y, in either layout.
struct QItems {
  const spe_qconv* c;
  const QGeometry* g;
  const uint8_t* xb;   // the image's quad planes
  uint8_t* y;          // the image's output
  const uint8_t* res;  // the image's residual, or null
  int64_t G, tile_px, n_tiles, band_tiles, out_px;
  bool crop, quads_out;

  // The gemv tile of group gi at pixels [q, q + npix): it requantizes and stores each row
  // itself (QTileArgs::quads: NCHW4); the NCHW4 channels past O get the output's zero point.
  void run_gemv(QTileFn f, QTileArgs& a, int64_t gi, int r, int64_t q, int npix) const {
    const int64_t stride = quads_out ? 4 * out_px : out_px, at = quads_out ? 4 * q : q;
    a.x = xb + 4 * q;
    a.off = g->offsets.data() + c->ptr[gi];
    a.w = c->values.data() + c->vptr[gi];
    a.n_entries = c->ptr[gi + 1] - c->ptr[gi];
    a.row0 = c->row0[gi];
    a.npix = npix;
    a.acc_out = nullptr;
    a.n_sub = 1;
    a.quads = quads_out;
    a.y = y + at;
    a.y_row_stride = stride;
    a.res = res ? res + at : nullptr;
    a.res_row_stride = stride;
    f(a);
    const int O = c->p.out_channels;
    if (quads_out && a.row0 + r == O)
      for (int o = O; o % 4; ++o)
        for (int p = 0; p < npix; ++p) a.y[(o >> 2) * stride + 4 * p + (o & 3)] = uint8_t(c->epi.out_zero);
  }

  void run(int64_t it, QTileArgs& a, int32_t* tbuf, uint8_t* stage, uint8_t* rstage) const {
    const QSpmmKernels* k = c->k;
    const int64_t band = it / (G * band_tiles), t0 = band * band_tiles;
    const int64_t nt = std::min(band_tiles, n_tiles - t0), rem = it - t0 * G;
    const int64_t gi = rem / nt, t = t0 + rem % nt;
    const int r = c->rows[gi], r0 = c->row0[gi], O = c->p.out_channels, wo = g->wo;
    const int64_t p0 = t * tile_px, p1 = std::min<int64_t>(g->P, p0 + tile_px);
    const int sub = k->nv[r - 1] * k->width;
    for (int64_t q = p0; q < p1; q += int64_t(sub) * a.n_sub) {
      const int npix = int(std::min<int64_t>(sub, p1 - q));
      // a few pixels: the gemv tile (rows in the lanes)
      if (!crop && npix <= gemv_pix(k, r)) {
        run_gemv(k->gemv[r - 1][npix - 1], a, gi, r, q, npix);
        continue;
      }
      a.x = xb + 4 * q;
      a.off = g->offsets.data() + c->ptr[gi];
      a.w = c->values.data() + c->vptr[gi];
      a.n_entries = c->ptr[gi + 1] - c->ptr[gi];
      a.row0 = r0;
      a.npix = npix;
      a.acc_out = crop ? tbuf : nullptr;
      a.acc_row_stride = sub;
      // NCHW4 out of whole quads of rows: the tile interleaves them itself (no stage)
      a.quads = !crop && quads_out && k->quads && r % 4 == 0 && r0 % 4 == 0;
      if (a.quads) {
        a.y = y + 4 * ((r0 / 4) * out_px + q);
        a.y_row_stride = 4 * out_px;
        a.res = res ? res + 4 * ((r0 / 4) * out_px + q) : nullptr;
        a.res_row_stride = 4 * out_px;
      } else if (!crop && !quads_out) {  // NCHW, every virtual pixel real: straight into y
        a.y = y + r0 * out_px + q;
        a.y_row_stride = out_px;
        a.res = res ? res + r0 * out_px + q : nullptr;
        a.res_row_stride = out_px;
      } else if (!crop) {  // NCHW4: rows into the stage, then interleaved into quads
        if (res) get_quads(res, out_px, r0, r, q, npix, rstage, sub);
        a.y = stage;
        a.y_row_stride = sub;
        a.res = res ? rstage : nullptr;
        a.res_row_stride = sub;
      }
      // whole tiles stored straight into y run in one call (QTileArgs::n_sub)
      a.n_sub = npix == sub && !crop && (a.quads || !quads_out) ? int((p1 - q) / sub) : 1;
      if (npix == sub) k->full[r - 1](a);
      else k->tail[r - 1][(npix + k->width - 1) / k->width - 1](a);
      if (!crop) {
        if (quads_out && !a.quads) put_quads(y, out_px, O, r0, r, stage, sub, q, npix, c->pad_row.data());
        continue;
      }
      for (int64_t pos = q, end = q + npix; pos < end;) {  // the real pixels of the tile
        const int64_t i = pos / g->wp;
        const int j = int(pos - i * g->wp);
        const int64_t row_end = std::min<int64_t>(end, (i + 1) * g->wp);
        const int j1 = int(std::min<int64_t>(row_end - i * g->wp, wo));
        const int64_t dst = i * wo + j;
        if (j < j1 && quads_out) {
          if (res) get_quads(res, out_px, r0, r, dst, j1 - j, rstage, sub);
          for (int rr = 0; rr < r; ++rr)
            k->epi_row(stage + rr * sub, tbuf + rr * sub + (pos - q), res ? rstage + rr * sub : nullptr,
                       j1 - j, c->epi, r0 + rr);
          put_quads(y, out_px, O, r0, r, stage, sub, dst, j1 - j, c->pad_row.data());
        } else if (j < j1) {
          for (int rr = 0; rr < r; ++rr) {
            const int64_t at = (r0 + rr) * out_px + dst;
            k->epi_row(y + at, tbuf + rr * sub + (pos - q), res ? res + at : nullptr, j1 - j, c->epi,
                       r0 + rr);
          }
        }
        pos = row_end;
      }
    }
  }
};

// The direct path's tables from the packed groups (create_qlayer's arguments, checked).
void setup_direct(spe_qconv* c, int32_t n_groups, const int32_t* group_row0, const int32_t* group_rows,
                  const int64_t* group_ptr, const int32_t* entry_quad, const int8_t* values) {
  const auto& p = c->p;
  const int O = p.out_channels, OQ = (O + 3) / 4, T = c->K;
  c->direct = c->k->conv_direct && c->Q == 1 && c->in_layout == SPE_QLAYOUT_NCHW4 &&
              c->out_layout == SPE_QLAYOUT_NCHW4 && p.dil_h == 1 && p.dil_w == 1 && p.stride_h == p.stride_w &&
              p.stride_w <= 2 && 3 * p.stride_w + p.kw <= 16 && p.kh <= kQDirectMaxRows && T > 1 && OQ <= kQDirectMaxQuads &&
              c->k->x_bias == 0;
  if (!c->direct) return;
  // the packed form where the variant has it: fewer than 4 input channels, their weights 4 to a
  // quad across taps (QConvDirectArgs::chans)
  const int C = p.in_channels, J = (T * C + 3) / 4;
  c->packed = c->k->conv_packed && C < 4 && J <= kQPackedMaxQuads && c->k->conv_packed(p.kh, p.kw, C);
  const int NW = c->packed ? J : T;   // weight quads per output quad
  c->dwv.assign(size_t(OQ) * NW * 64, 0);
  int64_t vi = 0;
  for (int g = 0; g < n_groups; ++g)
    for (int64_t e = group_ptr[g]; e < group_ptr[g + 1]; ++e)
      for (int rr = 0; rr < group_rows[g]; ++rr, ++vi) {
        const int o = group_row0[g] + rr, tap = entry_quad[e] % T;
        for (int t = 0; t < 4; ++t) {
          // (weight quad, byte) of tap `tap`, channel t: t itself, or f = tap * C + t packed
          const int f = tap * C + t, j = c->packed ? f / 4 : tap, byte = c->packed ? f % 4 : t;
          if (c->packed && t >= C) continue;   // a channel past C: its weight is 0 (checked)
          for (int l = o % 4; l < 16; l += 4) c->dwv[(size_t(o / 4) * NW + j) * 64 + 4 * l + byte] = values[vi * 4 + t];
        }
      }
  if (c->packed) {   // lane l's byte b of quad j: input pixel (l / 4) * stride + kx, channel ch
    c->pidx.assign(size_t(J) * 64, 0);
    for (int j = 0; j < J; ++j) {
      const int ra = (4 * j) / (p.kw * C);
      for (int l = 0; l < 16; ++l)
        for (int b = 0; b < 4; ++b) {
          const int f = 4 * j + b;
          if (f >= T * C) continue;   // past the window: weight 0, any byte
          const int ky = f / (p.kw * C), kx = f / C % p.kw, ch = f % C;
          c->pidx[size_t(j) * 64 + 4 * l + b] = uint8_t(((l / 4) * p.stride_w + kx) * 4 + ch + (ky > ra ? 64 : 0));
        }
    }
  }
  c->dcorr.assign(size_t(OQ) * 16, 0);
  c->dscale.assign(size_t(OQ) * 16, 0.0f);
  c->dbias.assign(size_t(OQ) * 16, 0.0f);
  for (int o = 0; o < O; ++o)
    for (int l = o % 4; l < 16; l += 4) {
      c->dcorr[size_t(o / 4) * 16 + l] = c->corr[o];
      c->dscale[size_t(o / 4) * 16 + l] = c->scale[o];
      c->dbias[size_t(o / 4) * 16 + l] = c->bias[o];
    }
  c->name = std::string(c->packed ? "qs8_conv_packed__" : "qs8_conv_direct__") + c->k->variant;
}

// The direct path: items (image, block of output rows), the input plane read in place.
spe_status run_direct(const spe_qconv* c, const uint8_t* x, int32_t n, int32_t h, int32_t w,
                      const uint8_t* residual, uint8_t* y) {
  const auto& p = c->p;
  const int64_t ho = out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h), wo = out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w);
  if (h <= 0 || w <= 0 || ho <= 0 || wo <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "input " + std::to_string(h) + "x" + std::to_string(w) + " too small for the kernel/padding");
  if (int64_t(h) * w > (int64_t(1) << 36) || w > (1 << 28))
    return fail(SPE_ERR_INVALID_ARGUMENT, "input too large for the int8 conv");
  if (n == 0) return SPE_OK;
  const int O = p.out_channels, OQ = (O + 3) / 4;
  const int64_t in_img = int64_t(h) * w * 4, plane = ho * wo * 4, out_img = OQ * plane;
  const int64_t threads = ThreadPool::global().num_threads();
  const int64_t blk = std::max<int64_t>(1, std::min<int64_t>(8, ho * n / (4 * threads))), n_blk = (ho + blk - 1) / blk;
  const std::vector<uint8_t> pad_row(size_t(4 * int64_t(w) + 128), c->pad_byte);
  const uint8_t zy = uint8_t(c->epi.out_zero);
  ThreadPool::global().parallel_for(int64_t(n) * n_blk, 1, [&](int64_t ib, int64_t ie) {
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / n_blk, oy0 = it % n_blk * blk, rows = std::min<int64_t>(blk, ho - oy0);
      uint8_t* yb = y + b * out_img + oy0 * wo * 4;
      c->k->conv_direct(QConvDirectArgs{x + b * in_img, pad_row.data() + 64, h, w, p.pad_h, p.pad_w, p.stride_w,
                                        p.kh, p.kw, int(oy0), int(rows), int(wo), OQ, plane, c->dwv.data(),
                                        c->dcorr.data(), c->dscale.data(), c->dbias.data(), c->epi.res_scale,
                                        c->epi.six, c->epi.res_zero, c->epi.out_zero, c->epi.act, yb,
                                        residual ? residual + (yb - y) : nullptr, c->pad_byte,
                                        c->packed ? p.in_channels : 0, c->pidx.data()});
      if (O % 4)  // the last quad's channels past O: the zero point (whatever a residual holds)
        for (int64_t i = 0; i < rows * wo; ++i)
          for (int t = O % 4; t < 4; ++t) yb[(OQ - 1) * plane + 4 * i + t] = zy;
    }
  });
  return SPE_OK;
}

spe_status run_qlayer(spe_qconv* c, const uint8_t* x, int32_t n, int32_t h, int32_t w,
                      const uint8_t* residual, uint8_t* y) {
  if (!c || !x || !y || n < 0) return fail(SPE_ERR_INVALID_ARGUMENT, "null conv/x/y or n < 0");
  if (c->direct) return run_direct(c, x, n, h, w, residual, y);
  std::string why;
  QGeometry own;
  std::vector<uint8_t> own_buf;
  const QGeometry* g;
  std::unique_lock<std::mutex> lock(c->mu, std::try_to_lock);
  if (lock.owns_lock() && c->geo.h == h && c->geo.w == w) {
    g = &c->geo;
  } else {
    QGeometry* dst = lock.owns_lock() ? &c->geo : &own;
    if (lock.owns_lock()) c->xbuf_ready = false;
    if (!quad_geometry(c, h, w, dst, &why)) return fail(SPE_ERR_INVALID_ARGUMENT, why);
    g = dst;
  }
  if (n == 0) return SPE_OK;
  const auto& p = c->p;
  // NCHW4 input to a 1x1 stride-1 unpadded conv: the input is its quad planes, read in place
  const bool in_place = c->in_layout == SPE_QLAYOUT_NCHW4 && p.kh == 1 && p.kw == 1 &&
                        p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  uint8_t* xb = nullptr;
  if (in_place) {
  } else if (lock.owns_lock()) {
    if (!c->xbuf_ready) {
      c->xbuf.assign(size_t(g->xbuf_words) * 4, c->pad_byte);
      c->xbuf_ready = true;
    }
    xb = c->xbuf.data();
  } else {
    own_buf.assign(size_t(g->xbuf_words) * 4, c->pad_byte);
    xb = own_buf.data();
  }

  const int O = p.out_channels;
  const int64_t out_px = int64_t(g->ho) * g->wo;
  const int64_t in_img = c->in_layout == SPE_QLAYOUT_NCHW4 ? int64_t(c->Q) * 4 * h * w : int64_t(p.in_channels) * h * w;
  const int64_t out_img = c->out_layout == SPE_QLAYOUT_NCHW4 ? int64_t((O + 3) / 4) * 4 * out_px : int64_t(O) * out_px;
  const QSpmmKernels* k = c->k;
  auto& pool = ThreadPool::global();
  // An item is up to 8 of the main kernel's tiles of one group (run in one call where whole,
  // QTileArgs::n_sub), fewer where that leaves under 32 items a thread
  const int64_t sub_px = k->nv[c->main_rows - 1] * k->width;
  const int64_t G = int64_t(c->row0.size());
  const int64_t tile_px = sub_px * std::clamp<int64_t>((g->P + sub_px - 1) / sub_px * G /
                                                           (int64_t(pool.num_threads()) * 32), 1, 8);
  const int64_t n_tiles = (g->P + tile_px - 1) / tile_px;
  const int64_t items = n_tiles * G;
  // Bands of tiles whose input (every quad and phase of the tiles) fits ~1 MiB; items ordered
  // band -> group -> tile, so a band stays in L2 while the groups walk it.
  const int64_t tile_in_bytes = int64_t(c->Q) * g->n_phases * tile_px * 4;
  const int64_t band_tiles = std::clamp<int64_t>((int64_t(1) << 20) / std::max<int64_t>(1, tile_in_bytes), 1, n_tiles);
  const int64_t grain = std::max<int64_t>(1, items / (int64_t(pool.num_threads()) * 16));
  for (int b = 0; b < n; ++b) {
    const uint8_t* xin = x + b * in_img;
    if (!in_place) make_qplanes(c, *g, xin, xb);
    const QItems qi{c, g, in_place ? xin : xb, y + b * out_img, residual ? residual + b * out_img : nullptr,
                    G, tile_px, n_tiles, band_tiles, out_px, g->wp != g->wo,
                    c->out_layout == SPE_QLAYOUT_NCHW4};
    pool.parallel_for(items, grain, [&](int64_t ib, int64_t ie) {
      alignas(64) int32_t tbuf[kQMaxGroupRows * kQMaxTilePixels];
      alignas(64) uint8_t stage[kQMaxGroupRows * kQMaxTilePixels];
      alignas(64) uint8_t rstage[kQMaxGroupRows * kQMaxTilePixels];
      QTileArgs a{};
      a.epi = &c->epi;
      for (int64_t it = ib; it < ie; ++it) qi.run(it, a, tbuf, stage, rstage);
    });
  }
  return SPE_OK;
}

spe_status create_qlayer(const spe_conv_params* params, int32_t n_groups, const int32_t* group_row0,
                         const int32_t* group_rows, const int64_t* group_ptr, const int32_t* entry_quad,
                         const int8_t* values, const spe_qconv_quant* quant, spe_activation act,
                         const char* isa, spe_qconv** out) {
  if (!params || !out || !quant) return fail(SPE_ERR_INVALID_ARGUMENT, "null params/quant/out");
  const spe_conv_params& p = *params;
  if (const spe_status st = check_packed_conv_params(p); st != SPE_OK) return st;
  const int64_t Q = (int64_t(p.in_channels) + 3) / 4, K = int64_t(p.kh) * p.kw;
  if (Q * 4 * K > kMaxQColumns)
    return fail(SPE_ERR_INVALID_ARGUMENT, "int8 layer too deep: in_channels (rounded up to 4) * kh * kw = " +
                                              std::to_string(Q * 4 * K) + " exceeds 65536 (int32 sums would overflow)");
  if (act != SPE_ACT_NONE && act != SPE_ACT_RELU && act != SPE_ACT_RELU6)
    return fail(SPE_ERR_INVALID_ARGUMENT, "int8 layers fuse no activation but ReLU / ReLU6 (got " + std::to_string(int(act)) + ")");
  for (const auto& [qp, what] : {std::pair{quant->input, "input"}, std::pair{quant->output, "output"},
                                 std::pair{quant->residual, "residual"}})
    if (const spe_status st = check_qparams(qp, what); st != SPE_OK) return st;
  if (!quant->weight_scale) return fail(SPE_ERR_INVALID_ARGUMENT, "null weight_scale");
  for (const int32_t layout : {quant->input_layout, quant->output_layout})
    if (layout != SPE_QLAYOUT_NCHW && layout != SPE_QLAYOUT_NCHW4)
      return fail(SPE_ERR_INVALID_ARGUMENT, "unknown int8 layout " + std::to_string(layout) +
                                                " (SPE_QLAYOUT_NCHW 0, SPE_QLAYOUT_NCHW4 1)");
  for (int o = 0; o < p.out_channels; ++o) {
    if (!finite_positive(quant->weight_scale[o]))
      return fail(SPE_ERR_INVALID_ARGUMENT, "weight scale of output channel " + std::to_string(o) + " must be finite and > 0");
    if (quant->bias && !std::isfinite(quant->bias[o]))
      return fail(SPE_ERR_INVALID_ARGUMENT, "bias of output channel " + std::to_string(o) + " is not finite");
  }
  QVariant v;
  const QSpmmKernels* k = parse_qvariant(isa ? isa : "auto", &v) ? qspmm_kernels(v) : nullptr;
  if (!k) return fail(SPE_ERR_UNSUPPORTED_ISA, std::string("int8 variant not available on this CPU/build: ") + (isa ? isa : "null"));
  std::vector<int> hist;
  int64_t nvals = 0;
  if (const spe_status st = check_row_groups(p.out_channels, n_groups, group_row0, group_rows, group_ptr,
                                             kQMaxGroupRows, kMaxQEntries, &nvals, &hist);
      st != SPE_OK)
    return st;
  nvals *= 4;  // 4 weights (a quad) per entry and row
  const int64_t n_entries = n_groups > 0 ? group_ptr[n_groups] : 0;
  if ((n_entries > 0 && !entry_quad) || (nvals > 0 && !values))
    return fail(SPE_ERR_INVALID_ARGUMENT, "null entry_quad/values for a layer with entries");
  for (int64_t e = 0; e < n_entries; ++e)
    if (entry_quad[e] < 0 || entry_quad[e] >= Q * K)
      return fail(SPE_ERR_INVALID_ARGUMENT, "entry quad column " + std::to_string(entry_quad[e]) + " out of range [0, " + std::to_string(Q * K) + ")");
  auto c = std::make_unique<spe_qconv>();
  c->p = p;
  c->K = int(K);
  c->Q = int(Q);
  c->k = k;
  c->row0.assign(group_row0, group_row0 + n_groups);
  c->rows.assign(group_rows, group_rows + n_groups);
  c->ptr.assign(group_ptr, group_ptr + n_groups + 1);
  if (n_groups == 0) c->ptr.assign(1, 0);
  c->col.assign(entry_quad, entry_quad + n_entries);
  // Weight quads in the variant's form; row sums for the zero point's correction; a weight of
  // a channel past in_channels must be 0 (those plane bytes hold the zero point, not data).
  std::vector<int64_t> wsum(size_t(p.out_channels), 0);
  c->values.resize(size_t(nvals / 4 * k->w_bytes));
  int64_t vi = 0;
  for (int g = 0; g < n_groups; ++g) {
    c->vptr.push_back(vi * k->w_bytes);
    const int r = group_rows[g];
    for (int64_t e = group_ptr[g]; e < group_ptr[g + 1]; ++e)
      for (int rr = 0; rr < r; ++rr, ++vi)
        for (int t = 0; t < 4; ++t) {
          const int8_t wv = values[vi * 4 + t];
          if (wv != 0 && (entry_quad[e] / K) * 4 + t >= p.in_channels)
            return fail(SPE_ERR_INVALID_ARGUMENT, "group " + std::to_string(g) + " has a non-zero weight for input channel " +
                                                      std::to_string((entry_quad[e] / K) * 4 + t) + " >= in_channels");
          wsum[size_t(group_row0[g] + rr)] += wv;
          c->nnz += wv != 0;
          if (k->w_bytes == 4) c->values[size_t(vi * 4 + t)] = wv;
          else {
            const int16_t w16 = wv;
            std::memcpy(&c->values[size_t(vi * 8 + 2 * t)], &w16, 2);
          }
        }
  }
  // The requantization in units of the output's scale (qspmm.h): the constants folded in
  // double, rounded once to float.
  const int32_t zx = quant->input.zero_point, x_bias = k->x_bias;
  const double sy = quant->output.scale;
  c->corr.resize(size_t(p.out_channels));
  c->scale.resize(size_t(p.out_channels));
  c->bias.assign(size_t(p.out_channels), 0.0f);
  for (int o = 0; o < p.out_channels; ++o) {
    c->corr[o] = int32_t(-(zx - x_bias) * wsum[o]);
    c->scale[o] = float(double(quant->input.scale) * quant->weight_scale[o] / sy);
    if (quant->bias) c->bias[o] = float(quant->bias[o] / sy);
    if (!std::isfinite(c->scale[o]) || !std::isfinite(c->bias[o]))
      return fail(SPE_ERR_INVALID_ARGUMENT, "output channel " + std::to_string(o) + ": input scale x weight scale (or bias) " +
                                                "over the output scale overflows float; the output scale is too small");
  }
  c->pad_byte = uint8_t(zx);
  c->in_q = quant->input;
  c->out_q = quant->output;
  c->in_layout = quant->input_layout;
  c->out_layout = quant->output_layout;
  c->pad_row.assign(kQMaxTilePixels, uint8_t(quant->output.zero_point));
  c->epi = QEpilogue{c->corr.data(), c->scale.data(), c->bias.data(),
                     float(double(quant->residual.scale) / sy), quant->residual.zero_point,
                     float(6.0 / sy), quant->output.zero_point, int(act)};
  if (!std::isfinite(c->epi.res_scale) || !std::isfinite(c->epi.six))
    return fail(SPE_ERR_INVALID_ARGUMENT, "the residual scale (or 6) over the output scale overflows float");
  c->main_rows = int(std::max_element(hist.begin(), hist.end()) - hist.begin());
  if (c->main_rows == 0) c->main_rows = 1;
  c->name = k->name[c->main_rows - 1];
  setup_direct(c.get(), n_groups, group_row0, group_rows, group_ptr, entry_quad, values);
  *out = c.release();
  return SPE_OK;
}

// spe_qconv_run_linear: the rows quantized into the (1, Q, 1, rows, 4) image the 1x1 layer
// reads in place, the layer, its NCHW4 output dequantized into rows.
spe_status run_linear(spe_qconv* c, const float* x, int32_t rows, float* y) {
  if (!c || !x || !y) return fail(SPE_ERR_INVALID_ARGUMENT, "null conv/x/y");
  const auto& p = c->p;
  if (p.kh != 1 || p.kw != 1 || p.stride_h != 1 || p.stride_w != 1 || p.pad_h != 0 || p.pad_w != 0 ||
      c->in_layout != SPE_QLAYOUT_NCHW4 || c->out_layout != SPE_QLAYOUT_NCHW4)
    return fail(SPE_ERR_INVALID_ARGUMENT, "a linear run needs a 1x1, stride-1, unpadded layer with NCHW4 "
                                          "input and output layouts");
  if (rows < 0) return fail(SPE_ERR_INVALID_ARGUMENT, "rows must be >= 0, got " + std::to_string(rows));
  if (rows == 0) return SPE_OK;
  const int64_t Q = (int64_t(p.in_channels) + 3) / 4, OQ = (int64_t(p.out_channels) + 3) / 4;
  // per calling thread, grown and kept: a fresh buffer past malloc's mmap threshold (128x3072
  // bytes and up) was mapped, faulted in and unmapped on every call
  thread_local std::vector<uint8_t> xq, yq;
  xq.resize(size_t(4 * Q * rows));   // every byte written below (the pad channels too)
  yq.resize(size_t(4 * OQ * rows));
  if (spe_status st = quantize_rows(x, rows, p.in_channels, c->in_q, xq.data()); st != SPE_OK) return st;
  if (spe_status st = run_qlayer(c, xq.data(), 1, 1, rows, nullptr, yq.data()); st != SPE_OK) return st;
  return dequantize_rows(yq.data(), rows, p.out_channels, c->out_q, y);
}

// y = act(y + res) over `count` floats on the best ISA's fp32 epilogue (SpmmKernels::act_row),
// in parallel runs of at most 2^16 floats.
spe_status float_epilogue(float* y, const float* res, int64_t count, int act) {
  const SpmmKernels* sk = spmm_kernels(best_isa());
  if (!sk) return fail(SPE_ERR_UNSUPPORTED_ISA, "no fp32 epilogue for this CPU");
  constexpr int64_t kRun = int64_t(1) << 16;
  ThreadPool::global().parallel_for((count + kRun - 1) / kRun, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t at = r * kRun;
      sk->act_row(y + at, y + at, res ? res + at : nullptr, int(std::min(kRun, count - at)), act);
    }
  });
  return SPE_OK;
}

// spe_qconv_run_float: x quantized NCHW -> NCHW4, the layer, its NCHW4 output dequantized to NCHW,
// then post_act(y + residual) in float.
spe_status run_float(spe_qconv* c, const float* x, int32_t n, int32_t h, int32_t w, const float* residual,
                     int post_act, float* y) {
  if (!c || !x || !y || n < 0) return fail(SPE_ERR_INVALID_ARGUMENT, "null conv/x/y or n < 0");
  if (post_act < SPE_ACT_NONE || post_act > SPE_ACT_LAST_)
    return fail(SPE_ERR_INVALID_ARGUMENT, "unknown activation " + std::to_string(post_act));
  if (c->in_layout != SPE_QLAYOUT_NCHW4 || c->out_layout != SPE_QLAYOUT_NCHW4)
    return fail(SPE_ERR_INVALID_ARGUMENT, "a float run needs NCHW4 input and output layouts");
  int32_t ho = 0, wo = 0;
  spe_qconv_output_size(c, h, w, &ho, &wo);
  if (h <= 0 || w <= 0 || ho <= 0 || wo <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "input " + std::to_string(h) + "x" + std::to_string(w) +
                                              " too small for the kernel/padding");
  if (n == 0) return SPE_OK;
  const auto& p = c->p;
  const int64_t Q = (int64_t(p.in_channels) + 3) / 4, OQ = (int64_t(p.out_channels) + 3) / 4;
  if (int64_t(n) * Q * h * w > (int64_t(1) << 34) || int64_t(n) * OQ * ho * wo > (int64_t(1) << 34))
    return fail(SPE_ERR_INVALID_ARGUMENT, "input too large for a float run");
  // per calling thread, grown and kept (as run_linear's)
  thread_local std::vector<uint8_t> xq, yq;
  xq.resize(size_t(4 * Q * n * h * w));
  yq.resize(size_t(4 * OQ * n * ho * wo));
  if (spe_status st = spe_quantize(x, n, p.in_channels, h, w, c->in_q, SPE_QLAYOUT_NCHW4, xq.data()); st != SPE_OK)
    return st;
  if (spe_status st = run_qlayer(c, xq.data(), n, h, w, nullptr, yq.data()); st != SPE_OK) return st;
  if (spe_status st = spe_dequantize(yq.data(), n, p.out_channels, ho, wo, c->out_q, SPE_QLAYOUT_NCHW4, y);
      st != SPE_OK)
    return st;
  if (!residual && post_act == SPE_ACT_NONE) return SPE_OK;
  return float_epilogue(y, residual, int64_t(n) * p.out_channels * ho * wo, post_act);
}

}  // namespace
}  // namespace spe

extern "C" {

spe_status spe_qconv_run_float(spe_qconv* c, const float* x, int32_t n, int32_t h, int32_t w,
                               const float* residual, spe_activation post_act, float* y) {
  return spe::guarded("spe_qconv_run_float",
                      [&] { return spe::run_float(c, x, n, h, w, residual, int(post_act), y); });
}

spe_status spe_qconv_run_linear(spe_qconv* c, const float* x, int32_t rows, float* y) {
  return spe::guarded("spe_qconv_run_linear", [&] { return spe::run_linear(c, x, rows, y); });
}

spe_status spe_qconv_create(const spe_conv_params* params, int32_t n_groups, const int32_t* group_row0,
                            const int32_t* group_rows, const int64_t* group_ptr, const int32_t* entry_quad,
                            const int8_t* values, const spe_qconv_quant* quant, spe_activation act,
                            const char* isa, spe_qconv** out) {
  return spe::guarded("spe_qconv_create", [&] {
    return spe::create_qlayer(params, n_groups, group_row0, group_rows, group_ptr, entry_quad, values,
                              quant, act, isa, out);
  });
}

spe_status spe_qconv_run(spe_qconv* c, const uint8_t* x, int32_t n, int32_t h, int32_t w,
                         const uint8_t* residual, uint8_t* y) {
  return spe::guarded("spe_qconv_run", [&] { return spe::run_qlayer(c, x, n, h, w, residual, y); });
}

void spe_qconv_output_size(const spe_qconv* c, int32_t h, int32_t w, int32_t* ho, int32_t* wo) {
  spe::conv_output_size(c ? &c->p : nullptr, h, w, ho, wo);
}

int64_t spe_qconv_nnz(const spe_qconv* c) { return c ? c->nnz : 0; }
const char* spe_qconv_kernel_name(const spe_qconv* c) { return c ? c->name.c_str() : ""; }
void spe_qconv_destroy(spe_qconv* c) { delete c; }

}  // extern "C"
