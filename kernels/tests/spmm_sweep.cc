// The f32 SpMM sweep of the kernel test runner (kernel_tests.cc), through the C API: every ISA
// this CPU runs, and every kernel spmm_list.h lists for it, against the plain-loop direct
// convolution of test_support.h (double accumulation) plus bias, residual and activation.
//
// Per ISA: kernel sizes, strides, padding, dilation (every asymmetric combination up to 3 per
// dimension), output channels around group boundaries with group heights 1..8 (and mixed), odd
// input channels, sparsity 0 / 0.5 / 0.9 / 1.0 over three mask kinds, batch 1 and 3, bias,
// ReLU / ReLU6, residual, linear layers, a layer over several input sizes, 1 and 3 threads (bit
// for bit alike). Per listed kernel: virtual pixel counts on and around multiples of its tile
// (so the masked tail tiles run), with one group, two, and a 1-row remainder group; the layer
// must pick that kernel. The sweep follows tests/kernels/test_spmm.py.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "runner.h"
#include "spe/spe.h"
#include "test_support.h"

namespace spe_test {
namespace {

// ------------------------------------------------------------------------------ the packed format

enum MaskKind { kBlock, kChannel, kUnstructured };
const char* kMaskNames[] = {"block", "channel", "unstructured"};

// ------------------------------------------------------------------------------ geometry

// (H, W) whose virtual pixel count Ho * Wp is `pixels` (Wp = Wo + d*(k-1)/s, the row pitch of
// the phase planes), square-ish; false if none.
bool spatial_for(int pixels, int k, int s, int p, int d, int* h, int* w) {
  const int extra = (d * (k - 1)) / s;
  int best = -1;
  for (int ho = 1; ho <= pixels; ++ho) {
    if (pixels % ho) continue;
    const int wo = pixels / ho - extra;
    if (wo < 1) continue;
    const int hh = (ho - 1) * s + d * (k - 1) + 1 - 2 * p, ww = (wo - 1) * s + d * (k - 1) + 1 - 2 * p;
    if (hh < 1 || ww < 1) continue;
    const int score = std::abs(ho - wo);
    if (best < 0 || score < best) best = score, *h = hh, *w = ww;
  }
  return best >= 0;
}

// ------------------------------------------------------------------------------ conv cases

struct Case {
  std::string name;
  int o = 8, c = 3, h = 9, w = 11, kh = 3, kw = 3, sh = 1, sw = 1, ph = 1, pw = 1, dh = 1, dw = 1;
  int rows = 4;          // group height 1..8; 0: random heights 1..8 (mask blocks of 4)
  double sparsity = 0.5;
  MaskKind mask = kBlock;
  int batch = 1, act = SPE_ACT_NONE;
  bool residual = false, bias = true;
  int pix_mult = 0, pix_off = 0;  // > 0: virtual pixels = pix_mult * tile + pix_off
  int tile = 0;                   // the listed kernel's tile width (pixels)
  const char* kernel = nullptr;   // the listed kernel the layer must pick, or any
  int threads = 1;
  bool cross_threads = false;     // also run at the other thread count; must match bit for bit
  bool resize = false;            // one layer run over several input sizes
};

Case with_geom(Case c, int k, int s, int p, int d = 1) {
  c.kh = c.kw = k;
  c.sh = c.sw = s;
  c.ph = c.pw = p;
  c.dh = c.dw = d;
  return c;
}

struct NamedGeom {
  const char* name;
  int k, s, p, d;
};
// The execution paths: direct NCHW read, planes + crop, planes without crop, strided, dilated.
const NamedGeom kGeoms[] = {{"1x1", 1, 1, 0, 1},   {"3x3s1", 3, 1, 1, 1}, {"1x1s2", 1, 2, 0, 1},
                            {"3x3s2", 3, 2, 1, 1}, {"5x5d2", 5, 1, 2, 2}, {"7x7s2", 7, 2, 3, 1}};

std::vector<Case> make_cases(bool quick) {
  std::vector<Case> cs;
  auto add = [&](Case c) { cs.push_back(std::move(c)); };
  const Case base;
  // kernel x stride x padding; 15x17 fits a 7x7 kernel without padding
  for (int k : {1, 3, 5, 7})
    for (int s : {1, 2})
      for (int p : {0, 1, 2, 3}) {
        if (quick && p == 2) continue;
        Case c = with_geom(base, k, s, p);
        c.name = fmt("geom-k%ds%dp%d", k, s, p);
        c.h = 15, c.w = 17;
        add(c);
      }
  // kernel x dilation, stride and padding cycling
  {
    int i = 0;
    for (int k : {1, 3, 5, 7})
      for (int d : {1, 2}) {
        const int s = 1 + i % 2, p = i % 4;
        ++i;
        Case c = with_geom(base, k, s, p, d);
        c.name = fmt("dil-k%dd%ds%dp%d", k, d, s, p);
        c.h = 16, c.w = 15;
        add(c);
      }
  }
  // asymmetric kernels, strides, padding, dilation: every combination of kernel 1..3, stride
  // 1..3, padding 0..2 and dilation 1..2 per dimension (quick: every fourth). Row and column
  // phases differ (a 1x1 at stride 2x1 reads one row phase of two: the crash of issue P5.1),
  // dilations that are multiples of the stride skip phases, padding exceeds the kernel.
  {
    int i = 0;
    for (int kh = 1; kh <= 3; ++kh)
      for (int kw = 1; kw <= 3; ++kw)
        for (int sh = 1; sh <= 3; ++sh)
          for (int sw = 1; sw <= 3; ++sw)
            for (int ph = 0; ph <= 2; ++ph)
              for (int pw = 0; pw <= 2; ++pw)
                for (int dh = 1; dh <= 2; ++dh)
                  for (int dw = 1; dw <= 2; ++dw, ++i) {
                    if (quick && i % 4) continue;
                    Case c = base;
                    c.kh = kh, c.kw = kw, c.sh = sh, c.sw = sw, c.ph = ph, c.pw = pw;
                    c.dh = dh, c.dw = dw;
                    c.name = fmt("asym-k%dx%ds%dx%dp%dx%dd%dx%d", kh, kw, sh, sw, ph, pw, dh, dw);
                    c.o = 5, c.c = 3, c.h = 7 + i % 3, c.w = 8 + i % 4, c.rows = i % 2 ? 3 : 0;
                    c.act = i % 3, c.residual = i % 5 == 0;
                    add(c);
                  }
  }
  // and a few larger asymmetric ones: big strides / kernels on one side only
  const int asym[][8] = {{1, 3, 1, 2, 0, 1, 1, 1}, {3, 1, 2, 1, 1, 0, 1, 1}, {3, 5, 1, 1, 1, 2, 2, 1},
                         {5, 3, 2, 2, 0, 1, 1, 2}, {1, 7, 1, 1, 0, 3, 1, 1}, {2, 2, 2, 2, 0, 0, 1, 1},
                         {1, 1, 2, 1, 0, 0, 1, 1}, {1, 1, 1, 2, 0, 0, 1, 1}, {1, 1, 8, 1, 0, 0, 1, 1},
                         {1, 1, 1, 8, 0, 0, 1, 1}, {3, 3, 2, 2, 2, 2, 2, 2}, {3, 3, 4, 1, 1, 1, 4, 1},
                         {7, 1, 5, 1, 3, 0, 1, 1}, {1, 7, 1, 6, 0, 3, 1, 3}, {4, 2, 8, 3, 5, 0, 2, 3}};
  for (const auto& a : asym) {
    Case c = base;
    c.kh = a[0], c.kw = a[1], c.sh = a[2], c.sw = a[3], c.ph = a[4], c.pw = a[5], c.dh = a[6],
    c.dw = a[7];
    c.name = fmt("asym-big-k%dx%ds%dx%dp%dx%dd%dx%d", a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    c.o = 16, c.c = 6, c.h = 25, c.w = 27;
    add(c);
  }
  // output channels around group boundaries x group heights 1..8 (and mixed), 1x1 / 3x3
  {
    int i = 0;
    for (int o : {1, 3, 4, 5, 7, 8, 9, 13, 16, 17})
      for (int r = 0; r <= 8; ++r) {
        const NamedGeom& g = kGeoms[i++ % 2];
        if (quick && (o + r) % 2) continue;
        Case c = with_geom(base, g.k, g.s, g.p, g.d);
        c.name = r ? fmt("rows-o%dr%d-%s", o, r, g.name) : fmt("rows-o%dmixed-%s", o, g.name);
        c.o = o, c.rows = r, c.h = 6, c.w = 7;
        add(c);
      }
  }
  // odd input channels x kernel size
  {
    int i = 0;
    for (int ch : {1, 3, 7})
      for (int k : {1, 3, 5, 7}) {
        const int s = 1 + i++ % 2;
        Case c = with_geom(base, k, s, k / 2);
        c.name = fmt("chan-c%dk%ds%d", ch, k, s);
        c.c = ch, c.h = 10, c.w = 9;
        add(c);
      }
  }
  // sparsity x mask kind
  {
    int i = 0;
    for (double sp : {0.0, 0.5, 0.9, 1.0})
      for (MaskKind m : {kBlock, kChannel, kUnstructured}) {
        const NamedGeom& g = kGeoms[i++ % 6];
        Case c = with_geom(base, g.k, g.s, g.p, g.d);
        c.name = fmt("sparsity-%.1f-%s-%s", sp, kMaskNames[m], g.name);
        c.sparsity = sp, c.mask = m, c.o = 13, c.c = 5, c.h = 12, c.w = 13;
        add(c);
      }
  }
  // batch x activation x residual x bias, through the three execution paths
  {
    int i = 0;
    for (const Epilogue& e : every_epilogue()) {
      const NamedGeom& g = kGeoms[i++ % 3];
      Case c = with_geom(base, g.k, g.s, g.p, g.d);
      c.name = "epilogue-" + e.name + "-" + g.name;
      c.batch = e.batch, c.act = e.act, c.residual = e.residual, c.bias = e.bias;
      c.o = 9, c.h = 10, c.w = 12;
      add(c);
    }
  }
  // linear layers: 1x1 on a 1x1 image, batch 5 (one virtual pixel: a 1-lane tail)
  const int linears[][3] = {{19, 37, 4}, {64, 33, 8}, {5, 130, 3}};
  for (const auto& l : linears) {
    Case c = with_geom(base, 1, 1, 0);
    c.name = fmt("linear-o%di%dr%d", l[0], l[1], l[2]);
    c.o = l[0], c.c = l[1], c.rows = l[2], c.h = c.w = 1, c.batch = 5, c.act = SPE_ACT_RELU;
    c.sparsity = 0.7;
    add(c);
  }
  // layers big enough for the pool to split the work, at 1 and 3 threads
  for (const NamedGeom& g : {kGeoms[0], kGeoms[1], kGeoms[3]}) {
    Case c = with_geom(base, g.k, g.s, g.p, g.d);
    c.name = fmt("threads-%s", g.name);
    c.o = quick ? 24 : 48, c.c = quick ? 8 : 16, c.h = quick ? 17 : 29, c.w = quick ? 19 : 31;
    c.batch = 2, c.sparsity = 0.6, c.act = SPE_ACT_RELU, c.cross_threads = true;
    add(c);
  }
  {
    Case c = with_geom(base, 3, 2, 1);
    c.name = "resize-3x3s2";
    c.o = 10, c.c = 5, c.rows = 2, c.mask = kUnstructured, c.batch = 2, c.resize = true;
    add(c);
  }
  assign_threads(cs);
  return cs;
}

// Virtual pixels on / one below / one above a multiple of kernel k's tile width, through the
// execution paths; O = rows (one group), 2*rows (two), 2*rows+1 (plus a 1-row group with its own
// tile width).
std::vector<Case> kernel_cases(const spe::KernelInfo& k, bool quick) {
  std::vector<Case> cs;
  const Case base;
  const int r = tile_param(k, "rows");
  for (int off : {-1, 0, 1})
    for (int j = 0; j < 2; ++j) {
      if (quick && j == 1 && (r + off) % 2) continue;
      const NamedGeom& g = j ? kGeoms[(2 * r + j + off + 6) % 6] : kGeoms[0];
      Case c = with_geom(base, g.k, g.s, g.p, g.d);
      c.pix_mult = 1 + (r + off + j + 2) % 2;
      c.pix_off = off;
      c.tile = tile_param(k, "pixels");
      c.kernel = k.name;
      c.name = fmt("tile-r%d%+dx%d-%s", r, off, c.pix_mult, g.name);
      c.o = off < 0 ? r : off == 0 ? 2 * r : 2 * r + 1;
      c.rows = r, c.c = 2;
      cs.push_back(c);
    }
  assign_threads(cs);
  return cs;
}

// Dense weight with exactly round(sparsity * units) units zeroed; units are `rows` x 1 blocks
// over (O, C*K) ("block"), over (O, C) with all taps ("channel"), or single weights.
std::vector<float> masked_weight(const Case& cs, int block_rows, Lcg& rng) {
  const int K = cs.kh * cs.kw, ncols = cs.c * K;
  std::vector<float> w(size_t(cs.o) * ncols);
  for (float& v : w) {
    v = rng.sym(1.5f);
    if (v == 0.0f) v = 1.0f;  // a kept weight is non-zero
  }
  const int unit_cols = cs.mask == kChannel ? cs.c : ncols;
  const int br = cs.mask == kUnstructured ? 1 : block_rows;
  const int nr = (cs.o + br - 1) / br, units = nr * unit_cols;
  std::vector<int> order(units);
  for (int i = 0; i < units; ++i) order[i] = i;
  for (int i = units - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);  // Fisher-Yates
  const int drop = int(std::lround(cs.sparsity * units));
  for (int u = 0; u < drop; ++u) {
    const int br_i = order[u] / unit_cols, uc = order[u] % unit_cols;
    for (int o = br_i * br; o < std::min(cs.o, (br_i + 1) * br); ++o) {
      if (cs.mask == kChannel)
        for (int k = 0; k < K; ++k) w[size_t(o) * ncols + uc * K + k] = 0.0f;
      else
        w[size_t(o) * ncols + uc] = 0.0f;
    }
  }
  return w;
}

std::vector<int> group_heights(const Case& cs, Lcg& rng) {
  std::vector<int> hs;
  for (int left = cs.o; left > 0;) {
    const int r = std::min(left, cs.rows ? cs.rows : 1 + rng.below(8));
    hs.push_back(r);
    left -= r;
  }
  return hs;
}

struct Layer {
  spe_sparse_conv* conv = nullptr;
  ~Layer() { spe_sparse_conv_destroy(conv); }
};

// Runs `conv` on fresh guarded buffers at (n, h, w) and checks it; returns "" or the failure.
std::string check_run(spe_sparse_conv* conv, const Case& cs, const Geom& g,
                      const std::vector<float>& w, const std::vector<float>& bias, int n, int h,
                      int wd, Lcg& rng, int* ho_out, int* wp_out) {
  const int ho = out_dim(h, g.ph, g.dh, g.kh, g.sh), wo = out_dim(wd, g.pw, g.dw, g.kw, g.sw);
  int aho = -1, awo = -1;
  spe_sparse_conv_output_size(conv, h, wd, &aho, &awo);
  if (aho != ho || awo != wo) return fmt("output size %dx%d, expected %dx%d", aho, awo, ho, wo);
  *ho_out = ho;
  *wp_out = wo + (g.dw * (g.kw - 1)) / g.sw;
  const size_t in_n = size_t(n) * g.c * h * wd, out_n = size_t(n) * g.o * ho * wo;
  return checked_run(
      in_n, out_n, cs.residual, cs.threads, cs.cross_threads, rng,
      [&](const float* x, const float* res, float* y) {
        return spe_sparse_conv_run(conv, x, n, h, wd, res, y);
      },
      [&](const float* x, const float* res, const float* y) {
        const auto ref = ref_conv(g, false, w, bias.empty() ? nullptr : bias.data(), x, n, h, wd,
                                  res, cs.act);
        const std::string err = compare(y, ref, g.c * g.kh * g.kw, g.o, ho, wo);
        return err.empty() ? err : err + fmt(" (threads %d)", cs.threads);
      });
}

std::string run_conv_case(const Case& cs0, const char* isa) {
  Case cs = cs0;
  Lcg rng(seed_of(cs.name));
  int target = -1;
  if (cs.pix_mult > 0) {
    int mult = cs.pix_mult;
    // a narrow tile cannot hold a wide kernel's row pitch: take the next multiple
    while (!spatial_for(mult * cs.tile + cs.pix_off, cs.kh, cs.sh, cs.ph, cs.dh, &cs.h, &cs.w))
      if (++mult > 64) return "no spatial size gives the target pixel count";
    target = mult * cs.tile + cs.pix_off;
  }
  const Geom g{cs.o, cs.c, cs.kh, cs.kw, cs.sh, cs.sw, cs.ph, cs.pw, cs.dh, cs.dw};
  const int ncols = cs.c * cs.kh * cs.kw;
  const std::vector<float> w = masked_weight(cs, cs.rows ? cs.rows : 4, rng);
  const Packed p = pack(w, ncols, group_heights(cs, rng));
  std::vector<float> bias;
  if (cs.bias)
    for (int o = 0; o < cs.o; ++o) bias.push_back(rng.sym(4.0f));

  const spe_conv_params params = {cs.o, cs.c, cs.kh, cs.kw, cs.sh, cs.sw, cs.ph, cs.pw, cs.dh, cs.dw};
  Layer l;
  spe_status st = spe_sparse_conv_create(&params, int32_t(p.row0.size()), p.row0.data(),
                                         p.rows.data(), p.ptr.data(), p.col.data(),
                                         p.values.data(), cs.bias ? bias.data() : nullptr,
                                         spe_activation(cs.act), isa, &l.conv);
  if (st != SPE_OK) return fmt("create returned %d: %s", int(st), spe_last_error());
  const std::string kname = spe_sparse_conv_kernel_name(l.conv);
  const std::string suffix = std::string("__") + isa;
  if (kname.rfind("f32_spmm_", 0) != 0 || kname.size() < suffix.size() ||
      kname.compare(kname.size() - suffix.size(), suffix.size(), suffix) != 0)
    return "kernel name " + kname + " does not name the ISA";
  if (cs.kernel && kname != cs.kernel) return "kernel " + kname + ", expected " + cs.kernel;
  if (spe_sparse_conv_nnz(l.conv) != int64_t(p.values.size()))
    return fmt("nnz %lld, packed %zu", (long long)spe_sparse_conv_nnz(l.conv), p.values.size());

  std::vector<std::pair<int, int>> sizes = {{cs.h, cs.w}};
  if (cs.resize) sizes = {{20, 23}, {7, 5}, {20, 23}, {31, 9}, {3, 3}};
  for (const auto& hw : sizes) {
    int ho = 0, wp = 0;
    std::string err = check_run(l.conv, cs, g, w, bias, cs.batch, hw.first, hw.second, rng, &ho, &wp);
    if (!err.empty())
      return err + " [" + kname + fmt(", input %dx%d]", hw.first, hw.second);
    if (target >= 0 && ho * wp != target)
      return fmt("geometry gives %d virtual pixels, wanted %d", ho * wp, target);
  }
  return "";
}

}  // namespace

size_t spmm_isa_sweep(const std::string& isa, bool quick) {
  return sweep(isa, make_cases(quick), [&](const Case& c) { return run_conv_case(c, isa.c_str()); });
}

size_t spmm_kernel_sweep(const spe::KernelInfo& k, bool quick) {
  const char* isa = spe::isa_name(k.isa);
  return sweep(k.name, kernel_cases(k, quick), [&](const Case& c) { return run_conv_case(c, isa); });
}

}  // namespace spe_test
