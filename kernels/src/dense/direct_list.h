// The direct conv tiles of the packed dense conv (conv/direct_conv.cc): one line per kernel,
// like dense_list.h (the tables, names, catalog and tests follow from it). No include guard: the
// includer defines SPE_CONV_UKERNEL, includes this, undefines it.
//
// SPE_CONV_UKERNEL(isa, rows, pixels) is f32_conv_{rows}x{pixels}__{isa}: `rows` output
// channels by `pixels` output pixels of one output row (pixels / the ISA's vector width
// vectors) in registers over all K = C*kh*kw taps of a conv with few input channels (the
// mobile stems: 3 channels, 3x3, stride 2). Each ISA lists 1..kMaxDenseTiles tiles; the first
// is the one the layer runs unless one is named at create time.
#if !defined(SPE_CONV_UKERNEL)
#error "direct_list.h needs SPE_CONV_UKERNEL(isa, rows, pixels) defined by its includer"
#endif

// The scalar reference: plain loops, 1-float "vectors".
SPE_CONV_UKERNEL(scalar, 4, 8)

// AVX2 + FMA: 12 accumulators + 3 inputs + 1 broadcast weight of 16 ymm registers.
SPE_CONV_UKERNEL(avx2, 4, 24)

// AVX-512: 24 accumulators + 6 inputs of 32 zmm, the weight broadcast folded into the FMA.
SPE_CONV_UKERNEL(avx512, 4, 96)
SPE_CONV_UKERNEL(avx512, 8, 48)

// NEON: 24 accumulators + 6 inputs + 1 vector of 4 weights (used by lane) of 32 q registers.
SPE_CONV_UKERNEL(neon, 4, 24)
