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

// A gemv tile (QSpmmKernels::gemv): the group's rows in the lanes, 4 to a register (RV of
// them), one sdot per entry, pixel and register with the pixel's input word (flipped to s8)
// broadcast and the entry's weight quads of those 4 rows; U entries in flight where few
// registers would wait on sdot's latency.
template <int R, int NP>
void qgemv_dot(const QTileArgs& a) {
  constexpr int RV = (R + 3) / 4, U = NP * RV >= 4 ? 1 : 4 / (NP * RV);
  int32x4_t acc[NP][RV][U];
  for (int p = 0; p < NP; ++p)
    for (int v = 0; v < RV; ++v)
      for (int u = 0; u < U; ++u) acc[p][v][u] = vdupq_n_s32(0);
  const auto wload = [](const int8_t* w, int v) {   // rows 4v.. of an entry's R quads
    if (4 * (v + 1) <= R) return vld1q_s8(w + 16 * v);
    int8_t t[16] = {};
    std::memcpy(t, w + 16 * v, size_t(4 * (R - 4 * v)));
    return vld1q_s8(t);
  };
  const auto xword = [](const uint8_t* p) {
    uint32_t q;
    std::memcpy(&q, p, 4);
    return vreinterpretq_s8_u32(vdupq_n_u32(q ^ 0x80808080u));
  };
  const int64_t n = a.n_entries;
  int64_t e = 0;
  const auto step = [&](int64_t ei, int u) {
    const uint8_t* xp = a.x + int64_t(a.off[ei]) * 4;
    for (int v = 0; v < RV; ++v) {
      const int8x16_t wv = wload(a.w + ei * R * 4, v);
      for (int p = 0; p < NP; ++p) acc[p][v][u] = vdotq_s32(acc[p][v][u], xword(xp + 4 * p), wv);
    }
  };
  for (; e + U <= n; e += U)
    for (int u = 0; u < U; ++u) step(e + u, u);
  for (; e < n; ++e) step(e, 0);
  // the requantization with 4 rows' constants in the lanes (qspmm.h), each row's byte stored at
  // its own address (NCHW4 or NCHW, QTileArgs::quads)
  const QEpilogue& ep = *a.epi;
  const auto at = [&a](int64_t stride, int r, int p) {
    const int o = a.row0 + r;
    return a.quads ? (o >> 2) * stride + 4 * p + (o & 3) : o * stride + p;
  };
  for (int v = 0; v < RV; ++v) {
    const int nr = R - 4 * v < 4 ? R - 4 * v : 4, o0 = a.row0 + 4 * v;
    int32_t corr[4] = {};
    float scale[4] = {}, bias[4] = {};
    std::memcpy(corr, ep.corr + o0, sizeof(int32_t) * size_t(nr));
    std::memcpy(scale, ep.scale + o0, sizeof(float) * size_t(nr));
    std::memcpy(bias, ep.bias + o0, sizeof(float) * size_t(nr));
    const QNeonDot::RowConst c = QNeonDot::make_const(vld1q_s32(corr), vld1q_f32(scale), vld1q_f32(bias),
                                                      ep.res_scale, ep.res_zero, ep.six, ep.out_zero, ep.act);
    for (int p = 0; p < NP; ++p) {
      int32x4_t s = acc[p][v][0];
      for (int u = 1; u < U; ++u) s = vaddq_s32(s, acc[p][v][u]);
      int32x4_t rv;
      if (a.res) {
        int32_t rr[4] = {};
        for (int r = 0; r < nr; ++r) rr[r] = a.res[at(a.res_row_stride, 4 * v + r, p)];
        rv = vld1q_s32(rr);
      }
      int32_t q[4];
      vst1q_s32(q, vaddq_s32(QNeonDot::requant_r(vaddq_s32(s, c.corr), a.res ? &rv : nullptr, c), c.zy));
      for (int r = 0; r < nr; ++r) a.y[at(a.y_row_stride, 4 * v + r, p)] = uint8_t(q[r]);
    }
  }
}

template <int R, int NP>
void fill_gemv(QSpmmKernels& t) {
  t.gemv[R - 1][NP - 1] = &qgemv_dot<R, NP>;
  if constexpr (NP > 1) fill_gemv<R, NP - 1>(t);
  else if constexpr (R > 1) fill_gemv<R - 1, kQGemvMaxPix>(t);
}

}  // namespace

template <>
const QSpmmKernels* qspmm_table<QVariant::neondot>() {
  static const QSpmmKernels table = [] {
    QSpmmKernels t = *qspmm_table_of<QNeonDot>("neondot");
    t.dw_rows = &qdw_rows_dot;
    fill_gemv<kQMaxGroupRows, kQGemvMaxPix>(t);
    return t;
  }();
  return &table;
}

}  // namespace spe
