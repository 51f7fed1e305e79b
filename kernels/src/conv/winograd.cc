// Winograd F(4x4, 3x3) for dense 3x3 stride-1 convs (Lavin & Gray 2016; points 0, +-1, +-2,
// infinity): each 4x4 output tile is A^T [ (G g G^T) . (B^T d B) ] A over a 6x6 input patch d,
// 36 multiplications per tile and channel pair instead of 144.
//
// The filter transform U = G g G^T is done once at create time (in double), and U is packed as
// 36 GEMM weights (one per point of the 6x6 tile, O x C each, the dense family's panels). A
// run splits the output tiles (raster order, across tile rows) into blocks of one GEMM panel
// width NR and the output channels into blocks; per work item, in a chunk of channels at a
// time, the item's input patches are transformed (B^T d B, vectorised over the NR tiles: the
// patch columns of consecutive tiles are the stride-4 phases of the input rows) straight into
// the 36 packed input panels, then the 36 GEMMs of the chunk accumulate into M (36 x MC x NR,
// all in L2), and last the output transform (A^T M A, vectorised the same way) adds bias and
// residual, applies the activation and writes the valid pixels of each tile.
// Numerics: kernels/README.md ("Winograd").
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../common/threadpool.h"
#include "dense_layer.h"
#include "geometry.h"

