// Internal interface of the f32 depthwise conv kernel family (NCHW, one channel plane at a time).
//
// A plane kernel computes output rows [oy0, oy1) of one channel. Every input row it needs is
// copied once into a small per-thread ring of row buffers, zero-padded left and right and split
// into sw column phases (phase p holds the padded columns p, p + sw, p + 2 sw, ...), so each tap
// (ky, kx) reads row ky's buffer with contiguous vector loads at phase (kx*dw) % sw, offset
// (kx*dw) / sw, whatever the stride and dilation; rows above and below the image read a zero
// row. A stride-1 row is a plain copy, a stride-2 row is deinterleaved once and then read by
// every output row that uses it (up to kh/sh of them). Bias, residual and activation are fused
// into the store.
//
// The flat method (flat_template.h, AVX-512 and AVX2) takes the specialised kernels' "same"-padded
// layers with small planes instead (dw_flat_fits): a whole plane as one flat run of vectors,
// per-lane tap masks in place of the padded row copies.
//
// Naming (XNNPACK style, the tile then `__` then the ISA): f32_dwconv_{k}x{k}s{s}__{isa} for the
// specialised kernels (square kernel k, the same stride s both ways, dilation 1, any padding:
// unrolled taps, weights held in registers), f32_dwconv_generic__{isa} for every other geometry
// (the same method with loops over the runtime kh, kw, stride and dilation). The kernels are
// listed in dwconv_list.h; adding one is a one-line edit there.
#ifndef SPE_DWCONV_DWCONV_H_
#define SPE_DWCONV_DWCONV_H_

#include <algorithm>
#include <cstdint>

#include "../isa/isa.h"
#include "../isa/table.h"

