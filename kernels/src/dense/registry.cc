// The f32 dense GEMM registry: the table of each ISA this build compiled in (the list is checked
// where dense.h expands it).
#include "../isa/compiled.h"
#include "dense.h"

namespace spe {

const DenseKernels* dense_kernels(Isa isa) {
  return with_compiled_isa(isa, [](auto i) { return dense_table<decltype(i)::value>(); });
}

}  // namespace spe
