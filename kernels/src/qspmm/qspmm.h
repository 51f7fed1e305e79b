// Internal interface of the int8 SpMM microkernel family (the kernels: qspmm_list.h).
//
// Activations are u8 with a per-tensor zero point, weights s8 per output channel (symmetric,
// [-127, 127]), sums s32. The layer (conv/qconv.cc) lays its input out as "quad planes" (u8): the
// phase planes of spe.h's method with 4 consecutive input channels interleaved, one 32-bit word
// per (quad, pixel); an entry is a column quad (quad q at kernel tap k) and holds, per row of
// its group, the 4 weights of those channels. A microkernel computes one tile, R rows x NV
// vectors of pixels, summing each entry's words against each row's weight quad (vpdpbusd on
// AVX-512 VNNI, sdot on NEON dotprod, widening multiply-adds elsewhere), then requantizes.
//
// Requantization (every variant computes exactly these fp32 operations, in this order, so all
// match the scalar reference bit for bit), in units of the output's scale sy: with
// a = sum + corr[o] (the zero point's share, corr[o] = -(zx - x_bias) * sum of row o's weights,
// exact in int32),
//   v = fma(float(a), scale[o], bias[o])          scale[o] = sx * sw[o] / sy, bias[o] = b[o] / sy
//   v = fma(float(r - zr), res_scale, v)           with a u8 residual r: res_scale = sr / sy
//   v = max(v, 0); v = min(v, six)                 ReLU; ReLU6 (six = 6 / sy)
//   q = clamp(round_half_even(min(v, 512)) + zy, 0, 255)
// (a v below -2^31 converts to INT32_MIN, as x86's cvtps2dq and NEON's saturating fcvtns do, and
// clamps to 0). It is torch's fake quantization of the fp32 value sy * v up to the rounding of
// the folded constants (the scale products, 6 / sy), far below one output step.
//
// The vector variants compute the same bytes in fewer operations (the store is the int8
// layers' overhead over fp32's, most of the time on layers with few sums per output): corr is
// the accumulators' starting value, not an add per vector; the activation and the clamps are
// one max and one min in float (qclamp: v = min(max(v, lo), hi), so that round(v) + zy is
// already in [0, 255]); and the narrowing to bytes packs several vectors at once (kGroup).
// Six to eleven operations per vector of outputs instead of eleven to thirteen.
#ifndef SPE_QSPMM_QSPMM_H_
#define SPE_QSPMM_QSPMM_H_

#include <cstdint>

#include "../isa/table.h"