namespace spe {
namespace {

constexpr int kMaxLanes = 64;  // >= any listed tile's pixels (dense_list.h)

// The filter transform G (6x3) of F(4x4, 3x3).
constexpr double kG[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                             {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                             {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};

// The lane loops below are where the transforms' time goes: on x86 they are cloned for AVX-512
// and AVX2 and picked at load time (this file is compiled for the baseline ISA); AArch64's
// baseline already has NEON.
#if defined(__x86_64__) && !defined(SPE_NO_TARGET_CLONES)
#define SPE_LANES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SPE_LANES
#endif

// out[i] = (B^T in)[i] over n lanes: in[k] and out[i] are lane arrays (6 each).
SPE_LANES void input_1d(const float* const* in, float* const* out, int n) {
  const float *d0 = in[0], *d1 = in[1], *d2 = in[2], *d3 = in[3], *d4 = in[4], *d5 = in[5];
  float *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3], *o4 = out[4], *o5 = out[5];
#pragma GCC ivdep
  for (int l = 0; l < n; ++l) {
    const float a = d4[l] - 4.0f * d2[l], b = d3[l] - 4.0f * d1[l];
    const float c = d4[l] - d2[l], e = 2.0f * (d3[l] - d1[l]);
    o0[l] = 4.0f * d0[l] - 5.0f * d2[l] + d4[l];
    o1[l] = a + b;
    o2[l] = a - b;
    o3[l] = c + e;
    o4[l] = c - e;
    o5[l] = 4.0f * d1[l] - 5.0f * d3[l] + d5[l];
  }
}

// out[i] = (A^T in)[i], i < 4, over n lanes.
SPE_LANES void output_1d(const float* const* in, float* const* out, int n) {
  const float *m0 = in[0], *m1 = in[1], *m2 = in[2], *m3 = in[3], *m4 = in[4], *m5 = in[5];
  float *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3];
#pragma GCC ivdep
  for (int l = 0; l < n; ++l) {
    const float a = m1[l] + m2[l], b = m1[l] - m2[l], c = m3[l] + m4[l], d = m3[l] - m4[l];
    o0[l] = m0[l] + a + c;
    o1[l] = b + 2.0f * d;
    o2[l] = a + 4.0f * c;
    o3[l] = b + 8.0f * d + m5[l];
  }
}

// q_j[m] = row[4m + j] for m < n: the patch columns of consecutive tiles.
SPE_LANES void deinterleave4(const float* row, float* q0, float* q1, float* q2, float* q3, int n) {
#pragma GCC ivdep
  for (int m = 0; m < n; ++m) {
    q0[m] = row[4 * m];
    q1[m] = row[4 * m + 1];
    q2[m] = row[4 * m + 2];
    q3[m] = row[4 * m + 3];
  }
}

// One run's tiling: tiles of 4x4 outputs, th x tw of them, T in all.
struct Tiling {
  int64_t h, w, ho, wo, th, tw, T;
};

// The 36 transformed patches of channel plane xc for tiles [t0, t0 + nt) (raster order) into
// v[xi * v_stride + lane]; lanes past nt are zero.
void transform_input(const spe_conv_params& p, const Tiling& g, const float* xc, int64_t t0,
                     int nt, int NR, float* v, int64_t v_stride) {
  alignas(64) float d[36][kMaxLanes], t[36][kMaxLanes];
  alignas(64) float row[4 * kMaxLanes + 8], q[4][kMaxLanes + 1];
  if (nt < NR)
    for (auto& lane : d) std::memset(lane + nt, 0, sizeof(float) * (NR - nt));
  for (int s = 0; s < nt;) {  // one run of tiles within a tile row at a time
    const int64_t ty = (t0 + s) / g.tw, tx0 = (t0 + s) % g.tw;
    const int len = int(std::min<int64_t>(nt - s, g.tw - tx0));
    const int64_t ix0 = 4 * tx0 - p.pad_w, cols = 4 * int64_t(len) + 4;  // 4 len + 2 used
    const int64_t ja = std::clamp<int64_t>(-ix0, 0, cols), jb = std::clamp<int64_t>(g.w - ix0, ja, cols);
    for (int i = 0; i < 6; ++i) {
      const int64_t iy = 4 * ty - p.pad_h + i;
      if (iy < 0 || iy >= g.h) {
        for (int j = 0; j < 6; ++j) std::memset(d[i * 6 + j] + s, 0, sizeof(float) * len);
        continue;
      }
      std::memset(row, 0, sizeof(float) * ja);
      std::memcpy(row + ja, xc + iy * g.w + ix0 + ja, sizeof(float) * (jb - ja));
      std::memset(row + jb, 0, sizeof(float) * (cols - jb));
      deinterleave4(row, q[0], q[1], q[2], q[3], len + 1);
      for (int j = 0; j < 4; ++j) std::memcpy(d[i * 6 + j] + s, q[j], sizeof(float) * len);
      std::memcpy(d[i * 6 + 4] + s, q[0] + 1, sizeof(float) * len);
      std::memcpy(d[i * 6 + 5] + s, q[1] + 1, sizeof(float) * len);
    }
    s += len;
  }
  const int n = NR;
  for (int j = 0; j < 6; ++j) {  // columns: t[i][j] = (B^T d)[i][j]
    const float* in[6] = {d[j], d[6 + j], d[12 + j], d[18 + j], d[24 + j], d[30 + j]};
    float* out[6] = {t[j], t[6 + j], t[12 + j], t[18 + j], t[24 + j], t[30 + j]};
    input_1d(in, out, n);
  }
  for (int i = 0; i < 6; ++i) {  // rows: V[i][j] = (t B)[i][j], straight into the panels
    const float* in[6] = {t[i * 6], t[i * 6 + 1], t[i * 6 + 2], t[i * 6 + 3], t[i * 6 + 4], t[i * 6 + 5]};
    float* out[6];
    for (int j = 0; j < 6; ++j) out[j] = v + (i * 6 + j) * v_stride;
    input_1d(in, out, n);
  }
}

// y's pixels of output channel o for tiles [t0, t0 + nt) from m[xi * m_stride + lane].
void transform_output(const spe_dense_conv* c, const Tiling& g, int64_t o, const float* m,
                      int64_t m_stride, int64_t t0, int nt, float* yo, const float* ro) {
  alignas(64) float u[24][kMaxLanes], z[16][kMaxLanes];
  for (int j = 0; j < 6; ++j) {  // columns: u[i][j] = (A^T M)[i][j]
    const float* in[6];
    for (int k = 0; k < 6; ++k) in[k] = m + (k * 6 + j) * m_stride;
    float* out[4] = {u[j], u[6 + j], u[12 + j], u[18 + j]};
    output_1d(in, out, nt);
  }
  for (int i = 0; i < 4; ++i) {  // rows: Y[i][q] = (u A)[i][q]
    const float* in[6] = {u[i * 6], u[i * 6 + 1], u[i * 6 + 2], u[i * 6 + 3], u[i * 6 + 4], u[i * 6 + 5]};
    float* out[4] = {z[i * 4], z[i * 4 + 1], z[i * 4 + 2], z[i * 4 + 3]};
    output_1d(in, out, nt);
  }
  const float bias = c->bias.empty() ? 0.0f : c->bias[o];
  for (int l = 0; l < nt; ++l) {
    const int64_t ty = (t0 + l) / g.tw, tx = (t0 + l) % g.tw;
    const int ni = int(std::min<int64_t>(4, g.ho - 4 * ty)), nq = int(std::min<int64_t>(4, g.wo - 4 * tx));
    for (int i = 0; i < ni; ++i)
      for (int q = 0; q < nq; ++q) {
        const int64_t at = (4 * ty + i) * g.wo + 4 * tx + q;
        float s = z[i * 4 + q][l] + bias;
        if (ro) s += ro[at];
        if (c->act == SPE_ACT_RELU) s = std::max(s, 0.0f);
        else if (c->act == SPE_ACT_RELU6) s = std::min(std::max(s, 0.0f), 6.0f);
        else if (c->act == SPE_ACT_HARDSWISH) s = s * std::min(std::max(s + 3.0f, 0.0f), 6.0f) / 6.0f;
        else if (c->act == SPE_ACT_SILU) s = s / (1.0f + std::exp(-s));
        yo[at] = s;
      }
  }
}

}  // namespace

void winograd_pack(spe_dense_conv* c, const float* weight) {
  const int64_t O = c->p.out_channels, C = c->p.in_channels, PR = c->k->panel;
  const int64_t panels = (O + PR - 1) / PR;
  c->w_matrix = panels * C * PR;
  c->w.assign(size_t(36 * c->w_matrix), 0.0f);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t ch = 0; ch < C; ++ch) {
      const float* g = weight + (o * C + ch) * 9;
      double gg[6][3];  // G g
      for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 3; ++j)
          gg[i][j] = kG[i][0] * g[j] + kG[i][1] * g[3 + j] + kG[i][2] * g[6 + j];
      for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 6; ++j) {
          const double u = gg[i][0] * kG[j][0] + gg[i][1] * kG[j][1] + gg[i][2] * kG[j][2];
          c->w[size_t((i * 6 + j) * c->w_matrix + (o / PR * C + ch) * PR + o % PR)] = float(u);
        }
    }
}