namespace spe {

// One line of dwconv_list.h; k == s == 0 is the generic kernel.
struct DwUkernel {
  Isa isa;
  int k, s;
  const char* name;
};

inline constexpr DwUkernel kDwUkernels[] = {
#define SPE_DWCONV_UKERNEL(isa, k, s) \
  {Isa::isa, k, s, "f32_dwconv_" #k "x" #k "s" #s "__" #isa},
#define SPE_DWCONV_GENERIC(isa) {Isa::isa, 0, 0, "f32_dwconv_generic__" #isa},
#include "dwconv_list.h"
#undef SPE_DWCONV_UKERNEL
#undef SPE_DWCONV_GENERIC
};
inline constexpr int kNumDwUkernels = int(sizeof kDwUkernels / sizeof kDwUkernels[0]);

// Every ISA lists its generic kernel once, and no specialised geometry twice (the second line
// would never run).
constexpr bool each_kernel_listed_once() {
  for (int isa = 0; isa < kNumIsas; ++isa)
    if (count_listed(kDwUkernels, [&](const DwUkernel& u) { return int(u.isa) == isa && !u.k; }) != 1)
      return false;
  for (const DwUkernel& a : kDwUkernels)
    if (count_listed(kDwUkernels, [&](const DwUkernel& b) {
          return a.isa == b.isa && a.k == b.k && a.s == b.s;
        }) != 1)
      return false;
  return true;
}
static_assert(each_kernel_listed_once(),
              "dwconv_list.h: every ISA needs one SPE_DWCONV_GENERIC line and each (k, s) once");

constexpr int kDwRowAlign = 16;                  // floats: rows hold whole vectors of any ISA
constexpr int64_t kDwBlockBytes = 32 << 10;      // a block's row buffers stay in L1
constexpr int64_t kDwMaxScratchBytes = 8 << 20;  // beyond this, copy each output row's taps

// The geometry of one run (layer + input size) and the layout of the per-thread scratch.
//
// Output rows are computed in blocks of `block` rows; the block's input rows are copied, in
// one pass before its rows are computed, into consecutive row buffers (`slots` of them: the
// rows from the block's first output row's top tap to its last one's bottom tap). Rows
// outside the image read the zero row. When even one output row's span of input rows would
// not fit kDwMaxScratchBytes (huge dilation x width), block is 0: each output row copies just
// its kh tap rows into kh buffers.
struct DwGeom {
  int kh, kw, sh, sw, ph, pw, dh, dw;  // the layer
  int h, w, ho, wo;                    // this input and its output
  int lp;     // floats per column phase of a row buffer (a multiple of kDwRowAlign)
  int block;  // output rows per block (0: per-row tap copies)
  int slots;  // row buffers

  int64_t row_floats() const { return int64_t(sw) * lp; }
  // Scratch floats a thread needs: the zero row, then the row buffers.
  int64_t scratch_floats() const { return int64_t(slots + 1) * row_floats(); }
};

// Fills the layout fields of g from its layer and input fields.
inline void dw_layout(DwGeom& g) {
  const int max_off = (g.dw * (g.kw - 1)) / g.sw;  // furthest tap within a phase
  const int wv = (g.wo + kDwRowAlign - 1) / kDwRowAlign * kDwRowAlign;  // whole vectors
  g.lp = (wv + max_off + kDwRowAlign - 1) / kDwRowAlign * kDwRowAlign;
  const int64_t row_bytes = g.row_floats() * 4;
  const int64_t span = int64_t(g.kh - 1) * g.dh + 1;  // input rows one output row spans
  if (span * row_bytes > kDwMaxScratchBytes) {
    g.block = 0;
    g.slots = g.kh;
    return;
  }
  const int64_t fit = kDwBlockBytes / row_bytes;  // rows that fit the block budget
  g.block = int(std::max<int64_t>(1, std::min<int64_t>(g.ho, (fit - span) / g.sh + 1)));
  g.slots = int((g.block - 1) * int64_t(g.sh) + span);
}

struct DwPlaneArgs {
  const DwGeom* g;
  const float* x;    // input plane (h, w)
  const float* w;    // the channel's kh * kw weights
  float bias;        // 0 without bias
  const float* res;  // residual plane (ho, wo), or null
  float* y;          // output plane (ho, wo)
  int oy0, oy1;      // output rows to compute
  int act;           // spe_activation
  // The input the thread's next work item will read ([prefetch, prefetch + prefetch_floats)),
  // prefetched while this one computes, so that its copy finds the lines in cache; or null.
  const float* prefetch;
  int64_t prefetch_floats;
  // g->scratch_floats() floats, 64-byte aligned, all zero when the thread first uses it for
  // this row layout: the kernels write only the image columns of the row buffers, at the same
  // places in every row, so the zero padding survives from row to row and plane to plane.
  float* scratch;
};

using DwPlaneFn = void (*)(const DwPlaneArgs&);

// The flat method (flat_template.h): whole planes [p0, p1) of a "same"-padded k x k layer,
// stride 1 or 2, each plane's outputs as one flat vector of ho * wo floats.
struct DwPlanesArgs {
  const DwGeom* g;
  const float* x;      // input (planes, h, w)
  const float* w;      // weights (channels, kh, kw)
  const float* bias;   // channels floats, or null
  const float* res;    // residual (planes, ho, wo), or null
  float* y;            // output (planes, ho, wo)
  int channels;        // plane pl is channel pl % channels
  int64_t p0, p1;      // the planes to compute
  int act;             // spe_activation
};

using DwPlanesFn = void (*)(const DwPlanesArgs&);

// Output planes up to this many floats take the flat method when the kernel has it: it fills
// whole vectors (a 7x7 plane is 4 vectors, not 7 rows of one each) and skips the row copies;
// 1.3-3.7x faster than the row buffers on every plane of MobileNetV2 / V3 and EfficientNet-B0
// (up to 112x112, AVX-512 on Zen 4; AVX2 there 1.05-5x). Larger planes keep the row buffers,
// which stay in L1 (the flat method's tap masks and stride-2 phase planes grow with the
// plane).
constexpr int64_t kDwFlatMaxFloats[2] = {128 * 128, 64 * 64};  // stride 1, stride 2

// Whether the flat method computes layer g: k x k, k odd, padding k / 2, stride 1 or 2 both
// ways, dilation 1, an output plane within kDwFlatMaxFloats.
inline bool dw_flat_fits(const DwGeom& g) {
  return g.kh == g.kw && g.kh % 2 == 1 && g.sh == g.sw && (g.sh == 1 || g.sh == 2) &&
         g.dh == 1 && g.dw == 1 && g.ph == g.kh / 2 && g.pw == g.kw / 2 &&
         int64_t(g.ho) * g.wo <= kDwFlatMaxFloats[g.sh - 1];
}

struct DwSpecialised {
  int k, s;
  DwPlaneFn fn;
  const char* name;
  DwPlanesFn flat;  // the flat method for this geometry, or null (not on this ISA)
};

// One ISA's depthwise kernels, as dwconv_list.h lists them.
struct DwKernels {
  const char* isa;
  int width;  // floats per vector
  int n_special;
  DwSpecialised special[kNumDwUkernels];  // [0, n_special)
  DwPlaneFn generic;
  const char* generic_name;
};

// The table of ISA I, defined in that ISA's translation unit (avx2.cc, ...) from the list.
template <Isa I>
const DwKernels* dw_table();
#define SPE_DW_TABLE_DECL(isa) template <> const DwKernels* dw_table<Isa::isa>();
SPE_ISA_LIST(SPE_DW_TABLE_DECL)
#undef SPE_DW_TABLE_DECL

// The table of isa if this build compiled it in, else null (registry.cc).
const DwKernels* dw_kernels(Isa isa);

}  // namespace spe
#endif  // SPE_DWCONV_DWCONV_H_
