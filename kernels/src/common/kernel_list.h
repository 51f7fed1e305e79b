// The kernel catalog: every kernel of every family's list (spmm/spmm_list.h,
// dwconv/dwconv_list.h), with its name, family, ISA and tile parameters, for listings
// (engine._kernels.list_kernels()), the test runner's sweeps and the benchmarks. "What kernels
// exist" only: which one a layer runs is the family's choice at create time.
#ifndef SPE_COMMON_KERNEL_LIST_H_
#define SPE_COMMON_KERNEL_LIST_H_

#include <vector>

#include "../isa/isa.h"

namespace spe {

struct KernelParam {
  const char* key;  // "rows", "pixels" (f32_spmm, f32_gemm, f32_conv); "kernel", "stride" (f32_dwconv)
  int value;
};

struct KernelInfo {
  const char* name;    // f32_spmm_4x96__avx512: the tile, then `__`, then the variant
  const char* family;  // "f32_spmm", "f32_dwconv", "f32_gemm", "f32_conv", "qs8_spmm"
  Isa isa;             // the instruction set (the int8 variants avx512vnni / neondot: avx512 / neon)
  int n_params;        // the tile parameters; none for a generic kernel
  KernelParam params[2];
  const char* variant = nullptr;  // the ISA variant its name ends with; null: isa_name(isa)
};

// info's variant name ("avx512", "avx512vnni"), and whether this build and CPU run it.
const char* kernel_variant(const KernelInfo& info);
bool kernel_available(const KernelInfo& info);

// Every listed kernel, family by family in list order (whether or not this build or CPU can run
// it: isa_runs(info.isa) says that).
const std::vector<KernelInfo>& kernel_list();

}  // namespace spe
#endif  // SPE_COMMON_KERNEL_LIST_H_
