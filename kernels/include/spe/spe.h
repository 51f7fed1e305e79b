/* spe: sparse pruning engine kernels, C API.
 *
 * The one header an app, a TVM module or the Python bindings need. No torch, no Python.
 *
 * A conv / linear weight of shape (O, C, kh, kw) ("linear" is kh = kw = 1) is packed into row
 * groups: group g covers output rows [row0[g], row0[g] + rows[g]) (rows in 1..8) and holds the
 * columns that are non-zero in any of its rows; column j is (c, k) flattened as c*kh*kw + k.
 * values hold, per entry, rows[g] consecutive floats (one per row of the group).
 *
 * Execution is a "phase-shifted flat SpMM": the input is rearranged once into stride*stride
 * zero-padded phase planes per channel, so every entry reads the input at one flat offset and
 * out[row, p] += w * in[offset + p] over "virtual" output pixels (cropped afterwards).
 */
#ifndef SPE_SPE_H_
#define SPE_SPE_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPE_API __attribute__((visibility("default")))

/* The two range markers make every int32 a value of the type (as Vulkan's *_MAX_ENUM), so that
 * an unknown activation from a C caller is SPE_ERR_INVALID_ARGUMENT, not undefined behaviour in
 * the C++ library (an enum's values otherwise span only its enumerators' bits). */
typedef enum {
  SPE_ACT_NONE = 0,
  SPE_ACT_RELU = 1,
  SPE_ACT_RELU6 = 2,
  SPE_ACT_HARDSWISH = 3, /* x * relu6(x + 3) / 6 */
  SPE_ACT_SILU = 4,      /* x * sigmoid(x) */
  SPE_ACT_GELU = 5,      /* x * (1 + erf(x / sqrt(2))) / 2 */
  SPE_ACT_GELU_TANH = 6, /* x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))) / 2 */
  SPE_ACT_LAST_ = SPE_ACT_GELU_TANH,
  SPE_ACT_RANGE_MIN_ = -2147483647 - 1,
  SPE_ACT_RANGE_MAX_ = 2147483647
} spe_activation;

/* Every function returning a status records a message for spe_last_error() when it fails.
 * No C++ exception ever crosses this API: an allocation failure anywhere (layer arrays, the
 * per-input-size workspace, threads' buffers) is SPE_ERR_OUT_OF_MEMORY, any other unexpected
 * failure SPE_ERR_INTERNAL; the process and the layer stay usable. */
typedef enum {
  SPE_OK = 0,
  SPE_ERR_INVALID_ARGUMENT = 1,
  SPE_ERR_UNSUPPORTED_ISA = 2,
  SPE_ERR_OUT_OF_MEMORY = 3,
  SPE_ERR_INTERNAL = 4,
} spe_status;

/* Geometry of a conv layer; a linear layer is kh = kw = 1, stride 1, pad 0, H = W = 1. */
typedef struct {
  int32_t out_channels, in_channels, kh, kw;
  int32_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
} spe_conv_params;

typedef struct spe_sparse_conv spe_sparse_conv; /* opaque */

/* Builds a packed layer (copies every array). isa: "auto", "scalar", "avx2", "avx512", "neon". */
SPE_API spe_status spe_sparse_conv_create(const spe_conv_params* params, int32_t n_groups,
                                          const int32_t* group_row0, const int32_t* group_rows,
                                          const int64_t* group_ptr, /* n_groups + 1 */
                                          const int32_t* entry_col, const float* values,
                                          const float* bias /* O or NULL */,
                                          spe_activation act, const char* isa,
                                          spe_sparse_conv** out);

