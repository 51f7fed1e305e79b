// The flat method of the f32 depthwise kernels (dwconv.h's DwPlanesArgs), for "same"-padded
// k x k layers at stride 1 or 2: a plane's ho x wo outputs are one flat run of ho * wo floats,
// computed a whole vector at a time whatever wo is (a 14x14 plane is 13 vectors of 16, where
// rows of 14 would fill 14 vectors less than 90%, and a 7x7 plane 4 instead of 7).
//
// At stride 1 with padding k / 2 the input plane has the output's pitch, so output q = r*wo + c
// and tap (ky, kx) reads input q + (ky - p)*wo + (kx - p): one unaligned load per tap straight
// from the input plane. A tap's lanes are valid where its column stays in [0, wo) (per-vector
// lane masks, precomputed once per plane size) and, in the few vectors near the top and
// bottom, where its flat index stays inside the plane; masked-off lanes read as zero and are
// never touched in memory. At stride 2 the plane is first split into its four phases (even /
// odd rows x even / odd columns, ho x wo each, zeros past the image, zero rows above and
// below), which again have the output's pitch: tap (ky, kx) reads phase ((ky - p) & 1,
// (kx - p) & 1) at offsets floor((ky - p) / 2), floor((kx - p) / 2), masked by column only.
// Weights stay in registers; up to 8 vectors (4 with AVX2's 16 registers) are computed side by
// side to cover the FMA latency.
//
// The lane masks need masked loads that cannot fault (AVX-512 mask registers, AVX2's
// vmaskmovps; the traits' lanes / lanes_of / deinterleave_regs): NEON and scalar have no flat
// method and run the row method (plane_template.h) on every geometry.
#ifndef SPE_DWCONV_FLAT_TEMPLATE_H_
#define SPE_DWCONV_FLAT_TEMPLATE_H_

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "dwconv.h"
#include "epilogue.h"

namespace spe {
namespace dw {

// Tap k (a row or a column) of a K-tap kernel with padding K / 2 at stride S reads source
// phase phase(k), off(k) rows (columns) from the output's own position.
template <int K, int S>
struct FlatTaps {
  static constexpr int kPad = K / 2;
  static constexpr int phase(int k) { return S == 1 ? 0 : (k - kPad + 2 * K) % 2; }
  static constexpr int off(int k) { return S == 1 ? k - kPad : (k - kPad - phase(k)) / 2; }
  static constexpr int kMin = off(0), kMax = off(K - 1);
};

// Lanes [lo, hi) of V (V <= 16), as bits.
template <int V>
inline uint32_t lanes_in(int lo, int hi) {
  lo = std::clamp(lo, 0, V);
  hi = std::clamp(hi, 0, V);
  return hi <= lo ? 0u : ((1u << hi) - 1u) & ~((1u << lo) - 1u);
}

// m[v * K*K + ky * K + kx]: the lanes of vector v (outputs V v .. V v + V - 1) where tap
// (ky, kx) reads inside its source plane: its column plus off(kx) in [0, wo) and its flat
// index plus off(ky) * wo + off(kx) in [0, n). Built once per thread and plane size and kept
// for the last kSizes sizes: a network's depthwise layers of one kernel and stride come in
// several sizes (MobileNetV2's stride-2 ones at 56, 28, 14 and 7), and rebuilding the masks of
// a 56x56 plane on every such call cost each thread ~10 us.
template <class T, class Tap, int K>
const typename T::lanes* tap_masks(int wo, int n, int nvec) {
  constexpr int V = T::kWidth;
  constexpr int kSizes = 6;
  struct Slot {
    std::vector<typename T::lanes> m;
    int wo = -1, n = -1;
  };
  thread_local Slot slots[kSizes];
  thread_local int next = 0;
  for (Slot& sl : slots)
    if (sl.wo == wo && sl.n == n) return sl.m.data();
  Slot& sl = slots[next];
  next = (next + 1) % kSizes;
  sl.wo = sl.n = -1;  // stays invalid if assign throws
  auto& m = sl.m;
  m.assign(size_t(nvec) * K * K, T::lanes_of(0));
  int c0 = 0;  // the column of lane 0 of vector v
  for (int v = 0; v < nvec; ++v, c0 = (c0 + V) % wo)
    for (int kx = 0; kx < K; ++kx) {
      uint32_t cols = 0;
      for (int l = 0, c = c0; l < V; ++l, c = c + 1 == wo ? 0 : c + 1)
        if (c + Tap::off(kx) >= 0 && c + Tap::off(kx) < wo) cols |= 1u << l;
      for (int ky = 0; ky < K; ++ky) {
        const int d = Tap::off(ky) * wo + Tap::off(kx);
        m[size_t(v) * K * K + ky * K + kx] =
            T::lanes_of(cols & lanes_in<V>(-V * v - d, n - V * v - d));
      }
    }
  sl.wo = wo;
  sl.n = n;
  return m.data();
}

// Vectors [v0, v0 + U) of one plane: src[ky][b] is tap row ky's source (column phase b) at
// vector v0, tm the masks of vector v0, y and res at vector v0; n - V v0 floats remain.
// kEdge: some tap of these vectors leaves the plane above or below, so every load takes its
// mask; otherwise only the taps off the output's own column do.
template <class T, int K, int S, int U, bool kEdge, class E>
inline void flat_block(const float* const (*src)[2], const typename T::lanes* tm,
                       const typename T::reg* wv, typename T::reg bias, const float* res,
                       float* y, int left, const E& act) {
  using reg = typename T::reg;
  using Tap = FlatTaps<K, S>;
  constexpr int V = T::kWidth;
  reg acc[U];
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) acc[u] = bias;
#pragma GCC unroll 8
  for (int ky = 0; ky < K; ++ky) {
#pragma GCC unroll 8
    for (int kx = 0; kx < K; ++kx) {
      const float* s = src[ky][Tap::phase(kx)] + Tap::off(kx);
#pragma GCC unroll 8
      for (int u = 0; u < U; ++u) {
        // inside the plane the column mask is the same in every tap row: the centre row's
        const int t = (kEdge ? ky : Tap::kPad) * K + kx;
        const reg xv = !kEdge && Tap::off(kx) == 0
                           ? T::load(s + V * u)
                           : T::load_mask(s + V * u, tm[u * K * K + t]);
        acc[u] = T::fma(xv, wv[ky * K + kx], acc[u]);
      }
    }
  }
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u) {
    const float* rr = res ? res + V * u : nullptr;
    if (V * u + V <= left) store_out<T, false>(acc[u], rr, y + V * u, V, act);
    else store_out<T, true>(acc[u], rr, y + V * u, left - V * u, act);
  }
}

