// avx512 f32 dense microkernels: dense_list.h's avx512 lines, GEMM and direct tiles (compiled with the
// ISA's flags).
#include "../isa/avx512.h"
#include "phase_template.h"

namespace spe {
template <>
const DenseKernels* dense_table<Isa::avx512>() { return dense::dense_conv_table_of<Avx512>(); }
}  // namespace spe
