// avx2 f32 dense microkernels: dense_list.h's avx2 lines, GEMM and direct tiles (compiled with the
// ISA's flags).
#include "../isa/avx2.h"
#include "phase_template.h"

namespace spe {
template <>
const DenseKernels* dense_table<Isa::avx2>() { return dense::dense_conv_table_of<Avx2>(); }
}  // namespace spe
