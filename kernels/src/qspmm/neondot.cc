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

// The depthwise row by table lookups (QDwRowsArgs): per kernel row, one 64-byte window of the
// input row (16 pixels x 4 channels, flipped to s8), per output pixel and group of 4 taps one
// tbl putting each lane's taps (of its own channel) in its 4 bytes, one sdot against the taps'
// weights; the flip's 128 * sum(w) added back per channel first.
// A 3-row kernel of at most 4 taps a row at stride 1 and dilation 1 down the rows: each input
// row's window is loaded, flipped and looked up once per 4 output pixels and feeds the 3
// output rows that read it, from 3 x 4 sums held in registers (row k: the output row k rows
// above the input row): one third of the general loop's loads and tbl per output.
void qdw_rows_dot_3(const QDwRowsArgs& a) {
  const QNeonDot::RowConst c = QNeonDot::lane_const(a.d);
  int8x16_t wv[3];
  int32x4_t wsum = vdupq_n_s32(0);
  for (int ky = 0; ky < 3; ++ky) {
    wv[ky] = vld1q_s8(a.wpat + ky * 64);
    wsum = vdotq_s32(wsum, vdupq_n_s8(1), wv[ky]);
  }
  // sum((x - 128) w) + 128 sum(w) = sum(x w); the sums start there plus corr
  const int32x4_t shift = vaddq_s32(vshlq_n_s32(wsum, 7), c.corr);
  const uint8x16_t flip = vdupq_n_u8(0x80);
  uint8x16_t ix[4];
  for (int l = 0; l < 4; ++l) ix[l] = vld1q_u8(a.idx + 16 * l);
  const int n_in = a.n_out + 2;
  for (int px = 0; px < a.wo; px += 4) {   // 4 output pixels: one window per input row
    int32x4_t acc[3][4];
    for (int k = 0; k < 3; ++k)
      for (int l = 0; l < 4; ++l) acc[k][l] = shift;
    const uint8_t* at = a.rows + int64_t(px) * 4;
    for (int i = 0; i < n_in; ++i) {
      const uint8_t* w0 = at + int64_t(i) * a.row_stride;
      uint8x16x4_t t;
      t.val[0] = veorq_u8(vld1q_u8(w0), flip);
      t.val[1] = veorq_u8(vld1q_u8(w0 + 16), flip);
      t.val[2] = veorq_u8(vld1q_u8(w0 + 32), flip);
      t.val[3] = veorq_u8(vld1q_u8(w0 + 48), flip);
      for (int l = 0; l < 4; ++l) {
        const int8x16_t p = vreinterpretq_s8_u8(vqtbl4q_u8(t, ix[l]));
        for (int k = 0; k < 3; ++k) acc[k][l] = vdotq_s32(acc[k][l], p, wv[k]);
      }
      const int r = i - 2;                 // the output row this input row completes
      if (r >= 0) {
        uint8_t* y = a.d.y + r * a.y_stride;
        const uint8_t* res = a.d.res ? a.d.res + r * a.y_stride : nullptr;
        for (int l = 0; l < 4 && px + l < a.wo; ++l)
          QNeonDot::requant_store(y + (px + l) * 4, acc[2][l], res ? res + (px + l) * 4 : nullptr, 4, c);
      }
      for (int l = 0; l < 4; ++l) {
        acc[2][l] = acc[1][l];
        acc[1][l] = acc[0][l];
        acc[0][l] = shift;
      }
    }
  }
}

void qdw_rows_dot(const QDwRowsArgs& a) {
  if (a.kh == 3 && a.kw <= 4 && a.stride_h == 1 && a.dil_h == 1) return qdw_rows_dot_3(a);
  const int groups = qdw_groups(a.kw);
  const QNeonDot::RowConst c = QNeonDot::lane_const(a.d);
  int32x4_t wsum = vdupq_n_s32(0);
  for (int ky = 0; ky < a.kh; ++ky)
    for (int g = 0; g < groups; ++g)
      wsum = vdotq_s32(wsum, vdupq_n_s8(1), vld1q_s8(a.wpat + (ky * groups + g) * 64));
  // sum((x - 128) w) + 128 sum(w) = sum(x w); the sums start there plus corr
  const int32x4_t shift = vaddq_s32(vshlq_n_s32(wsum, 7), c.corr);
  const uint8x16_t flip = vdupq_n_u8(0x80);
  for (int r = 0; r < a.n_out; ++r) {
    const uint8_t* in = a.rows + int64_t(r) * a.stride_h * a.row_stride;
    uint8_t* y = a.d.y + r * a.y_stride;
    const uint8_t* res = a.d.res ? a.d.res + r * a.y_stride : nullptr;
    for (int px = 0; px < a.wo; px += 4) {   // 4 output pixels: one window per kernel row
      int32x4_t acc[4] = {shift, shift, shift, shift};
      const uint8_t* at = in + int64_t(px) * a.stride * 4;
      for (int ky = 0; ky < a.kh; ++ky) {
        const uint8_t* w0 = at + int64_t(ky) * a.dil_h * a.row_stride;
        uint8x16x4_t t;
        t.val[0] = veorq_u8(vld1q_u8(w0), flip);
        t.val[1] = veorq_u8(vld1q_u8(w0 + 16), flip);
        t.val[2] = veorq_u8(vld1q_u8(w0 + 32), flip);
        t.val[3] = veorq_u8(vld1q_u8(w0 + 48), flip);
        for (int g = 0; g < groups; ++g) {
          const int8x16_t wv = vld1q_s8(a.wpat + (ky * groups + g) * 64);
          for (int i = 0; i < 4; ++i)
            acc[i] = vdotq_s32(acc[i], vreinterpretq_s8_u8(vqtbl4q_u8(t, vld1q_u8(a.idx + g * 64 + 16 * i))), wv);
        }
      }
      for (int i = 0; i < 4 && px + i < a.wo; ++i)
        QNeonDot::requant_store(y + (px + i) * 4, acc[i], res ? res + (px + i) * 4 : nullptr, 4, c);
    }
  }
}

}  // namespace

template <>
const QSpmmKernels* qspmm_table<QVariant::neondot>() {
  static const QSpmmKernels table = [] {
    QSpmmKernels t = *qspmm_table_of<QNeonDot>("neondot");
    t.dw_rows = &qdw_rows_dot;
    return t;
  }();
  return &table;
}

}  // namespace spe
