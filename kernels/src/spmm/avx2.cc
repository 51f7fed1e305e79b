// AVX2 + FMA f32 SpMM microkernels (8 floats a vector, 16 registers).
#include <immintrin.h>

#include "tile_template.h"

namespace spe {
namespace {

struct Avx2 {
  using reg = __m256;
  static constexpr int kWidth = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float f) { return _mm256_set1_ps(f); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static __m256i mask(int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
  }
  static reg load_mask(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }
  static void store_mask(float* p, reg v, __m256i m) { _mm256_maskstore_ps(p, m, v); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
};

SpmmKernels make() {
  SpmmKernels k{};
  k.isa = "avx2";
  k.width = Avx2::kWidth;
  fill_rows<Avx2, 1, 8>(k);
  fill_rows<Avx2, 2, 4>(k);
  fill_rows<Avx2, 3, 3>(k);
  fill_rows<Avx2, 4, 2>(k);
  fill_rows<Avx2, 5, 2>(k);
  fill_rows<Avx2, 6, 2>(k);
  fill_rows<Avx2, 7, 1>(k);
  fill_rows<Avx2, 8, 1>(k);
  return k;
}

}  // namespace

const SpmmKernels* spmm_kernels_avx2() {
  static const SpmmKernels k = make();
  return &k;
}

}  // namespace spe
