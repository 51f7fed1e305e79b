// NEON int8 SpMM microkernels without the dot product: qspmm_list.h's neon lines. smull
// multiplies 2 pixels x 4 channels of s8 by a row's weight quad (repeated twice) into s16,
// sadalp adds pairs into s32: two pair sums per pixel, added by finish().
#include "qneon.h"
#include "qtile_template.h"

namespace spe {
namespace {

struct QNeon : QNeonCommon {
  static constexpr QVariant kVariant = QVariant::neon;
  struct acc {
    int32x4_t lo, hi;  // pixels 0, 1 and 2, 3: (channels 0+1, channels 2+3) per pixel
  };
  using in = int8x16_t;
  using wt = int8x8_t;
  static acc acc_zero() { return {vdupq_n_s32(0), vdupq_n_s32(0)}; }
  static wt weight(const int8_t* w, int r) {
    int32_t q;
    std::memcpy(&q, w + 4 * r, 4);
    return vreinterpret_s8_s32(vdup_n_s32(q));
  }
  static void madd(acc& a, const in& x, const wt& w) {
    a.lo = vpadalq_s16(a.lo, vmull_s8(vget_low_s8(x), w));
    a.hi = vpadalq_s16(a.hi, vmull_s8(vget_high_s8(x), w));
  }
  static ivec finish(const acc& a) { return vpaddq_s32(a.lo, a.hi); }
};

}  // namespace

template <>
const QSpmmKernels* qspmm_table<QVariant::neon>() { return qspmm_table_of<QNeon>("neon"); }

}  // namespace spe
