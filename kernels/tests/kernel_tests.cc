// Standalone test runner for the kernels, written against the public C API (spe/spe.h) only: no
// Python, no torch, so it runs wherever the library does, e.g. an aarch64 build under qemu.
//
// Every ISA variant this CPU (and build) can run is checked against an independent reference
// (test_support.h): a plain-loop direct convolution with double accumulation, plus bias, residual
// and activation. The sweep follows tests/kernels/test_spmm.py: kernel sizes, strides, padding,
// dilation (every asymmetric combination up to 3 per dimension), output channels around group boundaries with group heights 1..8 (and mixed heights),
// odd input channels, virtual pixel counts on and around each ISA's tile width (so the masked tail
// tiles run), sparsity 0 / 0.5 / 0.9 / 1.0 over three mask kinds, batch 1 and 3, bias, ReLU /
// ReLU6, residual, 1 and 3 threads (the two must agree bit for bit); the direct depthwise kernels
// against a plain depthwise reference over the sweep of tests/kernels/test_depthwise.py; then max
// pooling against a plain reference, then error handling (bad arguments return a status, never
// crash), then the robustness checks of robustness_tests.cc (torch's max-pool rules, huge
// geometries, threads sharing a layer, fork while busy, memory limits).
//
// Inputs, residuals and outputs end flush against a PROT_NONE page, so a tail that reads or writes
// one float past the valid lanes faults; a fault prints the case and exits non-zero.
// Data come from a fixed-seed LCG seeded by the case name: every ISA sees the same numbers.
//
// Output: the ISAs tested, one line per failing check, then the summary `N passed, M failed`
// (the last line; CI reads it). Exit 0 iff nothing failed.
//   spe_kernel_tests [--quick] [--isa NAME]... [--no-fork] [--verbose]
// --no-fork skips the checks that fork a multi-threaded process (fork while busy, memory
// limits): qemu-user cannot do that reliably (its own assertions fail in the child).
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "runner.h"
#include "spe/spe.h"
#include "test_support.h"