/* y = act(conv(x) + bias [+ residual]) for x (N, C, H, W), y (N, O, Ho, Wo), NCHW contiguous.
 * residual (N, O, Ho, Wo) or NULL. Thread-safe for distinct y, and never blocks on another
 * call: the layer caches the geometry and buffer of the last input size for the call that
 * finds them free; a concurrent call (or, in a process forked while a call was running, any
 * call) works in buffers of its own, with the same result. The input size is checked even
 * when n == 0: SPE_ERR_INVALID_ARGUMENT if the input is smaller than the (dilated) kernel, or
 * so large that the phase planes of all channels would exceed 2^31 floats (int32 offsets). */
SPE_API spe_status spe_sparse_conv_run(spe_sparse_conv* conv, const float* x, int32_t n,
                                       int32_t h, int32_t w, const float* residual, float* y);

/* 0 for a dimension whose output would be empty or would not fit int32. */
/* The accessors below return no status; given a NULL layer they give 0x0, 0, "" or do nothing. */
SPE_API void spe_sparse_conv_output_size(const spe_sparse_conv* conv, int32_t h, int32_t w,
                                         int32_t* ho, int32_t* wo);
SPE_API int64_t spe_sparse_conv_nnz(const spe_sparse_conv* conv); /* stored weights */
SPE_API const char* spe_sparse_conv_kernel_name(const spe_sparse_conv* conv);
SPE_API void spe_sparse_conv_destroy(spe_sparse_conv* conv);

/* Depthwise conv: groups == in_channels == out_channels = C, one kh x kw filter per channel,
 * dense. Direct NCHW kernels (no phase planes of the whole input): each thread copies the input
 * rows it needs into a few zero-padded row buffers, split into column phases for strides > 1,
 * and fuses bias, residual and activation into the store. Any kh, kw <= 64, stride <= 64,
 * padding <= 65536 (per side, the same both sides as in torch), dilation <= 64; specialised
 * kernels for 3x3 and 5x5 at stride 1 and 2 (dilation 1), a generic one for the rest.
 * Kernel names: f32_dwconv_{k}x{k}s{s}__{isa} or f32_dwconv_generic__{isa}. */
typedef struct spe_depthwise_conv spe_depthwise_conv; /* opaque */

/* params: out_channels == in_channels = C, kh, kw, strides, padding, dilations.
 * weight (C, kh, kw) (a torch (C, 1, kh, kw) weight as is), bias C or NULL; both are copied.
 * isa: "auto", "scalar", "avx2", "avx512", "neon". */
SPE_API spe_status spe_depthwise_conv_create(const spe_conv_params* params, const float* weight,
                                             const float* bias, spe_activation act,
                                             const char* isa, spe_depthwise_conv** out);

/* y = act(depthwise(x) + bias [+ residual]) for x (N, C, H, W), y (N, C, Ho, Wo), NCHW
 * contiguous, zero padding and floor output size as torch's conv2d(groups=C). residual
 * (N, C, Ho, Wo) or NULL. Keeps no per-call state in the layer: thread-safe for distinct y.
 * The result does not depend on the thread count. */
SPE_API spe_status spe_depthwise_conv_run(spe_depthwise_conv* conv, const float* x, int32_t n,
                                          int32_t h, int32_t w, const float* residual, float* y);

SPE_API void spe_depthwise_conv_output_size(const spe_depthwise_conv* conv, int32_t h, int32_t w,
                                            int32_t* ho, int32_t* wo); /* 0 if too small */
/* run() refuses (SPE_ERR_INVALID_ARGUMENT) inputs whose padded height or width reaches 2^28. */
SPE_API const char* spe_depthwise_conv_kernel_name(const spe_depthwise_conv* conv);
SPE_API void spe_depthwise_conv_destroy(spe_depthwise_conv* conv);

/* ---- Fused inverted-residual block (MobileNetV2-style), kernels/src/mobile/ ----
 * y = project(act(depthwise(act(expand(x) + b1)) + b2)) + b3 [+ x], NCHW float32: expand and
 * project are 1x1 convs in the packed row-group format above (dense is one group per 8 rows with
 * every column), the depthwise conv is dense, kernel x kernel, stride, padding kernel / 2. The
 * expanded tensor stays in cache (computed a band of rows at a time, never written out whole).
 * Kernel names: f32_invres_{k}x{k}s{s}__{isa} (kernels/src/mobile/invres_list.h). */
