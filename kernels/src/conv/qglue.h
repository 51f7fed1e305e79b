// The int8 glue's internals the kernel test runner reaches (kernels/tests/qglue_sweep.cc).
#ifndef SPE_CONV_QGLUE_H_
#define SPE_CONV_QGLUE_H_

namespace spe {

// false: spe_quantize and spe_dequantize take their portable paths (SSE2 / NEON / scalar) even
// where the one-pass AVX-512 paths run, so that every machine checks both. Default true; for
// tests only.
void set_quantize_avx512(bool on);

}  // namespace spe

#endif  // SPE_CONV_QGLUE_H_