spe_status winograd_run(const spe_dense_conv* c, const float* x, int n, int h, int w,
                        const float* res, float* y) {
  const auto& p = c->p;
  Tiling g{h, w, out_dim(h, p.pad_h, 1, 3, 1), out_dim(w, p.pad_w, 1, 3, 1), 0, 0, 0};
  g.th = (g.ho + 3) / 4, g.tw = (g.wo + 3) / 4, g.T = g.th * g.tw;
  const DenseKernels* k = c->k;
  const int t = pick_tile(c, g.T);
  const int R = k->rows[t], NR = k->pixels[t], PR = k->panel;
  const GemmFn fn = k->fn[t];
  const int64_t O = p.out_channels, C = p.in_channels;
  // channel chunk: 36 x kc x NR floats of V within ~512 KiB; output block: 36 x MC x NR of M
  const int64_t kc = std::min<int64_t>(C, std::max<int64_t>(8, (int64_t(1) << 17) / (36 * NR) / 8 * 8));
  const int64_t panels = (O + PR - 1) / PR;
  int64_t mc_panels = std::clamp<int64_t>((int64_t(1) << 17) / (36 * NR) / PR, 1, panels);
  const int64_t n_tb = (g.T + NR - 1) / NR;
  auto& pool = ThreadPool::global();
  while (mc_panels > 1 && n * n_tb * ((panels + mc_panels - 1) / mc_panels) < 2 * pool.num_threads())
    mc_panels = (mc_panels + 1) / 2;
  const int64_t n_mb = (panels + mc_panels - 1) / mc_panels, mcp = mc_panels * PR;
  const int64_t in_img = C * h * w, out_img = O * g.ho * g.wo, plane = g.ho * g.wo;
  pool.parallel_for(int64_t(n) * n_tb * n_mb, 1, [&](int64_t ib, int64_t ie) {
    float* v = thread_buffer(0, 36 * kc * NR);
    float* m = thread_buffer(1, 36 * mcp * NR);
    for (int64_t it = ib; it < ie; ++it) {
      const int64_t b = it / (n_tb * n_mb), tb = it / n_mb % n_tb, mb = it % n_mb;
      const int64_t t0 = tb * NR, o0 = mb * mcp, o1 = std::min(O, o0 + mcp);
      const int nt = int(std::min<int64_t>(NR, g.T - t0));
      GemmArgs a{};
      a.a_stride = PR;
      a.y_row_stride = NR;
      a.npix = NR;
      for (int64_t c0 = 0; c0 < C; c0 += kc) {
        const int64_t kk = std::min(kc, C - c0);
        for (int64_t ch = c0; ch < c0 + kk; ++ch)
          transform_input(p, g, x + b * in_img + ch * h * w, t0, nt, NR, v + (ch - c0) * NR, kk * NR);
        a.kc = kk;
        a.first = c0 == 0;
        for (int xi = 0; xi < 36; ++xi)
          for (int64_t r0 = o0; r0 < o1; r0 += R) {
            a.a = c->w.data() + xi * c->w_matrix + (r0 / PR * C + c0) * PR + r0 % PR;
            a.b = v + xi * kk * NR;
            a.rows = int(std::min<int64_t>(R, o1 - r0));
            a.y = m + (xi * mcp + (r0 - o0)) * NR;
            fn(a);
          }
      }
      for (int64_t o = o0; o < o1; ++o)
        transform_output(c, g, o, m + (o - o0) * NR, mcp * NR, t0, nt,
                         y + b * out_img + o * plane, res ? res + b * out_img + o * plane : nullptr);
    }
  });
  return SPE_OK;
}

}  // namespace spe
