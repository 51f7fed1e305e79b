// Internal interface of the fused inverted-residual block family (the kernels: invres_list.h).
//
// A block is expand 1x1 (optional) + bias + act -> depthwise k x k (stride s, padding k / 2) +
// bias + act -> project 1x1 + bias (+ the block's input), NCHW. The expanded tensor is never
// written out whole: it is computed band by band (a few output rows' worth of input rows, all
// expanded channels), kept in a per-thread buffer that stays in L2, run through the depthwise
// plane kernel into a band of the depthwise output, which the project SpMM reads while it is
// still in cache (the method of TVM's and ncnn's fused blocks). Two schedules:
//   rows:     each thread takes a contiguous range of output rows and streams it band by band,
//             keeping the expanded rows the next band shares with this one (k - s rows), so
//             expanded rows are recomputed only where two threads' ranges meet;
//   channels: threads take groups of expanded channels (expand over the whole image into a
//             buffer of a few channels, then the depthwise conv of those channels), then all
//             threads run the project over the whole depthwise output (the default: see
//             kChannelsMaxBytes in invres.cc).
#ifndef SPE_MOBILE_INVRES_H_
#define SPE_MOBILE_INVRES_H_

#include "../dwconv/dwconv.h"
#include "../isa/isa.h"
#include "../isa/table.h"

namespace spe {

// One line of invres_list.h.
struct InvresUkernel {
  Isa isa;
  int k, s;
  const char* name;
};

inline constexpr InvresUkernel kInvresUkernels[] = {
#define SPE_INVRES_UKERNEL(isa, k, s) {Isa::isa, k, s, "f32_invres_" #k "x" #k "s" #s "__" #isa},
#include "invres_list.h"
#undef SPE_INVRES_UKERNEL
};
inline constexpr int kNumInvresUkernels = int(sizeof kInvresUkernels / sizeof kInvresUkernels[0]);

// Every block kernel runs the specialised depthwise plane kernel of its geometry: the depthwise
// list must have it, and no line may repeat.
constexpr bool each_block_has_its_depthwise_kernel() {
  for (const InvresUkernel& b : kInvresUkernels) {
    if (count_listed(kDwUkernels, [&](const DwUkernel& d) {
          return d.isa == b.isa && d.k == b.k && d.s == b.s;
        }) != 1)
      return false;
    if (count_listed(kInvresUkernels, [&](const InvresUkernel& o) {
          return o.isa == b.isa && o.k == b.k && o.s == b.s;
        }) != 1)
      return false;
  }
  return true;
}
static_assert(each_block_has_its_depthwise_kernel(),
              "invres_list.h: each line once, and each needs its f32_dwconv_{k}x{k}s{s} line");

// The listed block kernel of (isa, k, s), or null.
inline const InvresUkernel* find_invres(Isa isa, int k, int s) {
  for (const InvresUkernel& u : kInvresUkernels)
    if (u.isa == isa && u.k == k && u.s == s) return &u;
  return nullptr;
}

}  // namespace spe
#endif  // SPE_MOBILE_INVRES_H_
