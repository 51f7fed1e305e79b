// The f32 depthwise conv kernels: one line per kernel. Everything else follows from this list:
// the per-ISA tables (plane_template.h), the names, the choice of kernel for a layer
// (conv/depthwise.cc), the registry (registry.cc), the kernel catalog
// (engine._kernels.list_kernels(), common/kernel_list.cc), the C++ and Python tests and the
// benchmarks. No include guard: the includer defines both macros, includes this, undefines them.
//
// SPE_DWCONV_UKERNEL(isa, k, s) is f32_dwconv_{k}x{k}s{s}__{isa}: k x k taps, stride s both
// ways, dilation 1, any padding; unrolled taps, weights held in registers, two output rows a
// pass (at stride 1, or on rows of at most two vectors). SPE_DWCONV_GENERIC(isa) is
// f32_dwconv_generic__{isa}: every other geometry (loops over the run-time kh, kw, stride,
// dilation). Every ISA lists its generic kernel once (registry.cc checks it at compile time).
#if !defined(SPE_DWCONV_UKERNEL) || !defined(SPE_DWCONV_GENERIC)
#error "define SPE_DWCONV_UKERNEL(isa, k, s) and SPE_DWCONV_GENERIC(isa) before including dwconv_list.h"
#endif

SPE_DWCONV_UKERNEL(scalar, 3, 1)
SPE_DWCONV_UKERNEL(scalar, 3, 2)
SPE_DWCONV_UKERNEL(scalar, 5, 1)
SPE_DWCONV_UKERNEL(scalar, 5, 2)
SPE_DWCONV_GENERIC(scalar)

SPE_DWCONV_UKERNEL(avx2, 3, 1)
SPE_DWCONV_UKERNEL(avx2, 3, 2)
SPE_DWCONV_UKERNEL(avx2, 5, 1)
SPE_DWCONV_UKERNEL(avx2, 5, 2)
SPE_DWCONV_GENERIC(avx2)

SPE_DWCONV_UKERNEL(avx512, 3, 1)
SPE_DWCONV_UKERNEL(avx512, 3, 2)
SPE_DWCONV_UKERNEL(avx512, 5, 1)
SPE_DWCONV_UKERNEL(avx512, 5, 2)
SPE_DWCONV_GENERIC(avx512)

SPE_DWCONV_UKERNEL(neon, 3, 1)
SPE_DWCONV_UKERNEL(neon, 3, 2)
SPE_DWCONV_UKERNEL(neon, 5, 1)
SPE_DWCONV_UKERNEL(neon, 5, 2)
SPE_DWCONV_GENERIC(neon)