// A block of exactly `size` (1..U) vectors.
template <class T, int K, int S, int U, class E>
inline void flat_blocks(int size, bool edge, const float* const (*src)[2],
                        const typename T::lanes* tm,
                        const typename T::reg* wv, typename T::reg bias, const float* res,
                        float* y, int left, const E& act) {
  if (size == U) {
    if (edge) flat_block<T, K, S, U, true>(src, tm, wv, bias, res, y, left, act);
    else flat_block<T, K, S, U, false>(src, tm, wv, bias, res, y, left, act);
  } else if constexpr (U > 1) {
    flat_blocks<T, K, S, U - 1>(size, edge, src, tm, wv, bias, res, y, left, act);
  }
}

// Splits an input plane (h, w) into its four stride-2 phases: phase a*2 + b at ph + (a*2 + b)
// * stride, (ho, wo) floats, element (i, j) = x[2i + a][2j + b], zero past the image. A row is
// read two vectors at a time, the last two under masks fixed for the plane, and written as
// whole vectors: the part past wo lands on the next row of its phase, written later, or in up
// to V - 1 floats past the phase (stride >= ho*wo + V), which the caller zeroes again. (A
// general per-row deinterleave, with its masks and branches per row, took twice the
// convolution's time on 14x14 planes.)
template <class T>
void split_phases(const float* x, const DwGeom& g, float* ph, int64_t stride) {
  using reg = typename T::reg;
  constexpr int V = T::kWidth;
  const int w = g.w, nv = (g.wo + V - 1) / V, tail = w - 2 * V * (nv - 1);  // tail: 1..2V
  const auto ma = T::mask(std::min(tail, V)), mb = T::mask(std::max(tail - V, 0));
  for (int r = 0; r < g.h; ++r) {
    const float* s = x + int64_t(r) * w;
    float* e = ph + (r & 1) * 2 * stride + int64_t(r >> 1) * g.wo;
    reg ev, ov;
    for (int k = 0; k < nv - 1; ++k, s += 2 * V, e += V) {
      T::deinterleave_regs(T::load(s), T::load(s + V), ev, ov);
      T::store(e, ev);
      T::store(e + stride, ov);
    }
    T::deinterleave_regs(T::load_mask(s, ma), T::load_mask(s + V, mb), ev, ov);
    T::store(e, ev);
    T::store(e + stride, ov);
  }
  if (g.h & 1)  // odd height: the odd rows' last row is below the image
    for (int b = 0; b < 2; ++b)
      std::fill_n(ph + (2 + b) * stride + int64_t(g.ho - 1) * g.wo, g.wo, 0.0f);
}