typedef struct spe_inverted_block spe_inverted_block; /* opaque */

/* One 1x1 conv's packed weights: spe_sparse_conv_create's arrays (columns = input channels). */
typedef struct {
  int32_t n_groups;
  const int32_t* group_row0;
  const int32_t* group_rows;
  const int64_t* group_ptr; /* n_groups + 1 */
  const int32_t* entry_col;
  const float* values;
  const float* bias; /* out rows, or NULL */
} spe_pointwise_weights;

typedef struct {
  int32_t in_channels, expanded, out_channels; /* expanded == in_channels without an expand */
  int32_t kernel, stride;                      /* the depthwise conv */
  spe_activation expand_act, dw_act;           /* SPE_ACT_RELU6 in MobileNetV2 */
  int32_t residual;  /* 1: y += x (stride 1 and in_channels == out_channels) */
  int32_t band_rows; /* 0: chosen per input size; else output rows per band (tuning, tests) */
  int32_t schedule;  /* 0: chosen per input size; 1: bands of rows; 2: groups of channels */
  int32_t flags;     /* 0, or SPE_INVRES_* below: the alternatives, for benchmarks and tests */
} spe_inverted_block_params;

/* Depthwise conv on its plane kernel even where small stride-1 planes would run flat on the
 * SpMM tiles (7x7, 14x14); 1x1 tiles cut into equal whole-vector tiles (80 + 80 + 36 pixels
 * for 196) rather than the listed tile and a remainder (96 + 96 + 4). */
#define SPE_INVRES_PLANE_DEPTHWISE 1
#define SPE_INVRES_BALANCED_TILES 2

/* expand NULL: no expand conv (MobileNetV2's first block). dw_weight (expanded, k, k), dw_bias
 * expanded floats or NULL. Every array is copied; the packed ones are validated as
 * spe_sparse_conv_create validates them. */
SPE_API spe_status spe_inverted_block_create(const spe_inverted_block_params* params,
                                             const spe_pointwise_weights* expand,
                                             const float* dw_weight, const float* dw_bias,
                                             const spe_pointwise_weights* project,
                                             const char* isa, spe_inverted_block** out);
/* x (N, in_channels, H, W) -> y (N, out_channels, Ho, Wo). Thread-safe for distinct y; never
 * blocks on another call (a busy workspace is replaced by a private one). */
SPE_API spe_status spe_inverted_block_run(spe_inverted_block* block, const float* x, int32_t n,
                                          int32_t h, int32_t w, float* y);
SPE_API void spe_inverted_block_output_size(const spe_inverted_block* block, int32_t h, int32_t w,
                                            int32_t* ho, int32_t* wo);
