// Internal interface of the f32 SpMM microkernel family (the kernels: spmm_list.h).
//
// A microkernel computes one output tile: R rows (one row group) x NV vectors of pixels,
// accumulating over the group's entries; naming follows XNNPACK, the tile then `__` then the
// ISA: f32_spmm_{R}x{NV*W}__{isa}.
#ifndef SPE_SPMM_SPMM_H_
#define SPE_SPMM_SPMM_H_

#include <cstdint>

#include "../isa/isa.h"
#include "../isa/table.h"

namespace spe {

// One line of spmm_list.h.
struct SpmmUkernel {
  Isa isa;
  int rows, pixels;
  const char* name;
};

inline constexpr SpmmUkernel kSpmmUkernels[] = {
#define SPE_SPMM_UKERNEL(isa, rows, pixels) \
  {Isa::isa, rows, pixels, "f32_spmm_" #rows "x" #pixels "__" #isa},
#include "spmm_list.h"
#undef SPE_SPMM_UKERNEL
};
inline constexpr int kNumSpmmUkernels = int(sizeof kSpmmUkernels / sizeof kSpmmUkernels[0]);

constexpr int kMaxGroupRows = 8;
constexpr int kMaxTileVectors = 16;

// Each ISA lists every row count 1..kMaxGroupRows exactly once (a missing one would leave a null
// kernel for one of the packer's group heights), and nothing else.
constexpr bool one_kernel_per_isa_and_row_count() {
  for (int isa = 0; isa < kNumIsas; ++isa)
    for (int r = 1; r <= kMaxGroupRows; ++r)
      if (count_listed(kSpmmUkernels, [&](const SpmmUkernel& u) {
            return int(u.isa) == isa && u.rows == r;
          }) != 1)
        return false;
  return kNumSpmmUkernels == kNumIsas * kMaxGroupRows;
}
static_assert(one_kernel_per_isa_and_row_count(),
              "spmm_list.h: every ISA needs exactly one kernel for each row count 1..8");

// The widest tile of any listed kernel (avx512 1x128): the crop buffer's width.
constexpr int max_tile_pixels() {
  int m = 0;
  for (const SpmmUkernel& u : kSpmmUkernels) m = u.pixels > m ? u.pixels : m;
  return m;
}
constexpr int kMaxTilePixels = max_tile_pixels();

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
  // Null: the sums start from the bias. Else from these floats (at (row0, p0), row stride
  // y_row_stride; bias ignored): the partial sums an earlier call over the group's first
  // entries stored, so a group's entries can be split across calls with the same rounding as
  // one call (sparse_conv.cc's K stages).
  const float* acc_in;
};

using TileFn = void (*)(const TileArgs&);

// One ISA's microkernels, one per listed kernel: tile[r-1] handles groups of r rows with a full
// `nv[r-1]`-vector tile; tail(r, npix) handles a partial tile.
// d[0..n) = act(s[k] (+ res[k])), res may be null, act an SPE_ACT_* code: the epilogue of
// tiles computed on virtual pixels (sparse_conv.cc's crop), vectorized like the tiles' own.
using ActRowFn = void (*)(float* d, const float* s, const float* res, int n, int act);

struct SpmmKernels {
  const char* isa;
  int width;                              // floats per vector
  ActRowFn act_row;
  int nv[kMaxGroupRows];                  // vectors per full tile, per row count
  const char* name[kMaxGroupRows];        // the listed kernel, per row count
  TileFn full[kMaxGroupRows];
  TileFn tail[kMaxGroupRows][kMaxTileVectors];  // [rows-1][vectors-1], masked last vector
};

// The table of ISA I, defined in that ISA's translation unit (avx2.cc, ...) from the list.
template <Isa I>
const SpmmKernels* spmm_table();
#define SPE_SPMM_TABLE_DECL(isa) template <> const SpmmKernels* spmm_table<Isa::isa>();
SPE_ISA_LIST(SPE_SPMM_TABLE_DECL)
#undef SPE_SPMM_TABLE_DECL

// The table of isa if this build compiled it in, else null (registry.cc).
const SpmmKernels* spmm_kernels(Isa isa);

}  // namespace spe
#endif  // SPE_SPMM_SPMM_H_
