// NEON (AArch64 Advanced SIMD) f32 SpMM microkernels: spmm_list.h's neon lines.
//
// The weights of an entry are loaded as whole vectors (4 per q register, a 2-float d register
// and a single float for the remainder: Neon::weight, isa/neon.h) and each row multiplies by one
// lane (fmla v.4s, x.4s, w.s[i]): broadcasting each weight into a register of its own would need
// R registers, and spilled accumulators at 4x24.
#include "../isa/neon.h"
#include "tile_template.h"

namespace spe {
template <>
const SpmmKernels* spmm_table<Isa::neon>() { return spmm_table_of<Neon>(); }
}  // namespace spe
