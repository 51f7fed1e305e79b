// The f32 SpMM microkernel body, written once over a vector-traits type V.
//
// V is an ISA's vector traits (isa/*.h), optionally with weight<R>(w, r), the broadcast of w[r]
// of an entry's R weights (default: set1(w[r])). Included by each ISA's translation unit,
// compiled with that ISA's flags, which makes that ISA's table from the list (spmm_table_of).
#ifndef SPE_SPMM_TILE_TEMPLATE_H_
#define SPE_SPMM_TILE_TEMPLATE_H_

#include <type_traits>

#include "../isa/activation.h"
#include "../isa/table.h"
#include "spmm.h"

namespace spe {

// An ISA whose FMA takes its multiplier from a vector lane (NEON) loads an entry's R weights in
// a few wide loads instead of R broadcasts, which would each hold a register (x86 folds the
// broadcast into the FMA's memory operand, so it needs no hook).
template <class V, class = void>
struct HasWeightHook : std::false_type {};
template <class V>
struct HasWeightHook<V, std::void_t<decltype(V::template weight<1>(nullptr, 0))>>
    : std::true_type {};

template <class V, int R>
inline typename V::reg weight_of(const float* w, int r) {
  if constexpr (HasWeightHook<V>::value) return V::template weight<R>(w, r);
  else return V::set1(w[r]);
}

// Software prefetch distances for a tile whose weights are likely cold (TileArgs::prefetch): the
// values stream 2 KiB ahead, the offsets stream 128 entries ahead (one prefetch per 16 entries,
// a cache line). Measured on a 2-vCPU Xeon: the hardware prefetcher alone left a 512x512 3x3
// layer at 7x7 (11 MB of weights, read from DRAM in a full model) 2.6x slower than with its
// weights in cache; with these prefetches 1.2x. Locality 3 (T0) keeps the lines in L2 for the
// group's next tiles; a non-temporal prefetch (locality 0) bypasses L2 on x86, so those tiles
// re-read the weights from DRAM (twice the traffic).
constexpr int kPrefetchValueFloats = 512;
constexpr int kPrefetchOffsetEntries = 128;
// Every tile also prefetches the input lines of the entry kInputPrefetchEntries ahead: entries
// jump between channels (no stream for the hardware prefetcher to follow), and at 56x56 a layer's
// input overflows L2, so without it the loads wait on L3 latency (measured ~8% on the sparse
// ResNet-50 1x1/3x3 layers, in isolation).
constexpr int kInputPrefetchEntries = 8;

// d = A(s [+ res]) for n floats: whole vectors, then one masked vector for the rest.
template <class V, class A>
inline void act_row_of(float* d, const float* s, const float* res, int n, A) {
  using reg = typename V::reg;
  constexpr int W = V::kWidth;
  int k = 0;
  for (; k + W <= n; k += W) {
    reg v = V::load(s + k);
    if (res) v = V::add(v, V::load(res + k));
    V::store(d + k, A::apply(v));
  }
  if (k < n) {
    const auto m = V::mask(n - k);
    reg v = V::load_mask(s + k, m);
    if (res) v = V::add(v, V::load_mask(res + k, m));
    V::store_mask(d + k, A::apply(v), m);
  }
}

template <class V, int R, int NV, bool kMasked>
void spmm_tile(const TileArgs& a) {
  using reg = typename V::reg;
  constexpr int W = V::kWidth;
  reg acc[R][NV];
  const auto m = V::mask(kMasked ? a.npix - (NV - 1) * W : W);
  if (a.acc_in) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float* ar = a.acc_in + r * a.y_row_stride;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v)
        acc[r][v] = (kMasked && v == NV - 1) ? V::load_mask(ar + v * W, m) : V::load(ar + v * W);
    }
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const reg b = a.bias ? V::set1(a.bias[r]) : V::zero();
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = b;
    }
  }
  const float* x = a.x;
  const int32_t* off = a.off;
  const float* w = a.w;
  const bool pf = a.prefetch != 0;
  for (int64_t e = 0; e < a.n_entries; ++e) {
    const float* xp = x + off[e];
    if (e + kInputPrefetchEntries < a.n_entries) {
      const char* xq = reinterpret_cast<const char*>(x + off[e + kInputPrefetchEntries]);
      // every cache line the entry's NV vectors touch (one more when not line-aligned)
#pragma GCC unroll 16
      for (int b = 0; b < NV * W * 4 + 64; b += 64) __builtin_prefetch(xq + b, 0, 3);
    }
    if (pf) {  // prefetches never fault, so reading past the arrays' ends is harmless
      __builtin_prefetch(w + kPrefetchValueFloats, 0, 3);
      if ((e & 15) == 0) __builtin_prefetch(off + e + kPrefetchOffsetEntries, 0, 3);
    }
    reg xv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      xv[v] = (kMasked && v == NV - 1) ? V::load_mask(xp + v * W, m) : V::load(xp + v * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const reg wr = weight_of<V, R>(w, r);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(wr, xv[v], acc[r][v]);
    }
    w += R;
  }
  const reg zero = V::zero(), six = V::set1(6.0f);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    float* yr = a.y + r * a.y_row_stride;
    const float* rr = a.res ? a.res + r * a.res_row_stride : nullptr;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const bool last_masked = kMasked && v == NV - 1;
      reg o = acc[r][v];
      if (rr) o = V::add(o, last_masked ? V::load_mask(rr + v * W, m) : V::load(rr + v * W));
      if (a.act == 1) o = V::max(o, zero);
      else if (a.act == 2) o = V::min(V::max(o, zero), six);
      else if (a.act == kActHardswish || a.act == kActSilu)
        o = ExtraActivation<V>::apply_inline(o, a.act);
      if (last_masked) V::store_mask(yr + v * W, o, m);
      else V::store(yr + v * W, o);
    }
  }
  // GELU: a second pass over the rows just stored (in L1), one loop per activation. In the
  // register block it was a call per vector (too large to inline): each call spilled the
  // accumulators, and BERT-base's 12 fused GELUs cost 2.6 ms against TVM's 1.0 ms after it.
  if (a.act == kActGelu || a.act == kActGeluTanh)
    with_extra_act<V>(a.act, [&](auto act) {
      for (int r = 0; r < R; ++r) {
        float* yr = a.y + r * a.y_row_stride;
        act_row_of<V>(yr, yr, nullptr, a.npix, act);
      }
    });
}

