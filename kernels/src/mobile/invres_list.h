// The fused inverted-residual blocks (expand 1x1 -> depthwise k x k -> project 1x1): one line per
// block kernel. Everything else follows from this list: the block's kernel name, which depthwise
// geometries create() accepts (mobile/invres.h), the kernel catalog
// (engine._kernels.list_kernels(), common/kernel_list.cc), the tests and the benchmarks. No
// include guard: the includer defines SPE_INVRES_UKERNEL, includes this, undefines.
//
// SPE_INVRES_UKERNEL(isa, k, s) is f32_invres_{k}x{k}s{s}__{isa}: a block whose depthwise conv is
// k x k, stride s both ways, padding k / 2, dilation 1. Its inner loops are the families' own:
// the expand and project 1x1 run the f32_spmm tiles of the ISA, the depthwise conv runs the
// f32_dwconv_{k}x{k}s{s} plane kernel of the ISA on rows of the expanded tensor held in cache.
// So a line here needs the matching dwconv_list.h line (mobile/invres.h checks it).
#ifndef SPE_INVRES_UKERNEL
#error "define SPE_INVRES_UKERNEL(isa, k, s) before including invres_list.h"
#endif

SPE_INVRES_UKERNEL(scalar, 3, 1)
SPE_INVRES_UKERNEL(scalar, 3, 2)
SPE_INVRES_UKERNEL(scalar, 5, 1)
SPE_INVRES_UKERNEL(scalar, 5, 2)

SPE_INVRES_UKERNEL(avx2, 3, 1)
SPE_INVRES_UKERNEL(avx2, 3, 2)
SPE_INVRES_UKERNEL(avx2, 5, 1)
SPE_INVRES_UKERNEL(avx2, 5, 2)

SPE_INVRES_UKERNEL(avx512, 3, 1)
SPE_INVRES_UKERNEL(avx512, 3, 2)
SPE_INVRES_UKERNEL(avx512, 5, 1)
SPE_INVRES_UKERNEL(avx512, 5, 2)

SPE_INVRES_UKERNEL(neon, 3, 1)
SPE_INVRES_UKERNEL(neon, 3, 2)
SPE_INVRES_UKERNEL(neon, 5, 1)
SPE_INVRES_UKERNEL(neon, 5, 2)
