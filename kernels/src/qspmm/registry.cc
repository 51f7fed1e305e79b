// The int8 SpMM registry: the table of each variant this build compiled in and this CPU runs.
// AVX-512 VNNI needs avx512vnni, avx512bw and avx512vl besides avx512f; NEON dotprod is read from the
// kernel's hardware capabilities (AT_HWCAP's ASIMDDP bit).
#include <cstring>

#include "../isa/compiled.h"
#include "qspmm.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace spe {

#define SPE_QV_DECL(v) template <> const QSpmmKernels* qspmm_table<QVariant::v>();
SPE_QSPMM_VARIANTS(SPE_QV_DECL)
#undef SPE_QV_DECL

namespace {

bool cpu_runs(QVariant v) {
  switch (v) {
    case QVariant::scalar: return true;
#if defined(__x86_64__)
    case QVariant::avx2: return isa_runs(Isa::avx2);
    case QVariant::avx512vnni:
      return isa_runs(Isa::avx512) && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
#if defined(__aarch64__)
    case QVariant::neon: return isa_runs(Isa::neon);
    case QVariant::neondot:
#if defined(__linux__)
      return isa_runs(Isa::neon) && (getauxval(AT_HWCAP) & (1ul << 20)) != 0;  // HWCAP_ASIMDDP
#else
      return false;
#endif
#endif
    default: return false;
  }
}

}  // namespace

const QSpmmKernels* qspmm_kernels(QVariant v) {
  if (!cpu_runs(v)) return nullptr;
  switch (v) {
    case QVariant::scalar: return qspmm_table<QVariant::scalar>();
#ifdef SPE_HAVE_AVX2
    case QVariant::avx2: return qspmm_table<QVariant::avx2>();
#endif
#ifdef SPE_HAVE_AVX512
    case QVariant::avx512vnni: return qspmm_table<QVariant::avx512vnni>();
#endif
#ifdef SPE_HAVE_NEON
    case QVariant::neon: return qspmm_table<QVariant::neon>();
    case QVariant::neondot: return qspmm_table<QVariant::neondot>();
#endif
    default: return nullptr;
  }
}

const char* qvariant_name(QVariant v) {
  constexpr const char* kNames[] = {
#define SPE_QV_NAME(v) #v,
      SPE_QSPMM_VARIANTS(SPE_QV_NAME)
#undef SPE_QV_NAME
  };
  const int i = int(v);
  return i >= 0 && i < kNumQVariants ? kNames[i] : "";
}

bool parse_qvariant(const char* s, QVariant* out) {
  if (!s) return false;
  if (std::strcmp(s, "auto") == 0) {
    QVariant best = QVariant::scalar;
    for (int i = 0; i < kNumQVariants; ++i)
      if (qspmm_kernels(QVariant(i))) best = QVariant(i);
    *out = best;
    return true;
  }
  if (std::strcmp(s, "avx512") == 0) s = "avx512vnni";
  for (int i = 0; i < kNumQVariants; ++i)
    if (std::strcmp(s, qvariant_name(QVariant(i))) == 0) {
      *out = QVariant(i);
      return true;
    }
  return false;
}

}  // namespace spe