SPE_API const char* spe_inverted_block_kernel_name(const spe_inverted_block* block);
SPE_API void spe_inverted_block_destroy(spe_inverted_block* block);
/* Dense conv (groups 1), packed once: the weight (O, C, kh, kw) is copied into panels for the
 * dense GEMM microkernels (no index stream, no zero skipping). algo:
 *   "gemm"      implicit GEMM: any kh, kw, stride, padding (same both sides), dilation <= 64;
 *               the input panels are gathered from NCHW per block of pixels (strides, padding
 *               and dilation resolved there), so there is no whole-input relayout. A 1x1
 *               stride-1 unpadded conv reads the input in place instead (the pointwise path:
 *               the widest tile over all of K, the pixels past the last whole vector on a
 *               channels-in-lanes kernel; kernels/README.md). Any other conv with K =
 *               C*kh*kw <= 64 or up to 4 input channels (the stems) takes the direct path:
 *               no im2col, each input row laid out once per stride phase, an f32_conv tile
 *               over all K taps. A strided conv past 1x1 with an output of 64 pixels or more
 *               takes the phase path (the input's stride phase planes, the output pixels
 *               flattened, the f32_conv tiles); a 1x1 with a stride or padding, and a smaller
 *               strided output, the pointwise path on im2col(x) gathered per pixel band
 *               (kernels/README.md).
 *   "gemm-packed", "gemm-pointwise", "gemm-direct", "gemm-phase"  "gemm" forced onto one
 *               path, any conv (benchmarks, tests).
 *   "winograd"  Winograd for 3x3, stride 1, dilation 1 only (else SPE_ERR_INVALID_ARGUMENT):
 *               F(4x4, 3x3) or, where its 4x4 tiles would leave the vectors part empty (7x7
 *               outputs), F(2x2, 3x3), picked per input size; "winograd-f4" / "winograd-f2"
 *               force one. The layer keeps the 3x3 weight; the first run of a variant packs its
 *               transformed filters (36 or 16 x O x C floats: 4x or 1.8x the 3x3 weight).
 *               F(4x4) rounds more than the GEMM (kernels/README.md, "Winograd").
 *   a kernel name of the ISA's f32_gemm list (f32_gemm_8x48__avx512): "gemm-packed" with that
 *               tile for every input size (benchmarks, tests); otherwise the tile is picked per input
 *               size (spe_dense_conv_kernel_name tells which). A name of its f32_conv list
 *               (f32_conv_8x48__avx512): "gemm-direct" on that tile.
 * bias O or NULL. isa: "auto", "scalar", "avx2", "avx512", "neon". */
typedef struct spe_dense_conv spe_dense_conv; /* opaque */

SPE_API spe_status spe_dense_conv_create(const spe_conv_params* params, const float* weight,
                                         const float* bias, spe_activation act, const char* isa,
                                         const char* algo, spe_dense_conv** out);

/* y = act(conv(x) + bias [+ residual]) for x (N, C, H, W), y (N, O, Ho, Wo), NCHW contiguous;
 * residual (N, O, Ho, Wo) or NULL; y must not overlap x or the residual (y holds partial sums
 * while a call runs). Keeps no per-call state in the layer (a Winograd variant's packed
 * filters, made by its first run, are installed lock-free and kept): thread-safe for distinct
 * y, and a call never waits for another. The result does not depend on the thread count. */
SPE_API spe_status spe_dense_conv_run(spe_dense_conv* conv, const float* x, int32_t n,
                                      int32_t h, int32_t w, const float* residual, float* y);

SPE_API void spe_dense_conv_output_size(const spe_dense_conv* conv, int32_t h, int32_t w,
                                        int32_t* ho, int32_t* wo); /* 0 if too small */
/* The f32_gemm (or, on the direct path, f32_conv; a 1x1 stride-1 layer on one output pixel, a
 * batch-1 linear: f32_gemv) microkernel an h x w input runs on ("" for a NULL layer or too
 * small an input). */
SPE_API const char* spe_dense_conv_kernel_name(const spe_dense_conv* conv, int32_t h, int32_t w);
SPE_API int spe_dense_conv_is_winograd(const spe_dense_conv* conv);
SPE_API void spe_dense_conv_destroy(spe_dense_conv* conv);