// Planes [p0, p1) by the flat method.
template <class T, int K, int S, class E>
void planes_flat_with(const DwPlanesArgs& a, const E& act) {
  using reg = typename T::reg;
  using Tap = FlatTaps<K, S>;
  constexpr int V = T::kWidth;
  static_assert(V <= 16 && K <= 16, "the flat method: up to 16 lanes, up to 16 taps");
  // Vectors side by side: 8 independent accumulators hide the FMA latency. At 5x5 the 25
  // weights and 8 accumulators overflow the 32 registers and some FMAs take their weight from
  // memory, still 1.2x faster than 4 accumulators (14x14 planes, Zen 4).
  // At stride 2 with hardswish / SiLU inlined into the block, 4: 1.5x faster than 8 on the 5x5
  // layers of EfficientNet-B0, 1.05-1.15x on its 3x3 ones (ReLU / none keep 8: up to 10%
  // faster for them).
  constexpr bool kExtra = !std::is_same_v<E, Epilogue<T, 0>>;
  constexpr int U = T::kRegs >= 32 && !(S == 2 && kExtra) ? 8 : 4;
  const DwGeom& g = *a.g;
  const int wo = g.wo, n = g.ho * wo, nvec = (n + V - 1) / V;
  const typename T::lanes* tm = tap_masks<T, Tap, K>(wo, n, nvec);
  // Vectors [vi0, vi1) read inside the plane with every tap; the others are edge vectors.
  const int dmin = Tap::kMin * wo + Tap::kMin, dmax = Tap::kMax * wo + Tap::kMax;
  const int vi0 = std::min(nvec, (V - 1 - dmin) / V);
  const int vi1 = std::max(vi0, n - V - dmax < 0 ? 0 : (n - V - dmax) / V + 1);
  // blocks of at most U vectors, as even as possible
  const int nb = (nvec + U - 1) / U, base = nvec / nb, extra = nvec % nb;

  // Where the taps read: a stride-2 plane is split into four buffers with R zero rows (and R
  // floats) on each side, so only the column masks are needed; a stride-1 plane is read in
  // place, with range masks in the vectors near its top and bottom (copying small planes into
  // zero-margined buffers too measured no faster).
  constexpr int R = std::max(-Tap::kMin, Tap::kMax);
  const int64_t in_plane = int64_t(g.h) * g.w;
  const int64_t front = (int64_t(R) * wo + R + 15) / 16 * 16;
  const int64_t pstride = front + (int64_t(n) + R * wo + R + 16 + 15) / 16 * 16;
  thread_local std::vector<float> buf;
  float* ph = nullptr;
  if constexpr (S == 2) {
    if (buf.size() < size_t(4 * pstride + 16)) buf.resize(size_t(4 * pstride + 16));
    ph = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t(63));
    for (int b = 0; b < 4; ++b) {  // the margins (each plane overwrites only its middle)
      std::fill(ph + b * pstride, ph + b * pstride + front, 0.0f);
      std::fill(ph + b * pstride + front + n, ph + (b + 1) * pstride, 0.0f);
    }
    ph += front;
  }
  for (int64_t pl = a.p0; pl < a.p1; ++pl) {
    const int ch = int(pl % a.channels);
    const float* x = a.x + pl * in_plane;
    if constexpr (S == 2) {
      split_phases<T>(x, g, ph, pstride);
      for (int b = 0; b < 4; ++b) T::store(ph + b * pstride + n, T::zero());  // a row's overrun
    }
    reg wv[K * K];  // after the split: nothing live across it to spill
    for (int t = 0; t < K * K; ++t) wv[t] = T::set1(a.w[int64_t(ch) * K * K + t]);
    const reg bias = T::set1(a.bias ? a.bias[ch] : 0.0f);
    const float* src[K][2];
    for (int ky = 0; ky < K; ++ky)
      for (int b = 0; b < 2; ++b)
        src[ky][b] = (S == 1 ? x : ph + (Tap::phase(ky) * 2 + b) * pstride) + Tap::off(ky) * wo;
    const float* res = a.res ? a.res + pl * n : nullptr;
    float* y = a.y + pl * n;
    // At stride 2 the split of the next plane stalls on memory (its 4x larger input was just
    // written by the producing layer and sits in L3 or DRAM), so its lines are requested here,
    // spread over this plane's blocks: the loads overlap this plane's FMAs.
    const char* next = S == 2 && pl + 1 < a.p1 ? reinterpret_cast<const char*>(x + in_plane)
                                               : nullptr;
    const int64_t lines = next ? (in_plane * 4 + 63) / 64 : 0, per = (lines + nb - 1) / nb;
    for (int i = 0, v0 = 0; i < nb; ++i) {
      for (int64_t l = i * per, e = std::min(lines, l + per); l < e; ++l)
        __builtin_prefetch(next + 64 * l, 0, 2);
      const int size = base + (i < extra ? 1 : 0), q = V * v0;
      const float* at[K][2];
      for (int ky = 0; ky < K; ++ky)
        for (int b = 0; b < 2; ++b) at[ky][b] = src[ky][b] + q;
      const bool edge = S == 1 && (v0 < vi0 || v0 + size > vi1);
      flat_blocks<T, K, S, U>(size, edge, at, tm + v0 * K * K, wv, bias,
                              res ? res + q : nullptr, y + q, n - q, act);
      v0 += size;
    }
  }
}

template <class T, int K, int S>
void planes_flat(const DwPlanesArgs& a) {
  with_epilogue<T>(a.act, [&](const auto& act) { planes_flat_with<T, K, S>(a, act); });
}

// T's flat kernel for k x k, stride s, or null.
template <class T, int K, int S>
constexpr DwPlanesFn flat_for() {
  if constexpr ((T::kIsa == Isa::avx512 || T::kIsa == Isa::avx2) && K % 2 == 1 && K <= 16 &&
                (S == 1 || S == 2))
    return &planes_flat<T, K, S>;
  else
    return nullptr;
}

}  // namespace dw
}  // namespace spe
#endif  // SPE_DWCONV_FLAT_TEMPLATE_H_
