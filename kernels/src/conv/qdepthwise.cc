// An int8 depthwise conv layer (spe.h, "int8 depthwise"): NCHW4 u8 in and out, one kh x kw s8
// filter per channel, the requantization of the int8 conv fused into the store.
//
// Work items are (image, channel quad, block of up to 8 output rows). An item lays out the input
// rows its block reads, once each, padded with the input's zero point (whose products the
// per-channel correction cancels) and split into their column phases for strides > 1, so every
// tap reads a row's bytes aligned with the output's; the variant's dw_row (qspmm/
// qtile_template.h) sums the taps for 4 * wo bytes at a time and requantizes. A variant with a
// direct path (QDwDirectArgs: AVX-512 VBMI, 3x3-class kernels at stride 1 or 2) reads the plane
// in place instead, with no row buffers: 96x112x112 stride 2 went 165 -> 65 us, 576x14x14 38 ->
// 23 us, 960x7x7 26 -> 15 us at 1 thread (session 18). A layer keeps no per-call state.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../common/error.h"
#include "../common/threadpool.h"
#include "../qspmm/qspmm.h"
#include "geometry.h"
#include "row_groups.h"
#include "spe/spe.h"

using spe::fail;

struct spe_qdepthwise {
  spe_conv_params p{};
  int Q = 1, taps = 1;
  std::vector<int32_t> w;                  // per quad: taps x 4 (channels past C: 0)
  std::vector<int32_t> corr;               // per quad: 16 lanes
  std::vector<float> scale, bias;          // per quad: 16 lanes
  float res_scale = 1.0f, six = 0.0f;
  int32_t res_zero = 0, out_zero = 0;
  uint8_t pad = 0;                         // the input's zero point
  int act = 0;
  const spe::QSpmmKernels* k = nullptr;
  std::string name;
  // the variant's permute path (QDwRowsArgs), when it has one and the geometry suits it
  bool permute = false;
  std::vector<uint8_t> pidx;
  std::vector<int8_t> pwpat;
  // the variant's direct path (QDwDirectArgs: the plane read in place), for 3x3-class kernels
  bool direct = false;
};

