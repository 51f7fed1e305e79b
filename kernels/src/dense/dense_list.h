// The f32 dense GEMM microkernels of the packed dense conv (conv/dense_conv.cc): one line per
// kernel. Everything else follows from this list: the per-ISA tables (gemm_template.h), the
// names, the registry (registry.cc), the kernel catalog (engine._kernels.list_kernels(),
// common/kernel_list.cc), the C++ and Python tests and the benchmarks. No include guard: the
// includer defines SPE_DENSE_UKERNEL, includes this, undefines it.
//
// SPE_DENSE_UKERNEL(isa, rows, pixels) is f32_gemm_{rows}x{pixels}__{isa}: a register tile of
// `rows` output channels (weights pre-packed in panels of `rows`, broadcast one at a time) by
// `pixels` output pixels (pixels / the ISA's vector width vectors of a packed input panel).
// Unlike the SpMM there is no index stream: the k-th weight of a panel pairs with the k-th row
// of the input panel. Each ISA lists at most kMaxDenseTiles tiles, widest first; a layer takes
// the one that wastes the least work on its padded rows and pixels (dense_conv.cc).
//
// SPE_CONV_UKERNEL(isa, rows, pixels) is f32_conv_{rows}x{pixels}__{isa}, a tile of the direct
// path (conv/direct_conv.cc, direct_template.h): `rows` output channels by `pixels` output
// pixels of one output row in registers over all K = C*kh*kw taps of a conv with few input
// channels (the mobile stems: 3 channels, 3x3, stride 2). Each ISA lists 1..kMaxDenseTiles; a
// layer runs the one that pads the fewest output channels (ties: listed first) unless it names
// one. An includer defines both macros (the list it does not read as nothing).
#if !defined(SPE_DENSE_UKERNEL) || !defined(SPE_CONV_UKERNEL)
#error "dense_list.h needs SPE_DENSE_UKERNEL and SPE_CONV_UKERNEL(isa, rows, pixels) defined by its includer"
#endif

// The scalar reference (plain loops): the same packing, 4 single-float "vectors".
SPE_DENSE_UKERNEL(scalar, 4, 4)
SPE_DENSE_UKERNEL(scalar, 2, 8)
SPE_CONV_UKERNEL(scalar, 4, 8)

// x86 AVX2 + FMA: 8 floats a vector, 16 ymm registers: 12 accumulators + 3 inputs + 1 weight.
SPE_DENSE_UKERNEL(avx2, 4, 24)
SPE_DENSE_UKERNEL(avx2, 8, 8)  // 8 + 1 + 1: small images
SPE_CONV_UKERNEL(avx2, 4, 24)  // 12 + 3 + 1

// x86 AVX-512: 16 floats a vector, 32 zmm registers; the weight broadcast folds into the FMA.
SPE_DENSE_UKERNEL(avx512, 8, 48)   // 24 accumulators + 3 inputs
SPE_DENSE_UKERNEL(avx512, 8, 32)   // 16 + 2
SPE_DENSE_UKERNEL(avx512, 16, 16)  // 16 + 1: small images (14x14: 196 pixels, 7x7: 49)
SPE_CONV_UKERNEL(avx512, 8, 48)    // 24 + 3: 32x3 stem 231 us, 16x3 128 (4x96: 235, 131)
SPE_CONV_UKERNEL(avx512, 4, 96)    // 24 + 6: output channels 4 past a multiple of 8

// AArch64 NEON: 4 floats a vector, 32 q registers; weights loaded as vectors, used by lane.
SPE_DENSE_UKERNEL(neon, 8, 12)  // 24 accumulators + 3 inputs + 2 weight vectors
SPE_DENSE_UKERNEL(neon, 4, 20)  // 20 + 5 + 1: small images
SPE_CONV_UKERNEL(neon, 4, 24)   // 24 + 6 + 1
