// The instruction sets the kernels are written for, and the one place that answers "which of
// them can run here". What kernels exist is each family's list (spmm/spmm_list.h,
// dwconv/dwconv_list.h); which one a layer uses is picked at run time from these answers.
#ifndef SPE_ISA_ISA_H_
#define SPE_ISA_ISA_H_

#include <type_traits>

namespace spe {

// X(isa): every ISA, from the most portable to the most specific. "auto" takes the last one this
// CPU runs (x86: avx512, else avx2, else scalar; AArch64: neon). Listings keep this order.
#define SPE_ISA_LIST(X) X(scalar) X(avx2) X(avx512) X(neon)

enum class Isa : int {
#define SPE_ISA_ENUM(isa) isa,
  SPE_ISA_LIST(SPE_ISA_ENUM)
#undef SPE_ISA_ENUM
};

#define SPE_ISA_COUNT(isa) +1
constexpr int kNumIsas = 0 SPE_ISA_LIST(SPE_ISA_COUNT);
#undef SPE_ISA_COUNT

// The name kernels, plans and the C API use for isa ("avx512"); "" for a value out of range.
constexpr const char* isa_name(Isa isa) {
  constexpr const char* kNames[] = {
#define SPE_ISA_NAME(isa) #isa,
      SPE_ISA_LIST(SPE_ISA_NAME)
#undef SPE_ISA_NAME
  };
  const int i = int(isa);
  return i >= 0 && i < kNumIsas ? kNames[i] : "";
}

// True and *out set for an ISA's name; "auto" is the best ISA this CPU runs. False for anything
// else (s may be null).
bool parse_isa(const char* s, Isa* out);
// True if this build compiled isa's kernels in and this CPU can run them.
bool isa_runs(Isa isa);
Isa best_isa();

template <Isa I>
using IsaTag = std::integral_constant<Isa, I>;

}  // namespace spe
#endif  // SPE_ISA_ISA_H_
