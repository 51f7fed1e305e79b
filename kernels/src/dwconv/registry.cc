// The depthwise registry: the table of each ISA this build compiled in (the list is checked
// where dwconv.h expands it).
#include "../isa/compiled.h"
#include "dwconv.h"

namespace spe {

const DwKernels* dw_kernels(Isa isa) {
  return with_compiled_isa(isa, [](auto i) { return dw_table<decltype(i)::value>(); });
}

}  // namespace spe
