// The depthwise registry: the table of each ISA this build compiled in, and the compile-time
// check that dwconv_list.h gives every ISA its generic kernel.
#include "../isa/compiled.h"
#include "dwconv.h"

namespace spe {
namespace {

constexpr bool every_isa_lists_one_generic_kernel() {
  for (int isa = 0; isa < kNumIsas; ++isa) {
    int n = 0;
    for (const DwUkernel& u : kDwUkernels) n += int(u.isa) == isa && u.k == 0;
    if (n != 1) return false;
  }
  return true;
}
static_assert(every_isa_lists_one_generic_kernel(),
              "dwconv_list.h: every ISA needs exactly one SPE_DWCONV_GENERIC line");

}  // namespace

const DwKernels* dw_kernels(Isa isa) {
  return with_compiled_isa(isa, [](auto i) { return dw_table<decltype(i)::value>(); });
}

}  // namespace spe
