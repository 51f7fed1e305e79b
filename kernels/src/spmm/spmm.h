// Internal interface of the f32 SpMM microkernel family.
//
// A microkernel computes one output tile: R rows (one row group) x NV vectors of pixels,
// accumulating over the group's entries; naming follows XNNPACK: f32_spmm_{R}x{NV*W}__{isa}.
#ifndef SPE_SPMM_SPMM_H_
#define SPE_SPMM_SPMM_H_

#include <cstdint>

namespace spe {

constexpr int kMaxGroupRows = 8;
constexpr int kMaxTilePixels = 128;  // the widest tile of any ISA (avx512 1x128)

struct TileArgs {
  const float* x;          // input at pixel p0 (entry offsets are added to it)
  const int32_t* off;      // per-entry flat input offset
  const float* w;          // per-entry values, `rows` floats each
  int64_t n_entries;
  float* y;                // output at (row0, p0)
  int64_t y_row_stride;
  const float* bias;       // bias + row0, or null
  const float* res;        // residual at (row0, p0), or null
  int64_t res_row_stride;
  int act;                 // spe_activation
  int npix;                // valid pixels in this tile (<= NV*W)
  int prefetch;            // 1: the weights are likely cold (prefetch them ahead)
};

using TileFn = void (*)(const TileArgs&);

// One ISA's microkernels: tile[r-1] handles groups of r rows with a full `nv[r-1]`-vector tile;
// tail(r, npix) handles a partial tile.
struct SpmmKernels {
  const char* isa;
  int width;                      // floats per vector
  int nv[kMaxGroupRows];          // vectors per full tile, per row count
  TileFn full[kMaxGroupRows];
  TileFn tail[kMaxGroupRows][16]; // [rows-1][vectors-1], masked last vector
};

const SpmmKernels* spmm_kernels_scalar();
const SpmmKernels* spmm_kernels_avx2();    // null if not compiled in
const SpmmKernels* spmm_kernels_avx512();  // null if not compiled in
const SpmmKernels* spmm_kernels_neon();    // null if not compiled in

}  // namespace spe
#endif  // SPE_SPMM_SPMM_H_
