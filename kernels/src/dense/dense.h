// Internal interface of the f32 dense GEMM microkernel family (the kernels: dense_list.h).
//
// A microkernel computes one register tile of C = A * B over a k-range: A is R rows of a panel
// of the packed weight (panels of the ISA's tallest tile height, the panel's weights of one k
// adjacent; a shorter tile reads part of each), B a packed input panel (kc x
// NV*W floats, zero-padded past the valid pixels), C a tile of y (R rows x NV*W pixels, row
// stride y_row_stride). The first k-block starts from the bias, later ones from y; the last one
// adds the residual and applies the activation. Names follow XNNPACK: f32_gemm_{R}x{NV*W}__{isa}.
#ifndef SPE_DENSE_DENSE_H_
#define SPE_DENSE_DENSE_H_

#include <cstdint>
#include <iterator>

#include "../isa/isa.h"
#include "../isa/table.h"
#include "spe/spe.h"

namespace spe {

// One line of dense_list.h, and the list.
struct DenseUkernel { Isa isa; int rows, pixels; const char* name; };
#define SPE_DENSE_UKERNEL(isa, rows, pixels) {Isa::isa, rows, pixels, "f32_gemm_" #rows "x" #pixels "__" #isa},
#define SPE_CONV_UKERNEL(isa, rows, pixels)
inline constexpr DenseUkernel kDenseUkernels[] = {
#include "dense_list.h"
};
#undef SPE_DENSE_UKERNEL
#undef SPE_CONV_UKERNEL
inline constexpr int kNumDenseUkernels = int(std::size(kDenseUkernels));

// The direct path's tiles (direct_template.h), from the same list.
#define SPE_DENSE_UKERNEL(isa, rows, pixels)
#define SPE_CONV_UKERNEL(isa, rows, pixels) {Isa::isa, rows, pixels, "f32_conv_" #rows "x" #pixels "__" #isa},
inline constexpr DenseUkernel kConvUkernels[] = {
#include "dense_list.h"
};
#undef SPE_DENSE_UKERNEL
#undef SPE_CONV_UKERNEL
inline constexpr int kNumConvUkernels = int(std::size(kConvUkernels));

constexpr int kMaxDenseTiles = 4;   // tiles one ISA may list
constexpr int kMaxDenseRows = 16;   // rows of the tallest tile
constexpr int kMaxDenseVectors = 8;
constexpr int kMaxColsPixels = 16;  // pixel remainders 1..width-1 of the pointwise path
constexpr int kMaxColsPanels = 4;   // weight panels one remainder call covers, at most

// The panel height of an ISA: its tallest listed tile.
constexpr int dense_panel(Isa isa) {
  int tallest = 0;
  for (const DenseUkernel& u : kDenseUkernels)
    if (u.isa == isa && u.rows > tallest) tallest = u.rows;
  return tallest;
}

// Every ISA lists 1..kMaxDenseTiles tiles of at most kMaxDenseRows rows, each height dividing
// the tallest.
constexpr bool dense_list_ok() {
  for (int isa = 0; isa < kNumIsas; ++isa) {
    const int n = count_listed(kDenseUkernels, [&](const DenseUkernel& u) { return int(u.isa) == isa; });
    if (n < 1 || n > kMaxDenseTiles) return false;
    int tallest = 0;
    for (const DenseUkernel& u : kDenseUkernels)
      if (int(u.isa) == isa && u.rows > tallest) tallest = u.rows;
    for (const DenseUkernel& u : kDenseUkernels)
      if (int(u.isa) == isa && tallest % u.rows != 0) return false;
  }
  return count_listed(kDenseUkernels, [](const DenseUkernel& u) {
           return u.rows < 1 || u.rows > kMaxDenseRows || u.pixels < 1;
         }) == 0;
}
static_assert(dense_list_ok(), "dense_list.h: every ISA needs 1..4 tiles of 1..16 rows, heights dividing the tallest");

struct GemmArgs {
  const float* a;       // weights of the tile's first row at k0; k's R weights are adjacent
  int64_t a_stride;     // floats from one k to the next (the ISA's panel height)
  const float* b;       // input panel at k0: kc x (NV*W) floats, 64-byte aligned
  int64_t b_stride;     // floats from one k to the next in b; 0: the packed panel's NV*W
  int64_t a_panel;      // remainder kernels: floats from one weight panel to the next
  int64_t kc;
  float* y;             // output at (row0, p0)
  int64_t y_row_stride;
  const float* bias;    // bias + row0, or null (first block only)
  const float* res;     // residual at (row0, p0), or null (last block only)
  int64_t res_row_stride;
  int act;              // spe_activation (last block only)
  int rows;             // valid rows (<= R): the panel's others are zero padding
  int npix;             // valid pixels (<= NV*W)
  bool first, last;     // first k-block: start from the bias; last: epilogue
  bool prefetch;        // direct tiles: the weights are likely cold (prefetch them ahead)
};

using GemmFn = void (*)(const GemmArgs&);

// The direct conv path (conv/direct_conv.cc): output rows [oy0, oy1) of one image, every
// output channel, computed from the NCHW input with no im2col: each input row a tap reads is
// laid out once (zero-padded, split into its stride phases) in `scratch`, and a tile of R
// output channels x NV vectors of output pixels along one output row runs over all K = C*kh*kw
// taps, the weights broadcast (w: per R-row tile, K x R floats, rows past O zero), the
// pixels read as whole vectors from the phase rows.
struct ConvRowsArgs {
  const spe_conv_params* p;
  const float* x;             // the image, C x h x w
  int64_t h, w, ho, wo;
  int64_t oy0, oy1;
  const float* wpk;           // ceil(O / R) tiles of K x R floats
  const float* bias;          // O floats, or null
  const float* res;           // the residual image (O x ho x wo), or null
  float* y;                   // the output image (O x ho x wo)
  int act;
  float* scratch;             // conv_scratch_floats(...) floats, 64-byte aligned
  const float** taps;         // K pointers
};
using ConvRowsFn = void (*)(const ConvRowsArgs&);

// The phase path (conv/phase_conv.cc, phase_template.h): flattened output pixels [q0, q1)
// (q = oy * wq + ox, wq = wo + (kw - 1) * dil_w / stride_w; columns ox >= wo are dropped) of
// one image, every output channel, from the stride phase planes of the input rows they read,
// laid out in `scratch` (phase_scratch_floats); the rest as the direct path's (oy0, oy1: the
// output rows the pixels touch).
struct PhaseArgs : ConvRowsArgs {
  int64_t wq, K;
  int64_t q0, q1;
};
using PhaseFn = void (*)(const PhaseArgs&);

// Floats of one phase plane over `rows` plane rows of wq: the rows, the taps' column offsets
// and a tile's overshoot past the last pixel (zeros), in whole cache lines.
inline int64_t phase_plane_floats(const spe_conv_params& p, int64_t rows, int64_t wq,
                                  int64_t tile_pixels) {
  const int64_t n = rows * wq + int64_t(p.kw - 1) * p.dil_w / p.stride_w + tile_pixels;
  return (n + 15) / 16 * 16;
}
// The scratch of a band of `band` pixels (any first pixel: up to (band - 1) / wq + 2 rows of
// output): every plane, one input row's phase rows and its padded copy, and a row tile's
// partial sums over the band.
inline int64_t phase_scratch_floats(const spe_conv_params& p, int64_t band, int64_t wq,
                                    int64_t tile_pixels) {
  const int64_t rows = (band - 1) / wq + 2 + int64_t(p.kh - 1) * p.dil_h / p.stride_h;
  const int64_t sums = (band + tile_pixels - 1) / tile_pixels * tile_pixels;
  return int64_t(p.in_channels) * p.stride_h * p.stride_w *
             phase_plane_floats(p, rows, wq, tile_pixels) + (2 * p.stride_w * wq + 15) / 16 * 16 +
         kMaxDenseRows * sums;
}

// Floats of a phase row (one stride phase of a zero-padded input row): whole vectors over the
// output row plus the taps' offsets into it, so tiles load whole vectors and never masks.
inline int64_t conv_phase_floats(const spe_conv_params& p, int64_t wo, int width) {
  const int64_t n = (wo + width - 1) / width * width + int64_t(p.kw - 1) * p.dil_w / p.stride_w + 1;
  return (n + 15) / 16 * 16;  // whole cache lines
}
// The scratch of one call: a phase-row slot per (channel, input row mod the kernel's height
// span), a zero row and the padded row it is split from.
inline int64_t conv_scratch_floats(const spe_conv_params& p, int64_t wo, int width) {
  const int64_t span = int64_t(p.kh - 1) * p.dil_h + 1, L = conv_phase_floats(p, wo, width);
  return (int64_t(p.in_channels) * span + 2) * p.stride_w * L;
}

// The pointwise path (a 1x1 stride-1 unpadded conv, dense_conv.cc) reads the NCHW input in
// place, b_stride = H*W, with no packing and no k-blocks. Its pixels split into whole vectors,
// run on the tiles' direct variants (every vector count up to the tile's), and a remainder of
// 1..width-1 pixels (49 = 3 x 16 + 1 at 7x7, 196 = 12 x 16 + 4 at 14x14), run on a kernel
// that turns the tile around: the panel's output channels in the vector lanes, one broadcast
// input per pixel, so a 1-pixel remainder costs 1/16 of a masked 16-pixel vector.

// d[i] = s[i * sw] for i < n (the packed GEMM's and the gathered pointwise path's input gather).
using StridedRowFn = void (*)(const float* s, int64_t sw, float* d, int64_t n);

// One ISA's tiles, in list order. The weight is packed once, in panels of `panel` rows (the
// tallest tile; every tile's height divides it), so that any tile can run on any input size.
struct DenseKernels {
  const char* isa;
  int width;  // floats per vector
  int panel;
  int n_tiles;
  int rows[kMaxDenseTiles], pixels[kMaxDenseTiles];
  const char* name[kMaxDenseTiles];
  GemmFn fn[kMaxDenseTiles];
  // pointwise path: direct[r - 1][nv - 1] is the first listed tile cut to r rows and nv whole
  // vectors, reading the input in place (first and last k-block in one: the rows past a
  // multiple of its height cost no padded rows); cols[np - 1][n - 1] the remainder kernel over
  // np panels and n pixels (only np = 1 and np = cols_panels[n - 1], the most its
  // accumulators fit in registers)
  GemmFn direct[kMaxDenseRows][kMaxDenseVectors];
  GemmFn cols[kMaxColsPanels][kMaxColsPixels];
  int cols_panels[kMaxColsPixels];
  // the pointwise path at one pixel (a batch-1 linear): all panels of a.rows rows, each
  // streamed once (gemm_template.h's gemv_panels), named f32_gemv_{panel}__{isa}
  GemmFn gemv;
  const char* gemv_name;
  // the direct path's tiles (dense_list.h's SPE_CONV_UKERNEL lines), in list order
  int n_conv;
  int conv_rows[kMaxDenseTiles], conv_pixels[kMaxDenseTiles];
  const char* conv_name[kMaxDenseTiles];
  ConvRowsFn conv_fn[kMaxDenseTiles];
  PhaseFn phase_fn[kMaxDenseTiles];  // the phase path's, on the same tiles
  StridedRowFn strided_row;
};

// dense_table<I>(): ISA I's table, defined in I's translation unit (avx512.cc, ...) from the
// list; dense_kernels(isa): the table of isa if this build compiled it in, else null.
template <Isa I> const DenseKernels* dense_table();
#define SPE_DENSE_TABLE_DECL(isa) template <> const DenseKernels* dense_table<Isa::isa>();
SPE_ISA_LIST(SPE_DENSE_TABLE_DECL)
#undef SPE_DENSE_TABLE_DECL
const DenseKernels* dense_kernels(Isa isa);  // registry.cc

}  // namespace spe
#endif  // SPE_DENSE_DENSE_H_
