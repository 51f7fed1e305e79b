// The f32 SpMM registry: the table of each ISA this build compiled in (the list is checked
// where spmm.h expands it).
#include "../isa/compiled.h"
#include "spmm.h"

namespace spe {

const SpmmKernels* spmm_kernels(Isa isa) {
  return with_compiled_isa(isa, [](auto i) { return spmm_table<decltype(i)::value>(); });
}

}  // namespace spe
