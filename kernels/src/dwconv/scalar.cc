// Scalar f32 depthwise kernels: the plane template over single floats, the portable fallback
// (dwconv_list.h's scalar lines). The tests check every variant against a reference of their own.
#include "../isa/scalar.h"
#include "plane_template.h"

namespace spe {
template <>
const DwKernels* dw_table<Isa::scalar>() { return dw_table_of<Scalar>(); }
}  // namespace spe
