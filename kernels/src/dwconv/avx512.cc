// AVX-512 f32 depthwise kernels: dwconv_list.h's avx512 lines (compiled with -mavx512f -mfma).
#include "../isa/avx512.h"
#include "plane_template.h"

namespace spe {
template <>
const DwKernels* dw_table<Isa::avx512>() { return dw_table_of<Avx512>(); }
}  // namespace spe
