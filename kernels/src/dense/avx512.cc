// avx512 f32 dense GEMM microkernels: dense_list.h's and direct_list.h's avx512 lines (compiled with the ISA's flags).
#include "../isa/avx512.h"
#include "direct_template.h"

namespace spe {
template <>
const DenseKernels* dense_table<Isa::avx512>() { return dense::dense_conv_table_of<Avx512>(); }
}  // namespace spe
