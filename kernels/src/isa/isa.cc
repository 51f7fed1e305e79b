// Run-time ISA selection: compiled in (compiled.h) and supported by this CPU; the C API's
// spe_isa_available and spe_best_isa.
#include <cstring>

#include "compiled.h"
#include "isa.h"
#include "spe/spe.h"

namespace spe {
namespace {

bool cpu_has(Isa isa) {
#if defined(__x86_64__)
  if (isa == Isa::avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::avx512) return __builtin_cpu_supports("avx512f");
#endif
  // scalar runs everywhere; Advanced SIMD is mandatory on AArch64, the only target building neon
  return isa == Isa::scalar || isa == Isa::neon;
}

}  // namespace

bool isa_runs(Isa isa) {
  return with_compiled_isa(isa, [](auto) { return true; }) && cpu_has(isa);
}

Isa best_isa() {
  Isa best = Isa::scalar;
  for (int i = 0; i < kNumIsas; ++i)
    if (isa_runs(Isa(i))) best = Isa(i);
  return best;
}

bool parse_isa(const char* s, Isa* out) {
  if (!s) return false;
  if (std::strcmp(s, "auto") == 0) {
    *out = best_isa();
    return true;
  }
  for (int i = 0; i < kNumIsas; ++i)
    if (std::strcmp(s, isa_name(Isa(i))) == 0) {
      *out = Isa(i);
      return true;
    }
  return false;
}

}  // namespace spe

extern "C" {

int spe_isa_available(const char* isa) {
  spe::Isa i;
  return spe::parse_isa(isa, &i) && spe::isa_runs(i);
}

const char* spe_best_isa(void) { return spe::isa_name(spe::best_isa()); }

}  // extern "C"
