// NEON (AArch64 Advanced SIMD) f32 depthwise kernels: dwconv_list.h's neon lines.
#include "../isa/neon.h"
#include "plane_template.h"

namespace spe {
template <>
const DwKernels* dw_table<Isa::neon>() { return dw_table_of<Neon>(); }
}  // namespace spe
