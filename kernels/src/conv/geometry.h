// Conv output sizes, shared by the sparse and the depthwise conv (torch's floor semantics).
#ifndef SPE_CONV_GEOMETRY_H_
#define SPE_CONV_GEOMETRY_H_

#include <cstdint>
#include <limits>

#include "spe/spe.h"

namespace spe {

// Output size in int64 (floor division: C's truncation would turn a negative numerator into a
// bogus 1); 0 when the (padded) input is smaller than the dilated kernel.
inline int64_t out_dim(int64_t in, int64_t pad, int64_t dil, int64_t k, int64_t stride) {
  const int64_t span = in + 2 * pad - dil * (k - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

// The C API's *_output_size: 0x0 for a NULL layer or an output that does not fit int32.
inline void conv_output_size(const spe_conv_params* p, int32_t h, int32_t w, int32_t* ho,
                             int32_t* wo) {
  if (!ho || !wo) return;
  if (!p) {
    *ho = *wo = 0;
    return;
  }
  const int64_t oh = out_dim(h, p->pad_h, p->dil_h, p->kh, p->stride_h);
  const int64_t ow = out_dim(w, p->pad_w, p->dil_w, p->kw, p->stride_w);
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  *ho = oh > kMax ? 0 : int32_t(oh);
  *wo = ow > kMax ? 0 : int32_t(ow);
}

}  // namespace spe
#endif  // SPE_CONV_GEOMETRY_H_
