// avx2 f32 dense GEMM microkernels: dense_list.h's and direct_list.h's avx2 lines (compiled with the ISA's flags).
#include "../isa/avx2.h"
#include "direct_template.h"

namespace spe {
template <>
const DenseKernels* dense_table<Isa::avx2>() { return dense::dense_conv_table_of<Avx2>(); }
}  // namespace spe
