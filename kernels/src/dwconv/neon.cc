// NEON (AArch64 Advanced SIMD) f32 depthwise kernels: dwconv_list.h's neon lines.
#include "../isa/neon.h"
#include "plane_template.h"

namespace spe {
template <>
const DwKernels* dw_table<Isa::neon>() {
  static const DwKernels k = make_dw_table<Neon>();
  return &k;
}
}  // namespace spe
