// AVX2 + FMA f32 depthwise kernels: dwconv_list.h's avx2 lines (compiled with -mavx2 -mfma).
#include "../isa/avx2.h"
#include "plane_template.h"

namespace spe {
template <>
const DwKernels* dw_table<Isa::avx2>() {
  static const DwKernels k = make_dw_table<Avx2>();
  return &k;
}
}  // namespace spe
