// Null entries for the ISA variants this build does not compile in (CMake defines SPE_HAVE_*),
// so "which kernels exist" is answered at run time without link errors.
#include "spmm.h"

namespace spe {
#ifndef SPE_HAVE_AVX2
const SpmmKernels* spmm_kernels_avx2() { return nullptr; }
#endif
#ifndef SPE_HAVE_AVX512
const SpmmKernels* spmm_kernels_avx512() { return nullptr; }
#endif
#ifndef SPE_HAVE_NEON
const SpmmKernels* spmm_kernels_neon() { return nullptr; }
#endif
}  // namespace spe


// TEMP tuning knobs (experiment only)
#include <cstdlib>
namespace spe {
static int envi(const char* n) { const char* v = std::getenv(n); return v ? std::atoi(v) : 0; }
int g_pf_w = envi("SPE_PFW"), g_pf_o = envi("SPE_PFO"), g_pf_loc = 3;
int g_tune[8] = {};
}
extern "C" void spe_x_tune(int i, int v) {
  if (i == 100) spe::g_pf_w = v; else if (i == 101) spe::g_pf_o = v; else spe::g_tune[i] = v;
}
