// NEON dotprod int8 SpMM microkernels: qspmm_list.h's neondot lines (compiled with
// -march=armv8.2-a+dotprod; registry.cc picks them only where AT_HWCAP reports ASIMDDP). One
// sdot per (row, vector) per entry: 4 pixels x 4 channels of s8 against the row's weight quad.
#include "qneon.h"
#include "qtile_template.h"

namespace spe {
namespace {

struct QNeonDot : QNeonCommon {
  static constexpr QVariant kVariant = QVariant::neondot;
  using acc = int32x4_t;
  using in = int8x16_t;
  using wt = int8x16_t;
  static acc acc_zero() { return vdupq_n_s32(0); }
  static wt weight(const int8_t* w, int r) {
    int32_t q;
    std::memcpy(&q, w + 4 * r, 4);
    return vreinterpretq_s8_s32(vdupq_n_s32(q));
  }
  static void madd(acc& a, const in& x, const wt& w) { a = vdotq_s32(a, x, w); }
  static ivec finish(const acc& a) { return a; }
};

}  // namespace

template <>
const QSpmmKernels* qspmm_table<QVariant::neondot>() {
  return qspmm_table_of<QNeonDot>("neondot");
}

}  // namespace spe
