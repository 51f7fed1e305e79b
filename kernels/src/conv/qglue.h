// The int8 glue's internals other parts reach: the kernel test runner (kernels/tests/
// qglue_sweep.cc) and the int8 linear layer's float entry (conv/qconv.cc).
#ifndef SPE_CONV_QGLUE_H_
#define SPE_CONV_QGLUE_H_

#include <cstdint>

#include "spe/spe.h"

namespace spe {

// false: spe_quantize and spe_dequantize take their portable paths (SSE2 / NEON / scalar) even
// where the one-pass AVX-512 paths run, so that every machine checks both. Default true; for
// tests only.
void set_quantize_avx512(bool on);

// A linear layer's rows to and from the NCHW4 image its 1x1 int8 kernel reads and writes
// (spe_qconv_run_linear): x float (rows, c) row-major quantized as spe_quantize does into y
// (ceil(c / 4), rows, 4) u8 (the channels past c at the zero point; SPE_ERR_INVALID_ARGUMENT
// naming the first x that is not finite), and (ceil(c / 4), rows, 4) u8 dequantized as
// spe_dequantize does into (rows, c) float. Parallel over blocks of rows. q is checked.
spe_status quantize_rows(const float* x, int64_t rows, int32_t c, spe_qparams q, uint8_t* y);
spe_status dequantize_rows(const uint8_t* x, int64_t rows, int32_t c, spe_qparams q, float* y);

}  // namespace spe

#endif  // SPE_CONV_QGLUE_H_
