// The depthwise registry: the table of each ISA this build compiled in, and the compile-time
// checks of dwconv_list.h.
#include "../isa/compiled.h"
#include "dwconv.h"

namespace spe {
namespace {

// Every ISA lists one generic kernel, and no geometry twice (the second would never run).
constexpr bool each_kernel_listed_once() {
  for (int isa = 0; isa < kNumIsas; ++isa) {
    int generic = 0;
    for (const DwUkernel& u : kDwUkernels) generic += int(u.isa) == isa && u.k == 0;
    if (generic != 1) return false;
  }
  for (int i = 0; i < kNumDwUkernels; ++i)
    for (int j = 0; j < i; ++j)
      if (kDwUkernels[i].isa == kDwUkernels[j].isa && kDwUkernels[i].k == kDwUkernels[j].k &&
          kDwUkernels[i].s == kDwUkernels[j].s)
        return false;
  return true;
}
static_assert(each_kernel_listed_once(),
              "dwconv_list.h: every ISA needs one SPE_DWCONV_GENERIC line and each (k, s) once");

}  // namespace

const DwKernels* dw_kernels(Isa isa) {
  return with_compiled_isa(isa, [](auto i) { return dw_table<decltype(i)::value>(); });
}

}  // namespace spe
