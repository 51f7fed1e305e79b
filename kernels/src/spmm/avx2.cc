// AVX2 + FMA f32 SpMM microkernels: spmm_list.h's avx2 lines (compiled with -mavx2 -mfma).
#include "../isa/avx2.h"
#include "tile_template.h"

namespace spe {
template <>
const SpmmKernels* spmm_table<Isa::avx2>() {
  static const SpmmKernels k = make_spmm_table<Avx2>();
  return &k;
}
}  // namespace spe