/* ---- int8 conv / linear (kernels/src/conv/qconv.cc, kernels/src/qspmm/) ----
 * u8 activations with a per-tensor scale and zero point (x = scale * (q - zero_point)), s8
 * weights with a scale per output channel (symmetric: w = weight_scale[o] * q), s32 sums, and
 * the result requantized to u8 in the store (bias, a u8 residual and ReLU / ReLU6 fused). The
 * weights are packed like spe_sparse_conv's, in column quads: an entry is 4 consecutive input
 * channels (quad q: channels 4q .. 4q + 3) at one kernel tap k, entry_quad = q * kh * kw + k,
 * and values hold, per entry, rows[g] x 4 s8 (row-major: each row's 4 channels). A weight of a
 * channel past in_channels must be 0. In float terms the layer computes
 *   y = act(conv(x) + bias [+ residual]), every tensor dequantized,
 * with the sums exact in int32 and, in units of the output scale sy, the requantization
 *   v = fma(float(sum - zx * sum(w)), sx * weight_scale[o] / sy, bias[o] / sy)
 *   v = fma(float(r - residual.zero_point), residual.scale / sy, v)     (with a residual)
 *   v = act(v) (ReLU6's bound 6 / sy), q = clamp(round_half_even(min(v, 512)) + zy, 0, 255)
 * (the constants folded in double, rounded once to float): every ISA variant gives the same
 * bytes (kernels/src/qspmm/qspmm.h). Limits: in_channels rounded up to 4, times kh * kw, at
 * most 65536; activations NONE, RELU, RELU6; the folded constants must be finite floats.
 * Variants (isa): "auto", "scalar", "avx2", "avx512vnni" (or "avx512": needs AVX-512 BW and
 * VNNI), "neon", "neondot" (Armv8.2 dot product, read from AT_HWCAP). Kernel names:
 * qs8_spmm_{rows}x{pixels}__{variant}. */
typedef struct {
  float scale;        /* > 0, finite */
  int32_t zero_point; /* 0 .. 255 */
} spe_qparams;

/* Layouts of the u8 tensors: NCHW, or NCHW4 = (N, ceil(C / 4), H, W, 4), 4 channels a 32-bit
 * word (the kernels' own: an NCHW4 input to a 1x1 stride-1 unpadded conv is read in place, any
 * other is copied by whole words; an NCHW4 output is interleaved from L1 as it is stored, its
 * channels past C set to the output's zero point). int8 layers chained in NCHW4 never relayout. */
#define SPE_QLAYOUT_NCHW 0
#define SPE_QLAYOUT_NCHW4 1

typedef struct {
  spe_qparams input, output;
  spe_qparams residual;      /* the residual's, when run() is given one (else unused) */
  const float* weight_scale; /* out_channels, each > 0 */
  const float* bias;         /* out_channels floats, or NULL */
  int32_t input_layout;      /* SPE_QLAYOUT_*: x */
  int32_t output_layout;     /* SPE_QLAYOUT_*: y and the residual */
} spe_qconv_quant;

typedef struct spe_qconv spe_qconv; /* opaque */

SPE_API spe_status spe_qconv_create(const spe_conv_params* params, int32_t n_groups,
                                    const int32_t* group_row0, const int32_t* group_rows,
                                    const int64_t* group_ptr, const int32_t* entry_quad,
                                    const int8_t* values, const spe_qconv_quant* quant,
                                    spe_activation act, const char* isa, spe_qconv** out);
/* x (N, C, H, W) u8, y (N, O, Ho, Wo) u8, residual (N, O, Ho, Wo) u8 or NULL, contiguous in
 * their layouts (NCHW4: channels rounded up to 4). y must not overlap x or the residual. Thread-safe for distinct y and never blocks on another call (as spe_sparse_conv_run). */
SPE_API spe_status spe_qconv_run(spe_qconv* conv, const uint8_t* x, int32_t n, int32_t h,
                                 int32_t w, const uint8_t* residual, uint8_t* y);
/* An int8 linear layer on float rows: the layer 1x1, stride 1, unpadded, NCHW4 in and out, no
 * residual; x float32 (rows, C) row-major, y float32 (rows, O). x is quantized on the layer's
 * input grid (as spe_quantize: finite values only, else SPE_ERR_INVALID_ARGUMENT naming the
 * first) into the (1, ceil(C / 4), 1, rows, 4) image the layer reads, the layer runs, and its
 * output is dequantized on the output grid (as spe_dequantize): the rows are the pixels. */
