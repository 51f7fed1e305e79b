// Null tables for the depthwise variants this build does not compile in (CMake defines
// SPE_HAVE_*), so "which kernels exist" is answered at run time without link errors.
#include "dwconv.h"

namespace spe {
#ifndef SPE_HAVE_AVX2
const DwKernels* dw_kernels_avx2() { return nullptr; }
#endif
#ifndef SPE_HAVE_AVX512
const DwKernels* dw_kernels_avx512() { return nullptr; }
#endif
#ifndef SPE_HAVE_NEON
const DwKernels* dw_kernels_neon() { return nullptr; }
#endif
}  // namespace spe