namespace spe {

// The family's variants: x86 AVX-512 needs VNNI (and BW) here, AArch64 has two (with and
// without the dot product), so they are not isa.h's ISAs. Most portable first.
#define SPE_QSPMM_VARIANTS(X) X(scalar) X(avx2) X(avx512vnni) X(neon) X(neondot)
enum class QVariant : int {
#define SPE_QV_ENUM(v) v,
  SPE_QSPMM_VARIANTS(SPE_QV_ENUM)
#undef SPE_QV_ENUM
};
#define SPE_QV_COUNT(v) +1
constexpr int kNumQVariants = 0 SPE_QSPMM_VARIANTS(SPE_QV_COUNT);
#undef SPE_QV_COUNT

struct QSpmmUkernel {
  QVariant variant;
  int rows, pixels;
  const char* name;
};

inline constexpr QSpmmUkernel kQSpmmUkernels[] = {
#define SPE_QSPMM_UKERNEL(v, rows, pixels) \
  {QVariant::v, rows, pixels, "qs8_spmm_" #rows "x" #pixels "__" #v},
#include "qspmm_list.h"
#undef SPE_QSPMM_UKERNEL
};
inline constexpr int kNumQSpmmUkernels = int(sizeof kQSpmmUkernels / sizeof kQSpmmUkernels[0]);

constexpr int kQMaxGroupRows = 8;
constexpr int kQMaxTileVectors = 16;

constexpr bool one_qkernel_per_variant_and_row_count() {
  for (int v = 0; v < kNumQVariants; ++v)
    for (int r = 1; r <= kQMaxGroupRows; ++r)
      if (count_listed(kQSpmmUkernels, [&](const QSpmmUkernel& u) {
            return int(u.variant) == v && u.rows == r;
          }) != 1)
        return false;
  return kNumQSpmmUkernels == kNumQVariants * kQMaxGroupRows;
}
static_assert(one_qkernel_per_variant_and_row_count(),
              "qspmm_list.h: every variant needs exactly one kernel for each row count 1..8");

constexpr int max_qtile_pixels() {
  int m = 0;
  for (const QSpmmUkernel& u : kQSpmmUkernels) m = u.pixels > m ? u.pixels : m;
  return m;
}
constexpr int kQMaxTilePixels = max_qtile_pixels();

// A layer's requantization constants (see the top of this file); the arrays are indexed by
// output channel.
struct QEpilogue {
  const int32_t* corr;
  const float* scale;  // sx * sw[o] / sy
  const float* bias;   // b[o] / sy; never null (zeros without a bias)
  float res_scale;     // sr / sy
  int32_t res_zero;    // zr
  float six;           // 6 / sy (ReLU6's bound in output units)
  int32_t out_zero;    // zy
  int act;             // SPE_ACT_NONE / RELU / RELU6
};

// The float clamp of the vector variants: v = min(max(v, lo), hi) with these bounds, then
// q = round_half_even(v) + zy (in [0, 255] as it is), gives the reference's q for every v,
// infinities included, when six >= 0 and 0 <= zy <= 255 (the layers check both: six = 6 / sy):
// without an activation, a v at or above 255 - zy rounds to at least that and clamps to 255,
// one at or below -zy to 0, and one between is left alone; with ReLU (ReLU6) the max with 0
// and the min with 255 - zy (and six) are the reference's max, min and upper clamp.
struct QClamp {
  float lo, hi;
};
inline QClamp qclamp(int act, float six, int32_t zy) {
  float hi = float(255 - zy);
  if (act == 2 && six < hi) hi = six;
  return {act >= 1 ? 0.0f : float(-zy), hi};
}

// One output channel's requantization constants as values (the scalar reference's).
struct QRowConst {
  int32_t corr, res_zero, out_zero;
  float scale, bias, res_scale, six;
  int act;
};

struct QTileArgs {
  const uint8_t* x;       // quad planes at pixel p0: word i is bytes [4 i, 4 i + 4); a partial
                          // tile reads no word past its last pixel (x may be the caller's)
  const int32_t* off;     // per-entry offset, in words
  const int8_t* w;        // per entry, `rows` weight quads of the variant's w_bytes each
  int64_t n_entries;
  int row0;               // the tile's first output channel (the epilogue's index)
  int npix;               // valid pixels in this tile (<= NV * width)
  uint8_t* y;             // output at (row0, p0), or null with acc_out
  int64_t y_row_stride;
  const uint8_t* res;     // residual at (row0, p0), or null
  int64_t res_row_stride;
  int32_t* acc_out;       // non-null: store the sums (s32, row stride acc_row_stride)
  int64_t acc_row_stride; //   instead of requantizing (cropped tiles: qepi_row does it later)
  const QEpilogue* epi;
  bool quads;             // NCHW4 output (QSpmmKernels::quads, rows a multiple of 4, row0 too):
                          // y and res point at quad plane row0 / 4 at p0, 4 bytes a pixel (its
                          // 4 channels), y_row_stride / res_row_stride the quad planes' stride
  int n_sub = 1;          // whole tiles run side by side (a full tile's call, no acc_out): tile
                          // s reads x + 4 s T and writes y / res + s T bytes (4 s T with quads),
                          // T = npix, the tile's pixels; the same entries and weights
};

using QTileFn = void (*)(const QTileArgs&);

// One output row of an int8 depthwise conv on one channel quad, NCHW4 (conv/qdepthwise.cc):
// y[j] (j < 4 * wo bytes: wo pixels x 4 channels) = requantize(sum over taps t of
// src[t][j] * w[t][j % 4] + corr[j % 4]), where src[t] are the tap's input bytes already
// aligned to the output pixels (phase-split and padded with the zero point by the caller), w the
// quad's weights (s32, 4 a tap), and the constants per lane (16-lane patterns: 4 channels
// repeated). Every variant matches the scalar reference bit for bit.
struct QDwRowArgs {
  const uint8_t* const* src;  // n_taps pointers
  const int32_t* w;           // n_taps x 4
  int n_taps;
  int n;                      // bytes in the row: 4 * wo
  uint8_t* y;
  const uint8_t* res;         // residual bytes aligned with y, or null
  const int32_t* corr;        // 16 lanes
  const float* scale;         // 16 lanes
  const float* bias;          // 16 lanes
  float res_scale, six;
  int32_t res_zero, out_zero;
  int act;
};
using QDwRowFn = void (*)(const QDwRowArgs&);

// The same row from the kh input rows themselves (padded with the zero point, pixel P at byte
// 4 P, 64 bytes of slack past each): for variants that gather a lane's taps with a byte
// permute and sum four taps of one channel per instruction (AVX-512 VBMI + VNNI: vpermb then
// vpdpbusd), when a block of 4 output pixels reads at most 16 input pixels (3 * stride +
// (kw - 1) * dilation < 16). The constants as in QDwRowArgs; w is the quad's kh x kw x 4.
struct QDwRowsArgs {
  const uint8_t* rows;         // the block's input rows, row_stride bytes apart
  int64_t row_stride;
  int n_out;                   // output rows of the block: output row r reads input rows
  int stride_h, dil_h;         //   r * stride_h + ky * dil_h, ky < kh
  int kh, kw, stride, dil;     // kernel, and the column stride and dilation
  int wo;                      // output pixels a row
  int64_t y_stride;            // bytes between output rows (4 * wo)
  // The permute's operands, made once per layer (qdw_permute_tables): per quad, [ky][group of
  // 4 taps] 64 s8 (lane l = pixel l / 4, channel l % 4: its 4 taps' weights), and [group] 64
  // byte indices into a 64-byte load of an input row (lane l's taps of its own channel).
  const int8_t* wpat;          // this quad's kh x groups x 64
  const uint8_t* idx;          // groups x 64
  QDwRowArgs d;                // y, res (at the block's first row) and the constants
};

// The permute path's tables for a layer (kernel kw, column stride and dilation): idx (groups x
// 64) and, from w (quads x kh*kw x 4 s32), wpat (quads x kh x groups x 64).
inline int qdw_groups(int kw) { return (kw + 3) / 4; }
inline void qdw_permute_tables(const int32_t* w, int quads, int kh, int kw, int stride, int dil,
                               uint8_t* idx, int8_t* wpat) {
  const int groups = qdw_groups(kw);
  for (int g = 0; g < groups; ++g)
    for (int l = 0; l < 64; ++l) {
      const int kx = 4 * g + l % 4, px = l / 16, ch = l / 4 % 4;
      idx[g * 64 + l] = uint8_t(kx < kw ? (px * stride + kx * dil) * 4 + ch : 0);
    }
  for (int q = 0; q < quads; ++q)
    for (int ky = 0; ky < kh; ++ky)
      for (int g = 0; g < groups; ++g)
        for (int l = 0; l < 64; ++l) {
          const int kx = 4 * g + l % 4, ch = l / 4 % 4;
          wpat[((int64_t(q) * kh + ky) * groups + g) * 64 + l] =
              int8_t(kx < kw ? w[(int64_t(q) * kh * kw + ky * kw + kx) * 4 + ch] : 0);
        }
}
using QDwRowsFn = void (*)(const QDwRowsArgs&);

// A block of output rows of a 3x3-class depthwise conv (kh 3, kw <= 4, dilation 1, the same
// stride 1 or 2 down and across) read from the quad's input plane itself: no row buffers and
// no copies. Pixels outside the plane (the padding) read as the input's zero point, taken by
// masked loads at the borders; the tables as QDwRowsArgs's (kh 3, one group).
struct QDwDirectArgs {
  const uint8_t* x;            // the quad's input plane: h rows of 4 * w bytes
  int h, w, pad_h, pad_w;
  int stride, kw;
  int oy0, n_out;              // output rows [oy0, oy0 + n_out), y at row oy0
  int wo;                      // output pixels a row
  uint8_t pad;                 // the input's zero point
  const uint8_t* pad_row;      // 4 * w bytes of it, with 64 more before and after
  const int8_t* wpat;          // this quad's 3 x 64
  const uint8_t* idx;          // 64
  QDwRowArgs d;                // y, res (at row oy0) and the constants
};
using QDwDirectFn = void (*)(const QDwDirectArgs&);

// A block of output rows of a conv with one input quad (at most 4 input channels: the stems),
// dense, NCHW4 in and out, read from the input plane in place like QDwDirectArgs: a lane holds
// (output pixel l / 4, output channel l % 4 of a quad) and sums a tap's 4 input channels in one
// vpdpbusd. kw taps across: a block of 4 output pixels reads at most 16 input pixels
// (3 * stride + kw <= 16); dilation 1, the same stride down and across (1 or 2).
struct QConvDirectArgs {
  const uint8_t* x;            // the image's input quad plane: h rows of 4 * w bytes
  const uint8_t* pad_row;      // 4 * w bytes of the input's zero point, 64 more before and after
  int h, w, pad_h, pad_w, stride, kh, kw;
  int oy0, n_out, wo;          // output rows [oy0, oy0 + n_out)
  int quads;                   // output quads
  int64_t plane;               // bytes between output quad planes (4 * ho * wo)
  const int8_t* wv;            // per quad: kh * kw taps x 64 s8 (lane l: channel l % 4's 4 weights)
  const int32_t* corr;         // per quad: 16 lanes
  const float* scale;          // per quad: 16 lanes
  const float* bias;           // per quad: 16 lanes
  float res_scale, six;
  int32_t res_zero, out_zero;
  int act;
  uint8_t* y;                  // quad 0, row oy0
  const uint8_t* res;          // residual bytes aligned with y, or null
  uint8_t pad;                 // the input's zero point
  // The packed form (QSpmmKernels::conv_packed; chans 1..3, fewer than a quad's 4 channels):
  // the window's real weights in order f = (ky * kw + kx) * chans + c, 4 to a weight quad, so
  // a 3x3 window of 3 channels takes 7 quads where one tap a quad takes 9. wv then holds, per
  // output quad, J = ceil(kh * kw * chans / 4) quads of 64 bytes (lane l: channel l % 4's
  // weights f = 4 j .. 4 j + 3, 0 past the last); lane l's input word of quad j is gathered
  // from window rows ra = 4 j / (kw * chans) and ra + 1 by the 64 vpermt2b byte indices
  // pidx[j] (bit 6: row ra + 1). chans 0: one tap a quad, as above.
  int chans = 0;
  const uint8_t* pidx = nullptr;   // J x 64
};
using QConvDirectFn = void (*)(const QConvDirectArgs&);
constexpr int kQDirectMaxQuads = 32;   // output quads a direct conv takes (128 channels)
constexpr int kQDirectMaxRows = 16;    // kernel rows (kh) a direct conv takes
constexpr int kQPackedMaxQuads = 64;   // weight quads of a packed window (kh * kw * chans <= 256)
// d[0..n) = requantize(acc[k] (+ res[k])) of output channel o: the tiles' own epilogue, for
// sums computed on virtual pixels and cropped.
using QEpiRowFn = void (*)(uint8_t* d, const int32_t* acc, const uint8_t* res, int n,
                           const QEpilogue& e, int o);

struct QSpmmKernels {
  const char* variant;
  int width;    // pixels per vector
  int x_bias;   // the kernels sum (x - x_bias) * w: 128 where they flip the u8 planes' top bit
                // as they load them (x ^ 0x80 = x - 128 as s8, for sdot / smull), else 0
  int w_bytes;  // bytes per weight quad: 4 (s8) or 8 (s16, for vpmaddwd)
  QEpiRowFn epi_row;
  QDwRowFn dw_row;
  QDwRowsFn dw_rows;  // or null (the variant or this CPU has no such path)
  QDwDirectFn dw_direct;  // or null, as dw_rows
  QConvDirectFn conv_direct;  // or null, as dw_rows
  bool (*conv_packed)(int kh, int kw, int chans);  // conv_direct takes this window in the packed
                                                   // form (QConvDirectArgs::chans > 0), or null
  bool quads;         // the tiles of 4 and 8 rows store NCHW4 themselves (QTileArgs::quads)
  int nv[kQMaxGroupRows];
  const char* name[kQMaxGroupRows];
  QTileFn full[kQMaxGroupRows];
  QTileFn tail[kQMaxGroupRows][kQMaxTileVectors];  // [rows-1][vectors-1], partial last vector
  // Tiles of at most kQGemvMaxPix pixels with the lanes across the group's rows instead of
  // pixels (a linear layer on one to a few rows, a conv on a tiny map: a pixel vector would run
  // mostly empty): [rows-1][pixels-1], or null where the variant has none. They requantize and
  // store each (row, pixel) at its address: y (and res) at the tile's pixel 0 of output row 0,
  // NCHW (row o at o * y_row_stride) or with quads NCHW4 (o's byte at (o / 4) * y_row_stride +
  // 4 * pixel + o % 4: any row0, the channels past O left to the caller); acc_out unused.
  QTileFn gemv[kQMaxGroupRows][4];
};
constexpr int kQGemvMaxPix = 4;

// The table of variant V, defined in its translation unit (scalar.cc, avx2.cc, ...).
template <QVariant V>
const QSpmmKernels* qspmm_table();

// The table of a variant this build compiled in and this CPU runs, else null (registry.cc).
const QSpmmKernels* qspmm_kernels(QVariant v);
// A variant's name ("avx512vnni"), "" out of range; parse: a variant's name, "avx512" (its
// VNNI variant) or "auto" (the best one that runs here).
const char* qvariant_name(QVariant v);
bool parse_qvariant(const char* s, QVariant* out);

// The scalar requantization of one sum (the reference; every variant matches it bit for bit).
uint8_t qrequant(int32_t a, const uint8_t* res, const QEpilogue& e, int o);
// The same for one lane of a depthwise row (constants from the row's lane l % 16).
uint8_t qrequant_lane(int32_t a, const uint8_t* res, const QDwRowArgs& d, int l);

}  // namespace spe
#endif  // SPE_QSPMM_QSPMM_H_