SPE_API spe_status spe_qconv_run_linear(spe_qconv* conv, const float* x, int32_t rows, float* y);
/* The layer on float NCHW tensors: x float32 (N, C, H, W) quantized on the layer's input grid
 * (as spe_quantize, finite values only) into the NCHW4 image the layer reads, the layer (NCHW4 in
 * and out, no u8 residual), its output dequantized (as spe_dequantize) into y float32 (N, O, Ho,
 * Wo). A linear layer over the pixels of (1, C, 1, rows), its input and output transposed from
 * spe_qconv_run_linear's, computes the same floats bit for bit (a transformer's token stream
 * kept as (1, features, 1, tokens) between layers needs no transposes around it). Then, in float
 * (the float ops a transformer applies to a linear's result): y = post_act(y + residual),
 * residual float32 of y's shape or NULL, post_act any SPE_ACT_* (SPE_ACT_NONE: none; GELU as the
 * fp32 kernels' epilogue computes it). y may not overlap x or the residual. */
SPE_API spe_status spe_qconv_run_float(spe_qconv* conv, const float* x, int32_t n, int32_t h,
                                       int32_t w, const float* residual, spe_activation post_act,
                                       float* y);
SPE_API void spe_qconv_output_size(const spe_qconv* conv, int32_t h, int32_t w, int32_t* ho,
                                   int32_t* wo);
SPE_API int64_t spe_qconv_nnz(const spe_qconv* conv); /* non-zero weights */
SPE_API const char* spe_qconv_kernel_name(const spe_qconv* conv);
SPE_API void spe_qconv_destroy(spe_qconv* conv);

/* ---- int8 depthwise conv (kernels/src/conv/qdepthwise.cc) ----
 * groups == in_channels == out_channels = C, one kh x kw filter per channel, s8 weight (C, kh,
 * kw) with a scale per channel (quant->weight_scale, C floats), bias C floats or NULL; x,
 * residual and y u8 in NCHW4 (quant's layouts must both be SPE_QLAYOUT_NCHW4), the int8 conv's
 * requantization fused (ReLU / ReLU6, the residual before the activation); the pad channels of
 * y's last quad hold the output's zero point. Any kernel up to 1024 taps, strides, padding,
 * dilation as spe_depthwise_conv. Every variant gives the scalar reference's bytes. Kernel
 * names: qs8_dwconv__{variant}. Keeps no per-call state: thread-safe for distinct y. */
typedef struct spe_qdepthwise spe_qdepthwise; /* opaque */
SPE_API spe_status spe_qdepthwise_create(const spe_conv_params* params, const int8_t* weight,
                                         const spe_qconv_quant* quant, spe_activation act,
                                         const char* isa, spe_qdepthwise** out);
SPE_API spe_status spe_qdepthwise_run(spe_qdepthwise* conv, const uint8_t* x, int32_t n,
                                      int32_t h, int32_t w, const uint8_t* residual, uint8_t* y);
SPE_API void spe_qdepthwise_output_size(const spe_qdepthwise* conv, int32_t h, int32_t w,
                                        int32_t* ho, int32_t* wo);
SPE_API const char* spe_qdepthwise_kernel_name(const spe_qdepthwise* conv);
SPE_API void spe_qdepthwise_destroy(spe_qdepthwise* conv);

/* ---- int8 glue (kernels/src/conv/qglue.cc): u8 tensors in NCHW or NCHW4 (layout) ----
 * quantize: y = clamp(round_half_even(x * float(1 / q.scale)) + q.zero_point, 0, 255) (an NCHW4
 * y's channels past c at the zero point); x must be finite (SPE_ERR_INVALID_ARGUMENT names the
 * first element that is not). dequantize: y = float(x - zero_point) * scale (the first c
 * channels). max pool: spe_max_pool2d's geometry and rules on u8 codes (any one scale and zero
 * point: quantization is monotone). Parallel over (image, channel or quad). */
