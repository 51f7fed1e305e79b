// AVX2 + FMA f32 depthwise kernels: dwconv_list.h's avx2 lines (compiled with -mavx2 -mfma).
#include "../isa/avx2.h"
#include "plane_template.h"

namespace spe {
template <>
const DwKernels* dw_table<Isa::avx2>() { return dw_table_of<Avx2>(); }
}  // namespace spe