// ReLU / ReLU6 as a type, like isa/activation.h's Act.
template <class V, bool kSix>
struct ClampAct {
  static typename V::reg apply(typename V::reg v) {
    v = V::max(v, V::zero());
    return kSix ? V::min(v, V::set1(6.0f)) : v;
  }
};

// SpmmKernels::act_row on V: one loop per activation (no branch a vector).
template <class V>
void act_row(float* d, const float* s, const float* res, int n, int act) {
  auto row = [=](auto a) { act_row_of<V>(d, s, res, n, a); };
  if (act > 2) with_extra_act<V>(act, row);
  else if (act == 2) row(ClampAct<V, true>{});
  else if (act == 1) row(ClampAct<V, false>{});
  else row(Act<V, 0>{});
}

// Fills an SpmmKernels table: full tiles use NV vectors; tails 1..NV vectors, masked.
template <class V, int R, int NV>
struct TailFill {
  static void fill(SpmmKernels& k) {
    k.tail[R - 1][NV - 1] = &spmm_tile<V, R, NV, true>;
    if constexpr (NV > 1) TailFill<V, R, NV - 1>::fill(k);
  }
};

// Line I of the list, if it is one of V's kernels.
template <class V, int I>
void fill_listed(SpmmKernels& k) {
  constexpr SpmmUkernel u = kSpmmUkernels[I];
  if constexpr (u.isa == V::kIsa) {
    constexpr int nv = u.pixels / V::kWidth;
    static_assert(u.pixels % V::kWidth == 0 && nv >= 1 && nv <= kMaxTileVectors,
                  "spmm_list.h: a tile's pixels must be 1..16 whole vectors of its ISA");
    k.nv[u.rows - 1] = nv;
    k.name[u.rows - 1] = u.name;
    k.full[u.rows - 1] = &spmm_tile<V, u.rows, nv, false>;
    TailFill<V, u.rows, nv>::fill(k);
  }
}

// V's kernels, as spmm_list.h lists them.
template <class V>
const SpmmKernels* spmm_table_of() {
  return isa_table<SpmmKernels, V, kNumSpmmUkernels>(
      [](SpmmKernels& k, auto i) {
        k.act_row = &act_row<V>;
        fill_listed<V, decltype(i)::value>(k);
      });
}

}  // namespace spe
#endif  // SPE_SPMM_TILE_TEMPLATE_H_
