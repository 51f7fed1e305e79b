// The f32 SpMM microkernels: one line per kernel. Everything else follows from this list: the
// per-ISA tables (tile_template.h), the names, the registry (registry.cc), the kernel catalog
// (engine._kernels.list_kernels(), common/kernel_list.cc), the C++ and Python tests and the
// benchmarks. No include guard: the includer defines SPE_SPMM_UKERNEL, includes this, undefines.
//
// SPE_SPMM_UKERNEL(isa, rows, pixels) is the kernel f32_spmm_{rows}x{pixels}__{isa}: a tile of
// `rows` output channels (one row group) by `pixels` output pixels (pixels / the ISA's vector
// width vectors, at most 16). Every ISA lists each row count 1..8 exactly once (registry.cc
// checks it at compile time): the packer's row groups are 1..8 rows high. A tile fills the
// register file: rows x vectors accumulators + the vectors of input + the weights (kernels/README.md).
#ifndef SPE_SPMM_UKERNEL
#error "define SPE_SPMM_UKERNEL(isa, rows, pixels) before including spmm_list.h"
#endif

// The scalar reference (plain loops, double accumulation): a "tile" of 16 single-float pixels.
SPE_SPMM_UKERNEL(scalar, 1, 16)
SPE_SPMM_UKERNEL(scalar, 2, 16)
SPE_SPMM_UKERNEL(scalar, 3, 16)
SPE_SPMM_UKERNEL(scalar, 4, 16)
SPE_SPMM_UKERNEL(scalar, 5, 16)
SPE_SPMM_UKERNEL(scalar, 6, 16)
SPE_SPMM_UKERNEL(scalar, 7, 16)
SPE_SPMM_UKERNEL(scalar, 8, 16)

// x86 AVX2 + FMA: 8 floats a vector, 16 ymm registers.
SPE_SPMM_UKERNEL(avx2, 1, 64)
SPE_SPMM_UKERNEL(avx2, 2, 32)
SPE_SPMM_UKERNEL(avx2, 3, 24)
SPE_SPMM_UKERNEL(avx2, 4, 16)
SPE_SPMM_UKERNEL(avx2, 5, 16)
SPE_SPMM_UKERNEL(avx2, 6, 16)
SPE_SPMM_UKERNEL(avx2, 7, 8)
SPE_SPMM_UKERNEL(avx2, 8, 8)

// x86 AVX-512: 16 floats a vector, 32 zmm registers.
SPE_SPMM_UKERNEL(avx512, 1, 128)
SPE_SPMM_UKERNEL(avx512, 2, 128)
SPE_SPMM_UKERNEL(avx512, 3, 112)
SPE_SPMM_UKERNEL(avx512, 4, 96)
SPE_SPMM_UKERNEL(avx512, 5, 64)
SPE_SPMM_UKERNEL(avx512, 6, 64)
SPE_SPMM_UKERNEL(avx512, 7, 48)
SPE_SPMM_UKERNEL(avx512, 8, 48)

// AArch64 NEON: 4 floats a vector, 32 q registers; registers = accumulators + inputs + weights.
SPE_SPMM_UKERNEL(neon, 1, 32)  //  8 +  8 + 1 = 17
SPE_SPMM_UKERNEL(neon, 2, 32)  // 16 +  8 + 1 = 25
SPE_SPMM_UKERNEL(neon, 3, 28)  // 21 +  7 + 2 = 30
SPE_SPMM_UKERNEL(neon, 4, 24)  // 24 +  6 + 1 = 31
SPE_SPMM_UKERNEL(neon, 5, 20)  // 25 +  5 + 2 = 32
SPE_SPMM_UKERNEL(neon, 6, 16)  // 24 +  4 + 2 = 30
SPE_SPMM_UKERNEL(neon, 7, 12)  // 21 +  3 + 3 = 27 (7x16 would need 35)
SPE_SPMM_UKERNEL(neon, 8, 12)  // 24 +  3 + 2 = 29