namespace {

using namespace spe_test;

// ------------------------------------------------------------------------------ the packed format

enum MaskKind { kBlock, kChannel, kUnstructured };
const char* kMaskNames[] = {"block", "channel", "unstructured"};

// ------------------------------------------------------------------------------ tiles

// Documented full-tile widths (kernels/README.md): floats per vector x vectors, rows 1..8.
struct TileDoc {
  const char* isa;
  int width, nv[8];
};
const TileDoc kTiles[] = {
    {"scalar", 1, {16, 16, 16, 16, 16, 16, 16, 16}},
    {"avx2", 8, {8, 4, 3, 2, 2, 2, 1, 1}},
    {"avx512", 16, {8, 8, 7, 6, 4, 4, 3, 3}},
    {"neon", 4, {8, 8, 7, 6, 5, 4, 3, 3}},
};

// Full-tile pixel count of `isa`'s kernel for groups of `rows`, read from the kernel name of a
// one-group layer (f32_spmm_{rows}x{pixels}__{isa}); -1 if the name does not parse.
int tile_width(const char* isa, int rows) {
  static int cache[4][9] = {};
  int slot = -1;
  for (int i = 0; i < 4; ++i)
    if (!std::strcmp(isa, kTiles[i].isa)) slot = i;
  if (slot >= 0 && cache[slot][rows]) return cache[slot][rows];
  spe_conv_params p = {rows, 1, 1, 1, 1, 1, 0, 0, 1, 1};
  const int32_t row0 = 0, nrows = rows, col = 0;
  const int64_t ptr[2] = {0, 1};
  std::vector<float> vals(rows, 1.0f);
  spe_sparse_conv* conv = nullptr;
  if (spe_sparse_conv_create(&p, 1, &row0, &nrows, ptr, &col, vals.data(), nullptr,
                             SPE_ACT_NONE, isa, &conv) != SPE_OK)
    return -1;
  int r = 0, t = -1;
  char tail[32] = {};
  const std::string name = spe_sparse_conv_kernel_name(conv);
  spe_sparse_conv_destroy(conv);
  if (std::sscanf(name.c_str(), "f32_spmm_%dx%d__%31s", &r, &t, tail) != 3 || r != rows ||
      std::strcmp(tail, isa) != 0)
    return -1;
  if (slot >= 0) cache[slot][rows] = t;
  return t;
}

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
  int pix_mult = 0, pix_off = 0;  // > 0: virtual pixels = pix_mult * tile width + pix_off
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
  // virtual pixels on / one below / one above a multiple of the tile width, per group height;
  // O = rows (one group), 2*rows (two), 2*rows+1 (plus a 1-row group with its own tile width)
  for (int r = 1; r <= 8; ++r)
    for (int off : {-1, 0, 1})
      for (int j = 0; j < 2; ++j) {
        if (quick && j == 1 && (r + off) % 2) continue;
        const NamedGeom& g = j ? kGeoms[(2 * r + j + off + 6) % 6] : kGeoms[0];
        Case c = with_geom(base, g.k, g.s, g.p, g.d);
        c.pix_mult = 1 + (r + off + j + 2) % 2;
        c.pix_off = off;
        c.name = fmt("tile-r%d%+dx%d-%s", r, off, c.pix_mult, g.name);
        c.o = off < 0 ? r : off == 0 ? 2 * r : 2 * r + 1;
        c.rows = r, c.c = 2;
        add(c);
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
    const char* acts[] = {"none", "relu", "relu6"};
    for (int n : {1, 3})
      for (int act = 0; act < 3; ++act)
        for (bool res : {false, true})
          for (bool bias : {false, true}) {
            const NamedGeom& g = kGeoms[i++ % 3];
            Case c = with_geom(base, g.k, g.s, g.p, g.d);
            c.name = fmt("epilogue-n%d-%s-%s-%s-%s", n, acts[act], res ? "res" : "nores",
                         bias ? "bias" : "nobias", g.name);
            c.batch = n, c.act = act, c.residual = res, c.bias = bias, c.o = 9, c.h = 10, c.w = 12;
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
  // threads: alternate 1 / 3; every third case (all with cross_threads) also checks the other
  for (size_t i = 0; i < cs.size(); ++i) {
    cs[i].threads = i % 2 ? 3 : 1;
    if (i % 3 == 0) cs[i].cross_threads = true;
  }
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
  Guarded x(in_n), y(out_n), res(cs.residual ? out_n : 0);
  for (size_t i = 0; i < in_n; ++i) x.data()[i] = rng.sym(2.0f);
  if (cs.residual)
    for (size_t i = 0; i < out_n; ++i) res.data()[i] = rng.sym(3.0f);
  y.fill(std::numeric_limits<float>::quiet_NaN());  // every output must be written
  const float* rp = cs.residual ? res.data() : nullptr;
  spe_set_num_threads(cs.threads);
  spe_status st = spe_sparse_conv_run(conv, x.data(), n, h, wd, rp, y.data());
  if (st != SPE_OK) return fmt("run returned %d: %s", int(st), spe_last_error());
  const auto ref = ref_conv(g, false, w, bias.empty() ? nullptr : bias.data(), x.data(), n, h,
                            wd, rp, cs.act);
  std::string err = compare(y.data(), ref, g.c * g.kh * g.kw, g.o, ho, wo);
  if (!err.empty()) return err + fmt(" (threads %d)", cs.threads);
  if (cs.cross_threads) {
    const int other = cs.threads == 1 ? 3 : 1;
    Guarded y2(out_n);
    y2.fill(std::numeric_limits<float>::quiet_NaN());
    spe_set_num_threads(other);
    st = spe_sparse_conv_run(conv, x.data(), n, h, wd, rp, y2.data());
    if (st != SPE_OK) return fmt("run at %d threads returned %d", other, int(st));
    if (std::memcmp(y.data(), y2.data(), out_n * sizeof(float)) != 0)
      return fmt("%d and %d threads give different results", cs.threads, other);
  }
  return "";
}

std::string run_conv_case(const Case& cs0, const char* isa) {
  Case cs = cs0;
  Lcg rng(seed_of(cs.name));
  int target = -1;
  if (cs.pix_mult > 0) {
    const int tile = tile_width(isa, cs.rows);
    if (tile <= 0) return "kernel name does not carry the tile width";
    int mult = cs.pix_mult;
    // a narrow tile cannot hold a wide kernel's row pitch: take the next multiple
    while (!spatial_for(mult * tile + cs.pix_off, cs.kh, cs.sh, cs.ph, cs.dh, &cs.h, &cs.w))
      if (++mult > 64) return "no spatial size gives the target pixel count";
    target = mult * tile + cs.pix_off;
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

// ------------------------------------------------------------------------------ depthwise conv

// The direct depthwise kernels (spe_depthwise_conv_*), swept like tests/kernels/test_depthwise.py:
// the specialised kernels (3x3 / 5x5, stride 1 / 2) and the generic one, padding up to larger
// than the kernel, tiny images, output widths on and around every vector width and unrolled
// block, wide / tall images (several row blocks), 1 and odd channels, batch, the epilogue, the
// per-row tap copies of a huge dilated span, and 1 vs 3 threads bit for bit.

struct DwCase {
  std::string name;
  int c = 5, h = 11, w = 13, kh = 3, kw = 3, sh = 1, sw = 1, ph = 1, pw = 1, dh = 1, dw = 1;
  int batch = 1, act = SPE_ACT_NONE;
  bool residual = false, bias = true;
  int wo = 0, ho = 0;  // > 0: pick the input size that gives this output
  int threads = 1;
  bool cross_threads = false;
};

struct DwGeomSpec {
  const char* name;
  int kh, kw, sh, sw, ph, pw, dh, dw;
};
const DwGeomSpec kDwGeoms[] = {
    {"3x3s1", 3, 3, 1, 1, 1, 1, 1, 1},    {"3x3s2", 3, 3, 2, 2, 1, 1, 1, 1},
    {"5x5s1", 5, 5, 1, 1, 2, 2, 1, 1},    {"5x5s2", 5, 5, 2, 2, 2, 2, 1, 1},
    {"3x5gen", 3, 5, 1, 1, 1, 2, 1, 1},   {"7x7s3gen", 7, 7, 3, 3, 3, 3, 1, 1},
    {"3x3d2gen", 3, 3, 1, 1, 2, 2, 2, 2},
};
constexpr int kNumDwGeoms = int(sizeof kDwGeoms / sizeof kDwGeoms[0]);

DwCase with_dw_geom(DwCase c, const DwGeomSpec& g) {
  c.kh = g.kh, c.kw = g.kw, c.sh = g.sh, c.sw = g.sw, c.ph = g.ph, c.pw = g.pw, c.dh = g.dh,
  c.dw = g.dw;
  return c;
}

// The smallest input size with `out` outputs (at least 1).
int dw_in_dim(int out, int k, int s, int p, int d) {
  return std::max(1, (out - 1) * s + d * (k - 1) + 1 - 2 * p);
}

std::vector<DwCase> make_dw_cases(bool quick) {
  std::vector<DwCase> cs;
  const DwCase base;
  // specialised kernels: k x stride x padding (0, 1, 2, larger than the kernel)
  for (int k : {3, 5})
    for (int s : {1, 2})
      for (int p : {0, 1, 2, 7}) {
        DwCase c = base;
        c.kh = c.kw = k, c.sh = c.sw = s, c.ph = c.pw = p, c.h = 14, c.w = 17;
        c.name = fmt("dw-spec-k%ds%dp%d", k, s, p);
        cs.push_back(c);
      }
  // generic: other kernels, strides, dilations, asymmetric everything
  const int gen[][8] = {{1, 1, 1, 1, 0, 0, 1, 1}, {1, 1, 2, 2, 0, 0, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1},
                        {2, 2, 2, 2, 0, 0, 1, 1}, {3, 5, 1, 1, 1, 2, 1, 1}, {5, 3, 2, 1, 2, 1, 1, 1},
                        {7, 7, 1, 1, 3, 3, 1, 1}, {7, 7, 2, 2, 3, 3, 1, 1}, {3, 3, 3, 3, 1, 1, 1, 1},
                        {5, 5, 3, 3, 0, 0, 1, 1}, {3, 3, 1, 1, 2, 2, 2, 2}, {3, 3, 2, 2, 2, 2, 2, 2},
                        {5, 5, 1, 1, 4, 4, 2, 2}, {3, 3, 1, 2, 1, 1, 1, 1}, {3, 3, 2, 1, 1, 1, 1, 1},
                        {5, 5, 1, 2, 2, 2, 1, 1}, {3, 3, 1, 1, 0, 3, 1, 1}, {3, 3, 1, 1, 1, 1, 1, 3},
                        {3, 1, 1, 1, 1, 0, 1, 1}, {1, 7, 1, 1, 0, 3, 1, 1}, {3, 3, 4, 4, 1, 1, 1, 1},
                        {2, 3, 1, 3, 0, 1, 2, 1}, {11, 11, 1, 1, 5, 5, 1, 1}, {3, 3, 1, 1, 9, 9, 1, 1}};
  for (const auto& g : gen) {
    DwCase c = base;
    c.kh = g[0], c.kw = g[1], c.sh = g[2], c.sw = g[3], c.ph = g[4], c.pw = g[5], c.dh = g[6],
    c.dw = g[7], c.h = 16, c.w = 19;
    c.name = fmt("dw-gen-k%dx%ds%dx%dp%dx%dd%dx%d", g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
    cs.push_back(c);
  }
  // tiny images (the geometries' padding makes every size valid)
  const int tiny[][2] = {{1, 1}, {2, 3}, {3, 2}, {1, 5}};
  for (const auto& t : tiny)
    for (const DwGeomSpec& g : kDwGeoms) {
      DwCase c = with_dw_geom(base, g);
      c.h = t[0], c.w = t[1], c.c = 3;
      c.name = fmt("dw-tiny-%dx%d-%s", t[0], t[1], g.name);
      cs.push_back(c);
    }
  // output widths on and around every vector width (4, 8, 16) and unrolled block (up to 4
  // vectors; 24 = avx2's 3-vector two-row block); output heights 1..3 (row pairs + a single)
  const int widths[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49,
                        63, 64, 65, 127, 128, 129};
  for (int i = 0; i < int(sizeof widths / sizeof widths[0]); ++i)
    for (int j = 0; j < 2; ++j) {
      if (quick && j == 1 && i % 2) continue;
      const DwGeomSpec& g = kDwGeoms[(2 * i + j) % kNumDwGeoms];
      DwCase c = with_dw_geom(base, g);
      c.wo = widths[i], c.ho = 1 + (i + j) % 3, c.c = 2;
      c.name = fmt("dw-width-wo%d-%s", widths[i], g.name);
      cs.push_back(c);
    }
  // wide and tall: several row blocks per plane (blocks are sized to an L1 budget)
  for (const DwGeomSpec& g : kDwGeoms) {
    DwCase c = with_dw_geom(base, g);
    c.c = 2, c.h = 23, c.w = quick ? 301 : 733;
    c.name = fmt("dw-wide-%s", g.name);
    cs.push_back(c);
    c.h = quick ? 41 : 97, c.w = 61;
    c.name = fmt("dw-tall-%s", g.name);
    cs.push_back(c);
  }
  // channels: 1 and odd counts
  {
    int i = 0;
    for (int ch : {1, 3, 7, 13}) {
      const DwGeomSpec& g = kDwGeoms[i++ % kNumDwGeoms];
      DwCase c = with_dw_geom(base, g);
      c.c = ch, c.h = 9, c.w = 10;
      c.name = fmt("dw-chan-c%d-%s", ch, g.name);
      cs.push_back(c);
    }
  }
  // batch x activation x residual x bias, cycling through the geometries
  {
    int i = 0;
    const char* acts[] = {"none", "relu", "relu6"};
    for (int n : {1, 3})
      for (int act = 0; act < 3; ++act)
        for (bool res : {false, true})
          for (bool bias : {false, true}) {
            const DwGeomSpec& g = kDwGeoms[i++ % kNumDwGeoms];
            DwCase c = with_dw_geom(base, g);
            c.batch = n, c.act = act, c.residual = res, c.bias = bias, c.c = 6, c.h = 12, c.w = 20;
            c.name = fmt("dw-epilogue-n%d-%s-%s-%s-%s", n, acts[act], res ? "res" : "nores",
                         bias ? "bias" : "nobias", g.name);
            cs.push_back(c);
          }
  }
  // the parallel splits: many planes (an item each) and few planes (rows split into blocks)
  const int thr[][7] = {{24, 2, 29, 31, 3, 1, 1}, {1, 1, 53, 41, 3, 1, 1}, {3, 1, 64, 70, 5, 2, 1},
                        {2, 1, 45, 33, 3, 1, 2}, {5, 1, 30, 30, 7, 3, 1}};
  for (const auto& t : thr) {
    DwCase c = base;
    c.c = t[0], c.batch = t[1], c.h = t[2], c.w = t[3], c.kh = c.kw = t[4], c.sh = c.sw = t[5];
    c.dh = c.dw = t[6], c.ph = c.pw = t[6] * (t[4] / 2), c.act = SPE_ACT_RELU6, c.residual = true;
    c.cross_threads = true;
    c.name = fmt("dw-threads-c%dn%d-%dx%d-k%ds%dd%d", t[0], t[1], t[2], t[3], t[4], t[5], t[6]);
    cs.push_back(c);
  }
  // one output row spanning more than 8 MiB of row buffers: per-row tap copies (block == 0)
  {
    DwCase c = base;
    c.c = 2, c.h = 3, c.w = quick ? 8200 : 9001, c.kh = 5, c.kw = 3, c.dh = 64, c.ph = 128,
    c.pw = 1, c.act = SPE_ACT_RELU;
    c.name = "dw-huge-dilated-span";
    cs.push_back(c);
  }
  // threads: alternate 1 / 3; every third case also runs at the other count, bit for bit
  for (size_t i = 0; i < cs.size(); ++i) {
    cs[i].threads = i % 2 ? 3 : 1;
    if (i % 3 == 0) cs[i].cross_threads = true;
  }
  return cs;
}

// The kernel create() should pick (dwconv.h SPE_DWCONV_SPECIALISED: 3x3 / 5x5, stride 1 / 2).
std::string expected_dw_kernel(const DwCase& c, const char* isa) {
  const bool square = c.kh == c.kw && c.sh == c.sw && c.dh == 1 && c.dw == 1;
  if (square && (c.kh == 3 || c.kh == 5) && (c.sh == 1 || c.sh == 2))
    return fmt("f32_dwconv_%dx%ds%d__%s", c.kh, c.kh, c.sh, isa);
  return std::string("f32_dwconv_generic__") + isa;
}

struct DwLayer {
  spe_depthwise_conv* conv = nullptr;
  ~DwLayer() { spe_depthwise_conv_destroy(conv); }
};

std::string run_dw_case(const DwCase& cs0, const char* isa) {
  DwCase cs = cs0;
  if (cs.wo > 0) {
    cs.w = dw_in_dim(cs.wo, cs.kw, cs.sw, cs.pw, cs.dw);
    cs.h = dw_in_dim(cs.ho, cs.kh, cs.sh, cs.ph, cs.dh);
  }
  Lcg rng(seed_of(cs.name));
  std::vector<float> w(size_t(cs.c) * cs.kh * cs.kw), bias;
  for (float& v : w) v = rng.sym(1.5f);
  if (cs.bias)
    for (int c = 0; c < cs.c; ++c) bias.push_back(rng.sym(4.0f));
  const spe_conv_params params = {cs.c, cs.c, cs.kh, cs.kw, cs.sh, cs.sw, cs.ph, cs.pw, cs.dh, cs.dw};
  DwLayer l;
  spe_status st = spe_depthwise_conv_create(&params, w.data(), cs.bias ? bias.data() : nullptr,
                                            spe_activation(cs.act), isa, &l.conv);
  if (st != SPE_OK) return fmt("create returned %d: %s", int(st), spe_last_error());
  const std::string kname = spe_depthwise_conv_kernel_name(l.conv), want = expected_dw_kernel(cs, isa);
  if (kname != want) return "kernel " + kname + ", expected " + want;

  const int n = cs.batch, h = cs.h, wd = cs.w;
  const int ho = out_dim(h, cs.ph, cs.dh, cs.kh, cs.sh), wo = out_dim(wd, cs.pw, cs.dw, cs.kw, cs.sw);
  int aho = -1, awo = -1;
  spe_depthwise_conv_output_size(l.conv, h, wd, &aho, &awo);
  if (aho != ho || awo != wo) return fmt("output size %dx%d, expected %dx%d", aho, awo, ho, wo);
  if (cs.wo > 0 && (ho != cs.ho || wo != cs.wo))
    return fmt("input %dx%d gives %dx%d outputs, wanted %dx%d", h, wd, ho, wo, cs.ho, cs.wo);
  const size_t in_n = size_t(n) * cs.c * h * wd, out_n = size_t(n) * cs.c * ho * wo;
  Guarded x(in_n), y(out_n), res(cs.residual ? out_n : 0);
  for (size_t i = 0; i < in_n; ++i) x.data()[i] = rng.sym(2.0f);
  if (cs.residual)
    for (size_t i = 0; i < out_n; ++i) res.data()[i] = rng.sym(3.0f);
  y.fill(std::numeric_limits<float>::quiet_NaN());  // every output must be written
  const float* rp = cs.residual ? res.data() : nullptr;
  spe_set_num_threads(cs.threads);
  st = spe_depthwise_conv_run(l.conv, x.data(), n, h, wd, rp, y.data());
  if (st != SPE_OK) return fmt("run returned %d: %s", int(st), spe_last_error());
  const Geom gd{cs.c, cs.c, cs.kh, cs.kw, cs.sh, cs.sw, cs.ph, cs.pw, cs.dh, cs.dw};
  const auto ref = ref_conv(gd, true, w, cs.bias ? bias.data() : nullptr, x.data(), n, h, wd, rp, cs.act);
  std::string err = compare(y.data(), ref, cs.kh * cs.kw, cs.c, ho, wo);
  if (!err.empty()) return err + fmt(" [%s, input %dx%d, threads %d]", kname.c_str(), h, wd, cs.threads);
  if (cs.cross_threads) {
    const int other = cs.threads == 1 ? 3 : 1;
    Guarded y2(out_n);
    y2.fill(std::numeric_limits<float>::quiet_NaN());
    spe_set_num_threads(other);
    st = spe_depthwise_conv_run(l.conv, x.data(), n, h, wd, rp, y2.data());
    if (st != SPE_OK) return fmt("run at %d threads returned %d", other, int(st));
    if (std::memcmp(y.data(), y2.data(), out_n * sizeof(float)) != 0)
      return fmt("%d and %d threads give different results", cs.threads, other);
  }
  return "";
}

void dw_error_cases(const std::vector<std::string>& isas_missing) {
  const spe_conv_params good = {4, 4, 3, 3, 1, 1, 1, 1, 1, 1};
  const std::vector<float> w(4 * 65 * 65, 0.5f);  // room for any kernel the checks describe
  auto expect = [&](const char* what, spe_conv_params p, int act, const char* isa,
                    spe_status want, const char* message_part) {
    const std::string name = std::string("dw-error-create-") + what;
    set_current(name);
    spe_depthwise_conv* out = nullptr;
    const spe_status st = spe_depthwise_conv_create(&p, w.data(), nullptr, spe_activation(act),
                                                    isa, &out);
    const bool message = std::strstr(spe_last_error(), message_part) != nullptr;
    record(st == want && out == nullptr && message, name,
           fmt("status %d (want %d), out %s, last error '%s' (want '%s')", int(st), int(want),
               out ? "set" : "untouched", spe_last_error(), message_part));
    if (out) spe_depthwise_conv_destroy(out);
  };
  auto edit = [&](auto f) {
    spe_conv_params p = good;
    f(p);
    return p;
  };
  const auto BAD = SPE_ERR_INVALID_ARGUMENT;
  {
    set_current("dw-error-create-null");
    spe_depthwise_conv* out = nullptr;
    record(spe_depthwise_conv_create(nullptr, w.data(), nullptr, SPE_ACT_NONE, "scalar", &out) ==
               BAD && !out, "dw-error-create-null-params");
    record(spe_depthwise_conv_create(&good, nullptr, nullptr, SPE_ACT_NONE, "scalar", &out) ==
               BAD && !out, "dw-error-create-null-weight");
    record(spe_depthwise_conv_create(&good, w.data(), nullptr, SPE_ACT_NONE, "scalar", nullptr) ==
               BAD, "dw-error-create-null-out");
  }
  expect("channels-mismatch", edit([](spe_conv_params& p) { p.out_channels = 5; }), 0, "scalar",
         BAD, "out_channels == in_channels, got 5 and 4");
  expect("zero-channels", edit([](spe_conv_params& p) { p.out_channels = p.in_channels = 0; }), 0,
         "scalar", BAD, "invalid conv params");
  expect("zero-kernel", edit([](spe_conv_params& p) { p.kw = 0; }), 0, "scalar", BAD,
         "invalid conv params");
  expect("zero-stride", edit([](spe_conv_params& p) { p.stride_h = 0; }), 0, "scalar", BAD,
         "invalid conv params");
  expect("negative-padding", edit([](spe_conv_params& p) { p.pad_w = -1; }), 0, "scalar", BAD,
         "invalid conv params");
  expect("zero-dilation", edit([](spe_conv_params& p) { p.dil_h = 0; }), 0, "scalar", BAD,
         "invalid conv params");
  expect("kernel-above-64", edit([](spe_conv_params& p) { p.kh = 65; }), 0, "scalar", BAD,
         "kernel size or dilation too large");
  expect("dilation-above-64", edit([](spe_conv_params& p) { p.dil_w = 65; }), 0, "scalar", BAD,
         "kernel size or dilation too large");
  expect("stride-above-64", edit([](spe_conv_params& p) { p.stride_w = 65; }), 0, "scalar", BAD,
         "stride too large");
  expect("padding-above-65536", edit([](spe_conv_params& p) { p.pad_h = 65537; }), 0, "scalar",
         BAD, "padding too large");
  expect("unknown-activation", good, 3, "scalar", BAD, "unknown activation");
  expect("unknown-isa", good, 0, "sse9000", SPE_ERR_UNSUPPORTED_ISA, "sse9000");
  expect("null-isa", good, 0, nullptr, SPE_ERR_UNSUPPORTED_ISA, "null");
  for (const std::string& isa : isas_missing)
    expect(("isa-not-available-" + isa).c_str(), good, 0, isa.c_str(), SPE_ERR_UNSUPPORTED_ISA,
           isa.c_str());

  // run(): bad calls return a status and leave the layer usable
  set_current("dw-error-run");
  DwLayer l;
  if (spe_depthwise_conv_create(&good, w.data(), nullptr, SPE_ACT_RELU, "auto", &l.conv) != SPE_OK) {
    record(false, "dw-error-run-setup", spe_last_error());
    return;
  }
  std::vector<float> x(2 * 4 * 5 * 5, 1.0f), y(2 * 4 * 5 * 5, -1.0f);
  record(spe_depthwise_conv_run(nullptr, x.data(), 1, 5, 5, nullptr, y.data()) == BAD, "dw-error-run-null-conv");
  record(spe_depthwise_conv_run(l.conv, nullptr, 1, 5, 5, nullptr, y.data()) == BAD, "dw-error-run-null-x");
  record(spe_depthwise_conv_run(l.conv, x.data(), 1, 5, 5, nullptr, nullptr) == BAD, "dw-error-run-null-y");
  record(spe_depthwise_conv_run(l.conv, x.data(), -1, 5, 5, nullptr, y.data()) == BAD, "dw-error-run-negative-batch");
  record(spe_depthwise_conv_run(l.conv, x.data(), 1, 0, 5, nullptr, y.data()) == BAD, "dw-error-run-zero-height");
  record(spe_depthwise_conv_run(l.conv, x.data(), 1, 5, -2, nullptr, y.data()) == BAD, "dw-error-run-negative-width");
  record(spe_depthwise_conv_run(l.conv, x.data(), 0, 5, 5, nullptr, y.data()) == SPE_OK && y[0] == -1.0f,
         "dw-error-run-zero-batch-is-a-no-op");
  {
    const spe_conv_params unpadded = {4, 4, 3, 3, 2, 2, 0, 0, 1, 1};
    DwLayer small;
    const bool made = spe_depthwise_conv_create(&unpadded, w.data(), nullptr, SPE_ACT_NONE,
                                                "scalar", &small.conv) == SPE_OK;
    record(made && spe_depthwise_conv_run(small.conv, x.data(), 1, 2, 5, nullptr, y.data()) == BAD &&
               std::strstr(spe_last_error(), "too small"),
           "dw-error-run-input-smaller-than-kernel", spe_last_error());
  }
  // still usable: all-ones input, 0.5 weights: the centre sees 9 taps, a corner 4
  const spe_status st = spe_depthwise_conv_run(l.conv, x.data(), 2, 5, 5, nullptr, y.data());
  record(st == SPE_OK && y[12] == 4.5f && y[7 * 25 + 12] == 4.5f && y[0] == 2.0f,
         "dw-error-run-layer-usable-afterwards",
         fmt("status %d, centre %g, corner %g", int(st), double(y[12]), double(y[0])));
}

// ------------------------------------------------------------------------------ max pooling

void pool_cases(bool quick) {
  int i = 0;
  for (int k : {1, 2, 3, 5})
    for (int s : {1, 2, 3})
      for (int p = 0; p <= k / 2; ++p, ++i) {
        if (quick && i % 2) continue;
        const int kw = i % 3 == 0 && k > 1 ? k - 1 : k, pw = std::min(p, kw / 2);
        const int n = 1 + i % 2, c = 3, h = k + 2 + i % 5, w = k + 4 + (3 * i) % 7;
        const bool negative = i % 4 == 1;  // all values below 0: padding (-inf) must never win
        const std::string name = fmt("maxpool-k%dx%ds%dp%dx%d-%dx%d%s", k, kw, s, p, pw, h, w,
                                     negative ? "-neg" : "");
        set_current(name);
        Lcg rng(seed_of(name));
        const int ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * pw - kw) / s + 1;
        const size_t in_n = size_t(n) * c * h * w, out_n = size_t(n) * c * ho * wo;
        Guarded x(in_n), y(out_n);
        for (size_t j = 0; j < in_n; ++j) x.data()[j] = negative ? rng.sym(1.0f) - 2.0f : rng.sym(1.0f);
        y.fill(std::numeric_limits<float>::quiet_NaN());
        spe_set_num_threads(k % 2 ? 3 : 1);
        const spe_status st = spe_max_pool2d(x.data(), n, c, h, w, k, kw, s, s, p, pw, y.data());
        std::string err = st == SPE_OK ? "" : fmt("returned %d", int(st));
        for (size_t plane = 0; plane < size_t(n) * c && err.empty(); ++plane)
          for (int oy = 0; oy < ho && err.empty(); ++oy)
            for (int ox = 0; ox < wo && err.empty(); ++ox) {
              float m = -std::numeric_limits<float>::infinity();
              for (int ky = 0; ky < k; ++ky)
                for (int kx = 0; kx < kw; ++kx) {
                  const int iy = oy * s - p + ky, ix = ox * s - pw + kx;
                  if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                    m = std::max(m, x.data()[(plane * h + iy) * w + ix]);
                }
              const float got = y.data()[(plane * ho + oy) * wo + ox];
              if (!(got == m))
                err = fmt("y[plane %zu, %d, %d] = %g, reference %g", plane, oy, ox, double(got),
                          double(m));
            }
        record(err.empty(), name, err);
      }
}

// ------------------------------------------------------------------------------ error handling

void error_cases(const std::vector<std::string>& isas_missing) {
  // a valid 4 x 3 x 3x3 layer, dense, one group of 4; each check breaks one piece
  const spe_conv_params good = {4, 3, 3, 3, 1, 1, 1, 1, 1, 1};
  std::vector<int32_t> cols(27);
  for (int j = 0; j < 27; ++j) cols[j] = j;
  const std::vector<float> vals(27 * 16, 0.5f);  // room for any group the checks describe
  struct Build {
    spe_conv_params p;
    int32_t n_groups;
    std::vector<int32_t> row0, rows;
    std::vector<int64_t> ptr;
    std::vector<int32_t> col;
    int act;
    const char* isa;
  };
  const Build ok{good, 1, {0}, {4}, {0, 27}, cols, SPE_ACT_RELU, "scalar"};
  auto create = [&](const Build& b, spe_sparse_conv** out) {
    return spe_sparse_conv_create(&b.p, b.n_groups, b.row0.empty() ? nullptr : b.row0.data(),
                                  b.rows.empty() ? nullptr : b.rows.data(),
                                  b.ptr.empty() ? nullptr : b.ptr.data(), b.col.data(), vals.data(),
                                  nullptr, spe_activation(b.act), b.isa, out);
  };
  auto expect = [&](const char* what, Build b, spe_status want) {
    const std::string name = std::string("error-create-") + what;
    set_current(name);
    spe_sparse_conv* out = nullptr;
    const spe_status st = create(b, &out);
    const bool good_status = st == want;
    const bool untouched = out == nullptr;
    const bool message = std::strlen(spe_last_error()) > 0;
    record(good_status && untouched && message, name,
           fmt("status %d (want %d), out %s, last error '%s'", int(st), int(want),
               untouched ? "untouched" : "set", spe_last_error()));
    if (out) spe_sparse_conv_destroy(out);
  };
  auto edit = [&](auto f) {
    Build b = ok;
    f(b);
    return b;
  };
  {
    set_current("error-create-valid");
    spe_sparse_conv* out = nullptr;
    const spe_status st = create(ok, &out);
    record(st == SPE_OK && out, "error-create-valid-baseline", fmt("status %d", int(st)));
    if (out) spe_sparse_conv_destroy(out);
  }
  {
    set_current("error-create-null");
    spe_sparse_conv* out = nullptr;
    record(spe_sparse_conv_create(nullptr, 1, ok.row0.data(), ok.rows.data(), ok.ptr.data(),
                                  cols.data(), vals.data(), nullptr, SPE_ACT_NONE, "scalar",
                                  &out) == SPE_ERR_INVALID_ARGUMENT && !out,
           "error-create-null-params");
    record(spe_sparse_conv_create(&good, 1, ok.row0.data(), ok.rows.data(), ok.ptr.data(),
                                  cols.data(), vals.data(), nullptr, SPE_ACT_NONE, "scalar",
                                  nullptr) == SPE_ERR_INVALID_ARGUMENT,
           "error-create-null-out");
  }
  const auto BAD = SPE_ERR_INVALID_ARGUMENT;
  expect("zero-out-channels", edit([](Build& b) { b.p.out_channels = 0; }), BAD);
  expect("negative-in-channels", edit([](Build& b) { b.p.in_channels = -1; }), BAD);
  expect("zero-kernel", edit([](Build& b) { b.p.kh = 0; }), BAD);
  expect("zero-stride", edit([](Build& b) { b.p.stride_w = 0; }), BAD);
  expect("negative-padding", edit([](Build& b) { b.p.pad_h = -1; }), BAD);
  expect("zero-dilation", edit([](Build& b) { b.p.dil_w = 0; }), BAD);
  expect("stride-above-8", edit([](Build& b) { b.p.stride_h = 9; }), BAD);
  expect("kernel-above-64", edit([](Build& b) { b.p.kw = 65; }), BAD);
  expect("unknown-activation", edit([](Build& b) { b.act = 3; }), BAD);
  expect("negative-groups", edit([](Build& b) { b.n_groups = -1; }), BAD);
  expect("null-group-arrays", edit([](Build& b) { b.row0.clear(); }), BAD);
  expect("group-rows-9", edit([](Build& b) {
           b.p.out_channels = 9;
           b.rows = {9};
         }), BAD);
  expect("group-rows-0", edit([](Build& b) { b.rows = {0}; }), BAD);
  expect("group-past-out-channels", edit([](Build& b) { b.row0 = {1}; }), BAD);
  expect("row-covered-twice", edit([](Build& b) {
           b.n_groups = 2;
           b.row0 = {0, 0};
           b.rows = {4, 4};
           b.ptr = {0, 1, 2};
         }), BAD);
  expect("row-not-covered", edit([](Build& b) { b.rows = {3}; }), BAD);
  expect("no-groups", edit([](Build& b) {
           b.n_groups = 0;
           b.ptr = {0};
         }), BAD);
  expect("ptr-not-monotone", edit([](Build& b) {
           b.n_groups = 2;
           b.row0 = {0, 2};
           b.rows = {2, 2};
           b.ptr = {0, 3, 2};
         }), BAD);
  expect("column-out-of-range", edit([](Build& b) { b.col[5] = 27; }), BAD);
  expect("negative-column", edit([](Build& b) { b.col[0] = -1; }), BAD);
  expect("unknown-isa", edit([](Build& b) { b.isa = "sse9000"; }), SPE_ERR_UNSUPPORTED_ISA);
  for (const std::string& isa : isas_missing)
    expect(("isa-not-available-" + isa).c_str(), edit([&](Build& b) { b.isa = isa.c_str(); }),
           SPE_ERR_UNSUPPORTED_ISA);

  // run(): bad calls return a status and leave the layer usable
  set_current("error-run");
  spe_sparse_conv* conv = nullptr;
  if (create(ok, &conv) != SPE_OK) {
    record(false, "error-run-setup", spe_last_error());
    return;
  }
  std::vector<float> x(2 * 3 * 5 * 5, 1.0f), y(2 * 4 * 5 * 5, -1.0f);
  record(spe_sparse_conv_run(nullptr, x.data(), 1, 5, 5, nullptr, y.data()) == BAD, "error-run-null-conv");
  record(spe_sparse_conv_run(conv, nullptr, 1, 5, 5, nullptr, y.data()) == BAD, "error-run-null-x");
  record(spe_sparse_conv_run(conv, x.data(), 1, 5, 5, nullptr, nullptr) == BAD, "error-run-null-y");
  record(spe_sparse_conv_run(conv, x.data(), -1, 5, 5, nullptr, y.data()) == BAD, "error-run-negative-batch");
  record(spe_sparse_conv_run(conv, x.data(), 1, 0, 5, nullptr, y.data()) == BAD, "error-run-zero-height");
  record(spe_sparse_conv_run(conv, x.data(), 1, 5, -2, nullptr, y.data()) == BAD, "error-run-negative-width");
  record(spe_sparse_conv_run(conv, x.data(), 0, 5, 5, nullptr, y.data()) == SPE_OK && y[0] == -1.0f,
         "error-run-zero-batch-is-a-no-op");
  {
    const spe_conv_params unpadded = {4, 3, 3, 3, 2, 2, 0, 0, 1, 1};
    Build b = ok;
    b.p = unpadded;
    spe_sparse_conv* small = nullptr;
    const bool made = create(b, &small) == SPE_OK;
    record(made && spe_sparse_conv_run(small, x.data(), 1, 2, 5, nullptr, y.data()) == BAD &&
               std::strstr(spe_last_error(), "too small"),
           "error-run-input-smaller-than-kernel", spe_last_error());
    if (small) spe_sparse_conv_destroy(small);
  }
  // still usable: all-ones input, 0.5 weights, ReLU: the centre pixel sees all 27 taps
  const spe_status st = spe_sparse_conv_run(conv, x.data(), 2, 5, 5, nullptr, y.data());
  record(st == SPE_OK && y[12] == 13.5f && y[4 * 25 + 12] == 13.5f && y[0] == 6.0f,
         "error-run-layer-usable-afterwards", fmt("status %d, centre %g, corner %g", int(st),
                                                   double(y[12]), double(y[0])));
  spe_sparse_conv_destroy(conv);

  // max pool
  set_current("error-maxpool");
  float px[16] = {}, py[16] = {};
  record(spe_max_pool2d(nullptr, 1, 1, 4, 4, 2, 2, 2, 2, 0, 0, py) == BAD, "error-maxpool-null-x");
  record(spe_max_pool2d(px, 1, 1, 4, 4, 2, 2, 2, 2, 0, 0, nullptr) == BAD, "error-maxpool-null-y");
  record(spe_max_pool2d(px, 1, 1, 4, 4, 0, 2, 2, 2, 0, 0, py) == BAD, "error-maxpool-zero-kernel");
  record(spe_max_pool2d(px, 1, 1, 4, 4, 2, 2, 0, 2, 0, 0, py) == BAD, "error-maxpool-zero-stride");
  record(spe_max_pool2d(px, 1, 1, 4, 4, 2, 2, 2, 2, -1, 0, py) == BAD, "error-maxpool-negative-pad");
  record(spe_max_pool2d(px, 1, 1, 4, 4, 2, 2, 2, 2, 0, 2, py) == BAD, "error-maxpool-pad-above-half-kernel");
  record(spe_max_pool2d(px, 1, 1, 2, 4, 3, 3, 1, 1, 0, 0, py) == BAD, "error-maxpool-input-smaller-than-kernel");
  record(spe_max_pool2d(px, -1, 1, 4, 4, 2, 2, 2, 2, 0, 0, py) == BAD, "error-maxpool-negative-batch");
  record(spe_max_pool2d(px, 0, 1, 4, 4, 2, 2, 2, 2, 0, 0, py) == SPE_OK, "error-maxpool-zero-batch-ok");

  // threads and ISA queries
  set_current("error-threads");
  const int32_t before = spe_get_num_threads();
  spe_set_num_threads(0);
  const int32_t at0 = spe_get_num_threads();
  spe_set_num_threads(-3);
  const int32_t atm3 = spe_get_num_threads();
  spe_set_num_threads(before);
  record(at0 == 1 && atm3 == 1 && spe_get_num_threads() == before, "threads-clamp-to-one",
         fmt("set(0) -> %d, set(-3) -> %d", at0, atm3));
  record(spe_isa_available("scalar") == 1 && spe_isa_available("sse9000") == 0 &&
             spe_isa_available(nullptr) == 0 && spe_isa_available(spe_best_isa()) == 1,
         "isa-queries");
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  signal(SIGSEGV, on_fault);
  signal(SIGBUS, on_fault);
  bool quick = false;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--verbose" || a == "-v") g_verbose = true;
    else if (a == "--isa" && i + 1 < argc) only.push_back(argv[++i]);
    else if (a == "--no-fork") g_no_fork = true;
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--isa NAME]... [--no-fork] [--verbose]\n", argv[0]);
      return 2;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> isas, missing;
  for (const TileDoc& t : kTiles) {
    const bool wanted = only.empty() || std::find(only.begin(), only.end(), t.isa) != only.end();
    if (!spe_isa_available(t.isa)) missing.push_back(t.isa);
    else if (wanted) isas.push_back(t.isa);
  }
  std::string line;
  for (const auto& s : isas) line += " " + s;
  std::printf("isas tested:%s (best: %s; not available:", line.c_str(), spe_best_isa());
  for (const auto& s : missing) std::printf(" %s", s.c_str());
  std::printf(")%s\n", quick ? " [quick]" : "");
#if defined(__aarch64__)
  record(spe_isa_available("neon") == 1 && !std::strcmp(spe_best_isa(), "neon"),
         "neon-available-on-aarch64");
#endif

  const std::vector<Case> cases = make_cases(quick);
  const std::vector<DwCase> dw_cases = make_dw_cases(quick);
  for (const std::string& isa : isas) {
    // the kernel names carry the documented tiles
    for (const TileDoc& t : kTiles) {
      if (isa != t.isa) continue;
      for (int r = 1; r <= 8; ++r) {
        const int got = tile_width(t.isa, r), want = t.width * t.nv[r - 1];
        record(got == want, fmt("[%s] tile-width-rows%d", t.isa, r), fmt("%d, documented %d", got, want));
      }
    }
    for (const Case& c : cases) {
      const std::string name = "[" + isa + "] " + c.name;
      set_current(name);
      const std::string err = run_conv_case(c, isa.c_str());
      record(err.empty(), name, err);
    }
    for (const DwCase& c : dw_cases) {
      const std::string name = "[" + isa + "] " + c.name;
      set_current(name);
      const std::string err = run_dw_case(c, isa.c_str());
      record(err.empty(), name, err);
    }
  }
  {
    // "auto" picks the best ISA
    set_current("auto-picks-best");
    const spe_conv_params p = {4, 1, 1, 1, 1, 1, 0, 0, 1, 1};
    const int32_t row0 = 0, rows = 4, col = 0;
    const int64_t ptr[2] = {0, 1};
    const float vals[4] = {1, 2, 3, 4};
    spe_sparse_conv* conv = nullptr;
    const bool made = spe_sparse_conv_create(&p, 1, &row0, &rows, ptr, &col, vals, nullptr,
                                             SPE_ACT_NONE, "auto", &conv) == SPE_OK;
    const std::string name = made ? spe_sparse_conv_kernel_name(conv) : "";
    const std::string want = std::string("__") + spe_best_isa();
    record(made && name.size() > want.size() &&
               name.compare(name.size() - want.size(), want.size(), want) == 0,
           "auto-picks-best-isa", name);
    if (conv) spe_sparse_conv_destroy(conv);
  }
  pool_cases(quick);
  error_cases(missing);
  dw_error_cases(missing);
  robustness_cases(quick);

  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("time: %.2f s, %zu conv + %zu depthwise cases per ISA\n", secs, cases.size(),
              dw_cases.size());
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 && g_passed > 0 ? 0 : 1;
}