SPE_API spe_status spe_quantize(const float* x, int32_t n, int32_t c, int32_t h, int32_t w,
                                spe_qparams q, int32_t layout, uint8_t* y);
SPE_API spe_status spe_dequantize(const uint8_t* x, int32_t n, int32_t c, int32_t h, int32_t w,
                                  spe_qparams q, int32_t layout, float* y);
SPE_API spe_status spe_max_pool2d_u8(const uint8_t* x, int32_t n, int32_t c, int32_t h, int32_t w,
                                     int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t ph,
                                     int32_t pw, int32_t layout, uint8_t* y);

/* Max pooling, NCHW float32, dilation 1, floor mode, padding never wins, NaN propagates: torch's
 * max_pool2d, with torch's validation: kernel > 0, stride > 0, 0 <= padding <= kernel / 2,
 * n >= 0, c > 0, h > 0, w > 0, and an output of at least 1x1 with
 * ho = floor((h + 2 ph - kh) / sh) + 1 (likewise wo). Anything else: SPE_ERR_INVALID_ARGUMENT
 * and a message; no int32 arguments can make it divide by zero or overflow. */
SPE_API spe_status spe_max_pool2d(const float* x, int32_t n, int32_t c, int32_t h, int32_t w,
                                  int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t ph,
                                  int32_t pw, float* y);
/* The output size spe_max_pool2d gives for an h x w plane, or the error it would return. */
SPE_API spe_status spe_max_pool2d_output_size(int32_t h, int32_t w, int32_t kh, int32_t kw,
                                              int32_t sh, int32_t sw, int32_t ph, int32_t pw,
                                              int32_t* ho, int32_t* wo);

/* Threads used by every kernel (1 = caller only), clamped to 1..1024. Default: hardware
 * concurrency. If the system refuses to start threads, the kernels run on the ones that
 * started. Calls from several threads share the pool one at a time. Safe across fork(): a
 * child starts a new pool. */
SPE_API void spe_set_num_threads(int32_t n);
SPE_API int32_t spe_get_num_threads(void);

/* A parallel runtime the process already has, for the kernels to run on instead of their own
 * pool: one set of worker threads for every layer of a model, and one thread count. A TVM
 * module with the kernels linked in installs TVM's pool (the bridge does this when model.so
 * loads); an app with its own pool may install that.
 *   launch(body, job, ctx): calls body(task, job) once for each task in [0, T) on T threads
 *       (the caller being one of them), for the T the runtime has now, and returns when all
 *       returned; 0 on success. body never throws and returns 0; tasks share the work
 *       dynamically, so T may be any count >= 1, and work the runtime did not run (launch
 *       failed) is done on the caller.
 *   num_threads(ctx): T, the runtime's current thread count (the kernels size tiles by it).
 * While installed, spe_get_num_threads() reports num_threads(ctx) and the kernels' own workers
 * are stopped; spe_set_num_threads() only sizes the own pool for when it is back. rt == NULL
 * or rt->launch == NULL uninstalls it; so does fork() in the child (the runtime's workers do
 * not exist there), where the kernels run on their own pool. SPE_ERR_INVALID_ARGUMENT if launch is set without
 * num_threads. Must not be called while a kernel runs. */
typedef int32_t (*spe_task_fn)(int32_t task, void* job);
typedef struct {
  int32_t (*launch)(spe_task_fn body, void* job, void* ctx);
  int32_t (*num_threads)(void* ctx);
  void* ctx;
} spe_parallel_runtime;
SPE_API spe_status spe_set_parallel_runtime(const spe_parallel_runtime* rt);

/* 1 if this CPU can run the named ISA variant and it was compiled in. */
SPE_API int spe_isa_available(const char* isa);
SPE_API const char* spe_best_isa(void);
SPE_API const char* spe_last_error(void);

#ifdef __cplusplus
}
#endif
#endif /* SPE_SPE_H_ */
