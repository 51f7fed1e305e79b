// The f32 SpMM registry: the table of each ISA this build compiled in, and the compile-time
// checks that spmm_list.h gives every ISA a kernel for each row-group height.
#include "../isa/compiled.h"
#include "spmm.h"

namespace spe {
namespace {

// Every ISA lists each row count 1..kMaxGroupRows exactly once (a missing one would leave a
// null kernel for the packer's group heights).
constexpr bool every_isa_lists_every_row_count_once() {
  for (int isa = 0; isa < kNumIsas; ++isa)
    for (int r = 1; r <= kMaxGroupRows; ++r) {
      int n = 0;
      for (const SpmmUkernel& u : kSpmmUkernels) n += int(u.isa) == isa && u.rows == r;
      if (n != 1) return false;
    }
  for (const SpmmUkernel& u : kSpmmUkernels)
    if (u.rows < 1 || u.rows > kMaxGroupRows) return false;
  return true;
}
static_assert(every_isa_lists_every_row_count_once(),
              "spmm_list.h: every ISA needs exactly one kernel for each row count 1..8");

}  // namespace

const SpmmKernels* spmm_kernels(Isa isa) {
  return with_compiled_isa(isa, [](auto i) { return spmm_table<decltype(i)::value>(); });
}

}  // namespace spe