namespace spe {
namespace {

spe_status create(const spe_conv_params* params, const int8_t* weight, const spe_qconv_quant* q,
                  spe_activation act, const char* isa, spe_qdepthwise** out) {
  if (!params || !out || !q || !weight || !q->weight_scale)
    return fail(SPE_ERR_INVALID_ARGUMENT, "null params/weight/quant/weight_scale/out");
  const spe_conv_params& p = *params;
  if (const spe_status st = check_packed_conv_params(p); st != SPE_OK) return st;
  if (p.in_channels != p.out_channels)
    return fail(SPE_ERR_INVALID_ARGUMENT, "a depthwise conv has as many output channels as input ones");
  if (p.kh * p.kw > 1024) return fail(SPE_ERR_INVALID_ARGUMENT, "int8 depthwise kernels take at most 1024 taps");
  if (q->input_layout != SPE_QLAYOUT_NCHW4 || q->output_layout != SPE_QLAYOUT_NCHW4)
    return fail(SPE_ERR_INVALID_ARGUMENT, "the int8 depthwise conv reads and writes NCHW4 (SPE_QLAYOUT_NCHW4)");
  if (act != SPE_ACT_NONE && act != SPE_ACT_RELU && act != SPE_ACT_RELU6)
    return fail(SPE_ERR_INVALID_ARGUMENT, "int8 layers fuse no activation but ReLU / ReLU6 (got " + std::to_string(int(act)) + ")");
  for (const auto& qp : {q->input, q->output, q->residual})
    if (!(std::isfinite(qp.scale) && qp.scale > 0.0f) || qp.zero_point < 0 || qp.zero_point > 255)
      return fail(SPE_ERR_INVALID_ARGUMENT, "input / output / residual (scale, zero point) must be finite > 0, 0..255");
  QVariant v;
  const QSpmmKernels* k = parse_qvariant(isa ? isa : "auto", &v) ? qspmm_kernels(v) : nullptr;
  if (!k) return fail(SPE_ERR_UNSUPPORTED_ISA, std::string("int8 variant not available on this CPU/build: ") + (isa ? isa : "null"));
  auto c = std::make_unique<spe_qdepthwise>();
  const int C = p.in_channels, T = p.kh * p.kw, Q = (C + 3) / 4;
  c->p = p;
  c->Q = Q;
  c->taps = T;
  c->k = k;
  c->act = int(act);
  c->pad = uint8_t(q->input.zero_point);
  c->w.assign(size_t(Q) * T * 4, 0);
  c->corr.assign(size_t(Q) * 16, 0);
  c->scale.assign(size_t(Q) * 16, 0.0f);
  c->bias.assign(size_t(Q) * 16, 0.0f);
  const double sy = q->output.scale;
  for (int ch = 0; ch < C; ++ch) {
    const float ws = q->weight_scale[ch];
    if (!(std::isfinite(ws) && ws > 0.0f) || (q->bias && !std::isfinite(q->bias[ch])))
      return fail(SPE_ERR_INVALID_ARGUMENT, "channel " + std::to_string(ch) + ": weight scale must be finite > 0, bias finite");
    int64_t wsum = 0;
    for (int t = 0; t < T; ++t) {
      c->w[(size_t(ch / 4) * T + t) * 4 + ch % 4] = weight[size_t(ch) * T + t];
      wsum += weight[size_t(ch) * T + t];
    }
    const float sc = float(double(q->input.scale) * ws / sy), b = q->bias ? float(q->bias[ch] / sy) : 0.0f;
    if (!std::isfinite(sc) || !std::isfinite(b))
      return fail(SPE_ERR_INVALID_ARGUMENT, "channel " + std::to_string(ch) + ": the folded scale overflows float");
    for (int l = ch % 4; l < 16; l += 4) {
      c->corr[size_t(ch / 4) * 16 + l] = int32_t(-int64_t(q->input.zero_point) * wsum);
      c->scale[size_t(ch / 4) * 16 + l] = sc;
      c->bias[size_t(ch / 4) * 16 + l] = b;
    }
  }
  c->res_scale = float(double(q->residual.scale) / sy);
  c->res_zero = q->residual.zero_point;
  c->six = float(6.0 / sy);
  if (!std::isfinite(c->res_scale) || !std::isfinite(c->six))
    return fail(SPE_ERR_INVALID_ARGUMENT, "the residual scale (or 6) over the output scale overflows float");
  c->out_zero = q->output.zero_point;
  c->name = std::string("qs8_dwconv__") + k->variant;
  c->permute = k->dw_rows != nullptr && p.kh <= 32 && p.kw <= 16 &&
               3 * int64_t(p.stride_w) + int64_t(p.kw - 1) * p.dil_w + 1 <= 16;
  if (c->permute) {
    const int groups = qdw_groups(p.kw);
    c->pidx.resize(size_t(groups) * 64);
    c->pwpat.resize(size_t(Q) * p.kh * groups * 64);
    qdw_permute_tables(c->w.data(), Q, p.kh, p.kw, p.stride_w, p.dil_w, c->pidx.data(), c->pwpat.data());
  }
  c->direct = c->permute && k->dw_direct && p.kh == 3 && p.kw <= 4 && p.dil_h == 1 && p.dil_w == 1 &&
              p.stride_h == p.stride_w && p.stride_w <= 2;
  *out = c.release();
  return SPE_OK;
}

// The last quad's channels past C: the output's zero point (whatever a residual holds there,
// its weights being 0, the requantization alone would give zy only for a residual at its zero
// point).
void zero_pad_channels(const spe_qdepthwise* c, int64_t qd, uint8_t* y, int64_t pixels) {
  const int C = c->p.in_channels;
  if (qd != c->Q - 1 || C % 4 == 0) return;
  const uint8_t zy = uint8_t(c->out_zero);
  for (int64_t i = 0; i < pixels; ++i)
    for (int t = C % 4; t < 4; ++t) y[4 * i + t] = zy;
}

// The direct path: items (image, quad, block of output rows) read the plane in place, so a
// block is as tall as the work split allows (rows it shares with the next block are read by
// both: 1 or 2 of them)
void run_direct(const spe_qdepthwise* c, const uint8_t* x, int32_t n, int32_t h, int32_t w,
                const uint8_t* residual, uint8_t* y, int64_t ho, int64_t wo) {
  const auto& p = c->p;
  const int64_t in_img = int64_t(c->Q) * h * w * 4, out_img = int64_t(c->Q) * ho * wo * 4;
  const int64_t planes = int64_t(n) * c->Q, threads = ThreadPool::global().num_threads();
  // at least 4 items a thread; blocks of at most 32 rows keep a block's input in L1
  const int64_t split = std::max<int64_t>(1, (4 * threads + planes - 1) / planes);
  const int64_t blk = std::max<int64_t>(1, std::min<int64_t>(32, (ho + split - 1) / split)), n_blk = (ho + blk - 1) / blk;
  const int64_t items = planes * n_blk;
  const std::vector<uint8_t> pad_row(size_t(4 * int64_t(w) + 128), c->pad);  // read for rows outside the plane
  ThreadPool::global().parallel_for(items, std::max<int64_t>(1, items / (4 * threads)), [&](int64_t ib, int64_t ie) {
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / (int64_t(c->Q) * n_blk), qd = it / n_blk % c->Q, bi = it % n_blk;
      const int64_t oy0 = bi * blk, oy1 = std::min<int64_t>(ho, oy0 + blk);
      const int64_t at = b * out_img + (qd * ho + oy0) * wo * 4;
      const QDwRowArgs d{nullptr, c->w.data() + qd * c->taps * 4, c->taps, int(wo * 4), y + at,
                         residual ? residual + at : nullptr, c->corr.data() + qd * 16,
                         c->scale.data() + qd * 16, c->bias.data() + qd * 16, c->res_scale,
                         c->six, c->res_zero, c->out_zero, c->act};
      c->k->dw_direct(QDwDirectArgs{x + b * in_img + qd * int64_t(h) * w * 4, h, w, p.pad_h, p.pad_w, p.stride_w,
                                    p.kw, int(oy0), int(oy1 - oy0), int(wo), c->pad, pad_row.data() + 64, c->pwpat.data() + qd * 3 * 64,
                                    c->pidx.data(), d});
      zero_pad_channels(c, qd, y + at, (oy1 - oy0) * wo);
    }
  });
}

spe_status run(const spe_qdepthwise* c, const uint8_t* x, int32_t n, int32_t h, int32_t w,
               const uint8_t* residual, uint8_t* y) {
  if (!c || !x || !y || n < 0) return fail(SPE_ERR_INVALID_ARGUMENT, "null layer/x/y or n < 0");
  const auto& p = c->p;
  const int64_t ho = out_dim(h, p.pad_h, p.dil_h, p.kh, p.stride_h), wo = out_dim(w, p.pad_w, p.dil_w, p.kw, p.stride_w);
  if (h <= 0 || w <= 0 || ho <= 0 || wo <= 0)
    return fail(SPE_ERR_INVALID_ARGUMENT, "input " + std::to_string(h) + "x" + std::to_string(w) + " too small for the kernel/padding");
  const int sw = p.stride_w, kh = p.kh, kw = p.kw, T = c->taps;
  // padded row: the words the output row's windows read (left padding included)
  const int64_t need = (wo - 1) * sw + int64_t(kw - 1) * p.dil_w + 1;
  const int64_t per_phase = (need + sw - 1) / sw;
  if (need > (int64_t(1) << 28) || int64_t(h) * w > (int64_t(1) << 40) / c->Q)
    return fail(SPE_ERR_INVALID_ARGUMENT, "input too large for the int8 depthwise conv");
  if (n == 0) return SPE_OK;
  if (c->direct) {
    run_direct(c, x, n, h, w, residual, y, ho, wo);
    return SPE_OK;
  }
  const int64_t in_img = int64_t(c->Q) * h * w * 4, out_img = int64_t(c->Q) * ho * wo * 4;
  // Items: (image, quad, block of output rows); a block prepares each input row it reads once
  // (padded, phase-split), and its output rows take their taps from those.
  // Blocks of 8 output rows; a small plane (at most 256 output pixels: 14x14, 7x7) in one
  // block, where an item's fixed costs (its rows prepared, the call) were a third of the layer
  const int64_t blk = ho * wo <= 256 ? ho : std::min<int64_t>(ho, 8), n_blk = (ho + blk - 1) / blk;
  const int64_t items = int64_t(n) * c->Q * n_blk;
  const int64_t span = (blk - 1) * p.stride_h + int64_t(kh - 1) * p.dil_h + 1;  // input rows a block reads
  // The variant's permute path (dw_rows) reads the padded rows as they are, 64 bytes a block
  // of 4 output pixels: a row's stride gets 128 bytes of slack, and no phase split.
  const bool permute = c->permute;
  const int64_t row_bytes = sw * per_phase * 4 + (permute ? 128 : 0);
  // chunks of several items: each chunk allocates its row buffers once
  const int64_t grain = std::max<int64_t>(1, items / (4 * int64_t(ThreadPool::global().num_threads())));
  ThreadPool::global().parallel_for(items, grain, [&](int64_t ib, int64_t ie) {
    // the pad byte everywhere once: a row then only gets its pixels (or pad bytes where it is
    // outside the image) between its left padding and its slack, which no row writes (a
    // memset of every row, then the copy, was a quarter of the layer's time at 144x56x56)
    std::vector<uint8_t> rows(size_t(span * row_bytes + 64), c->pad), padded(size_t(row_bytes + 64), c->pad);
    std::vector<const uint8_t*> src(static_cast<size_t>(T));
    // SW: the column phases a row is split into (1 on the permute path); NP: padded pixels a row
    const int64_t W = w, H = h, PW = p.pad_w, PP = per_phase, SW = permute ? 1 : sw, RB = row_bytes,
                  NP = per_phase * sw;
    const uint8_t pad = c->pad;
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / (int64_t(c->Q) * n_blk), qd = it / n_blk % c->Q, bi = it % n_blk;
      const int64_t oy0 = bi * blk, oy1 = std::min<int64_t>(ho, oy0 + blk);
      const int64_t iy0 = oy0 * p.stride_h - p.pad_h;
      const int64_t n_rows = (oy1 - 1 - oy0) * p.stride_h + int64_t(kh - 1) * p.dil_h + 1;
      const uint8_t* xq = x + b * in_img + qd * H * W * 4;
      for (int64_t r = 0; r < n_rows; ++r) {   // each input row once: padded, phase-split
        const int64_t iy = iy0 + r;
        uint8_t* dst = rows.data() + r * RB;
        uint8_t* pr = SW == 1 ? dst : padded.data();
        const int64_t n_px = std::min<int64_t>(W, NP - PW);
        if (n_px > 0) {
          if (iy >= 0 && iy < H) std::memcpy(pr + PW * 4, xq + iy * W * 4, size_t(n_px * 4));
          else std::memset(pr + PW * 4, pad, size_t(n_px * 4));
        }
        if (SW > 1)  // phase q holds padded words q, q + sw, ... (4-byte moves, no calls)
          for (int64_t q = 0; q < SW; ++q) {
            uint8_t* to = dst + q * PP * 4;
            for (int64_t j = 0; j < PP; ++j) {
              uint32_t v;
              std::memcpy(&v, pr + (j * SW + q) * 4, 4);
              std::memcpy(to + j * 4, &v, 4);
            }
          }
      }
      if (permute) {  // the whole block in one call
        const int64_t at = b * out_img + (qd * ho + oy0) * wo * 4;
        const QDwRowArgs d{nullptr, c->w.data() + qd * T * 4, T, int(wo * 4), y + at,
                           residual ? residual + at : nullptr, c->corr.data() + qd * 16,
                           c->scale.data() + qd * 16, c->bias.data() + qd * 16, c->res_scale,
                           c->six, c->res_zero, c->out_zero, c->act};
        c->k->dw_rows(QDwRowsArgs{rows.data(), RB, int(oy1 - oy0), p.stride_h, p.dil_h, kh, kw, sw,
                                  p.dil_w, int(wo), wo * 4,
                                  c->pwpat.data() + qd * kh * qdw_groups(kw) * 64, c->pidx.data(), d});
        zero_pad_channels(c, qd, y + at, (oy1 - oy0) * wo);
        continue;
      }
      for (int64_t oy = oy0; oy < oy1; ++oy) {
        const int64_t at = b * out_img + (qd * ho + oy) * wo * 4;
        QDwRowArgs d{src.data(), c->w.data() + qd * T * 4, T, int(wo * 4), y + at,
                     residual ? residual + at : nullptr, c->corr.data() + qd * 16,
                     c->scale.data() + qd * 16, c->bias.data() + qd * 16, c->res_scale, c->six,
                     c->res_zero, c->out_zero, c->act};
        for (int ky = 0; ky < kh; ++ky) {
          const uint8_t* phases = rows.data() + ((oy - oy0) * p.stride_h + int64_t(ky) * p.dil_h) * RB;
          for (int kx = 0; kx < kw; ++kx) {
            const int64_t off = int64_t(kx) * p.dil_w;
            src[size_t(ky * kw + kx)] = phases + ((off % SW) * PP + off / SW) * 4;
          }
        }
        c->k->dw_row(d);
        zero_pad_channels(c, qd, y + at, wo);
      }
    }
  });
  return SPE_OK;
}

}  // namespace
}  // namespace spe

extern "C" {

spe_status spe_qdepthwise_create(const spe_conv_params* params, const int8_t* weight,
                                 const spe_qconv_quant* quant, spe_activation act, const char* isa,
                                 spe_qdepthwise** out) {
  return spe::guarded("spe_qdepthwise_create", [&] { return spe::create(params, weight, quant, act, isa, out); });
}

spe_status spe_qdepthwise_run(spe_qdepthwise* c, const uint8_t* x, int32_t n, int32_t h, int32_t w,
                              const uint8_t* residual, uint8_t* y) {
  return spe::guarded("spe_qdepthwise_run", [&] { return spe::run(c, x, n, h, w, residual, y); });
}

void spe_qdepthwise_output_size(const spe_qdepthwise* c, int32_t h, int32_t w, int32_t* ho, int32_t* wo) {
  spe::conv_output_size(c ? &c->p : nullptr, h, w, ho, wo);
}

const char* spe_qdepthwise_kernel_name(const spe_qdepthwise* c) { return c ? c->name.c_str() : ""; }
void spe_qdepthwise_destroy(spe_qdepthwise* c) { delete c; }

}  // extern "C"
