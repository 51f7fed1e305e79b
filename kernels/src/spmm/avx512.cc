// AVX-512 f32 SpMM microkernels: spmm_list.h's avx512 lines (compiled with -mavx512f -mfma).
#include "../isa/avx512.h"
#include "tile_template.h"

namespace spe {
template <>
const SpmmKernels* spmm_table<Isa::avx512>() { return spmm_table_of<Avx512>(); }
}  // namespace spe
