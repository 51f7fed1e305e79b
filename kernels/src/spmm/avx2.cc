// AVX2 + FMA f32 SpMM microkernels: spmm_list.h's avx2 lines (compiled with -mavx2 -mfma).
#include "../isa/avx2.h"
#include "tile_template.h"

namespace spe {
template <>
const SpmmKernels* spmm_table<Isa::avx2>() { return spmm_table_of<Avx2>(); }
}  // namespace spe
