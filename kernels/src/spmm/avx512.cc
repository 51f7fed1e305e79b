// AVX-512 f32 SpMM microkernels (16 floats a vector, 32 registers).
// Tiles: rows x vectors chosen so rows*NV accumulators + NV inputs fit the register file.
#include <immintrin.h>

#include "tile_template.h"

namespace spe {
namespace {

struct Avx512 {
  using reg = __m512;
  static constexpr int kWidth = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float f) { return _mm512_set1_ps(f); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static __mmask16 mask(int n) { return __mmask16((1u << n) - 1u); }
  static reg load_mask(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store_mask(float* p, reg v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
};

SpmmKernels make() {
  SpmmKernels k{};
  k.isa = "avx512";
  k.width = Avx512::kWidth;
  fill_rows<Avx512, 1, 8>(k);
  fill_rows<Avx512, 2, 8>(k);
  fill_rows<Avx512, 3, 7>(k);
  fill_rows<Avx512, 4, 6>(k);
  fill_rows<Avx512, 5, 4>(k);
  fill_rows<Avx512, 6, 4>(k);
  fill_rows<Avx512, 7, 3>(k);
  fill_rows<Avx512, 8, 3>(k);
  return k;
}

}  // namespace

const SpmmKernels* spmm_kernels_avx512() {
  static const SpmmKernels k = make();
  return &k;
}

}  // namespace spe
