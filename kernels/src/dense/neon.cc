// neon f32 dense microkernels: dense_list.h's neon lines, GEMM and direct tiles (compiled with the
// ISA's flags).
#include "../isa/neon.h"
#include "phase_template.h"

namespace spe {
template <>
const DenseKernels* dense_table<Isa::neon>() { return dense::dense_conv_table_of<Neon>(); }
}  // namespace spe
