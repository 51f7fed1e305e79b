// The int8 SpMM microkernels (u8 activations x s8 weights -> s32, requantized to u8): one line
// per kernel, like spmm/spmm_list.h. No include guard: the includer defines SPE_QSPMM_UKERNEL,
// includes this, undefines.
//
// SPE_QSPMM_UKERNEL(variant, rows, pixels) is qs8_spmm_{rows}x{pixels}__{variant}: a tile of
// `rows` output channels by `pixels` output pixels; an entry is a column quad (4 input channels
// at one kernel tap), so every instruction of the inner loop does 4 multiply-adds per lane.
// Every variant lists each row count 1..8 exactly once (qspmm.h checks it).
#ifndef SPE_QSPMM_UKERNEL
#error "define SPE_QSPMM_UKERNEL(variant, rows, pixels) before including qspmm_list.h"
#endif

// The scalar reference (plain loops): a "tile" of 16 pixels.
SPE_QSPMM_UKERNEL(scalar, 1, 16)
SPE_QSPMM_UKERNEL(scalar, 2, 16)
SPE_QSPMM_UKERNEL(scalar, 3, 16)
SPE_QSPMM_UKERNEL(scalar, 4, 16)
SPE_QSPMM_UKERNEL(scalar, 5, 16)
SPE_QSPMM_UKERNEL(scalar, 6, 16)
SPE_QSPMM_UKERNEL(scalar, 7, 16)
SPE_QSPMM_UKERNEL(scalar, 8, 16)

// x86 AVX2 (no VNNI): u8 widened to s16, vpmaddwd with s16 weight quads: 8 pixels a vector
// held as two registers of pair sums; 16 ymm = 2 x rows x vectors accumulators + 2 x vectors
// inputs + 1 weight (7 and 8 rows spill a few).
SPE_QSPMM_UKERNEL(avx2, 1, 24)
SPE_QSPMM_UKERNEL(avx2, 2, 16)
SPE_QSPMM_UKERNEL(avx2, 3, 8)
SPE_QSPMM_UKERNEL(avx2, 4, 8)
SPE_QSPMM_UKERNEL(avx2, 5, 8)
SPE_QSPMM_UKERNEL(avx2, 6, 8)
SPE_QSPMM_UKERNEL(avx2, 7, 8)
SPE_QSPMM_UKERNEL(avx2, 8, 8)

// x86 AVX-512 VNNI (vpdpbusd): 16 pixels a vector, 32 zmm = rows x vectors accumulators +
// vectors inputs + 1 weight broadcast.
SPE_QSPMM_UKERNEL(avx512vnni, 1, 128)
SPE_QSPMM_UKERNEL(avx512vnni, 2, 128)
SPE_QSPMM_UKERNEL(avx512vnni, 3, 112)
SPE_QSPMM_UKERNEL(avx512vnni, 4, 96)
SPE_QSPMM_UKERNEL(avx512vnni, 5, 64)
SPE_QSPMM_UKERNEL(avx512vnni, 6, 64)
SPE_QSPMM_UKERNEL(avx512vnni, 7, 48)
SPE_QSPMM_UKERNEL(avx512vnni, 8, 48)

// AArch64 NEON without the dot product: smull + sadalp (s8 x s8 -> s16 pairs -> s32 pair
// sums), 4 pixels a vector held as two registers.
SPE_QSPMM_UKERNEL(neon, 1, 32)
SPE_QSPMM_UKERNEL(neon, 2, 24)
SPE_QSPMM_UKERNEL(neon, 3, 16)
SPE_QSPMM_UKERNEL(neon, 4, 12)
SPE_QSPMM_UKERNEL(neon, 5, 8)
SPE_QSPMM_UKERNEL(neon, 6, 8)
SPE_QSPMM_UKERNEL(neon, 7, 8)
SPE_QSPMM_UKERNEL(neon, 8, 4)

// AArch64 NEON with the dot-product extension (sdot, Armv8.2 dotprod): 4 pixels a vector.
SPE_QSPMM_UKERNEL(neondot, 1, 32)
SPE_QSPMM_UKERNEL(neondot, 2, 32)
SPE_QSPMM_UKERNEL(neondot, 3, 28)
SPE_QSPMM_UKERNEL(neondot, 4, 24)
SPE_QSPMM_UKERNEL(neondot, 5, 20)
SPE_QSPMM_UKERNEL(neondot, 6, 16)
SPE_QSPMM_UKERNEL(neondot, 7, 12)
SPE_QSPMM_UKERNEL(neondot, 8, 12)
