// Randomized geometry fuzz of every kernel family (the SpMM conv and linear, depthwise, max
// pooling, the fused block, the packed dense conv, the int8 conv) against the plain references of
// test_support.h, through the public C API. Built normally or, with -DSPE_SANITIZE=ON, under
// AddressSanitizer and UBSan (tests/kernels/test_fuzz_sanitized.py runs it so in CI).
//
// Each case draws one geometry from its own seed (the run's seed mixed with the case number),
// so any case can be replayed alone: shapes, asymmetric strides up to each family's limit,
// padding beyond the kernel, dilations, 1-pixel images, channel counts no row group divides,
// group heights 1..8 or mixed, sparsities 0 to 1.0 over three mask kinds, batches > 1, bias,
// residual and activation on and off, 1 to 3 threads (sometimes checked bit for bit against
// another count), a second input size through the same layer, two threads in one layer at
// once, and invalid geometries and calls (which must return an error with a message).
//
//   spe_kernel_fuzz [--seed S] [--cases N] [--time-limit SECONDS] [--family NAME]...
//                   [--case I] [--isa NAME]... [--verbose]
//
// Output: the seed and the ISAs, one FAIL line per failing case with its geometry and the
// command that replays it, then `fuzz: N cases, F failed, ...` last. Exit 0 iff none failed.
// A new kernel family is one function and one entry in kFamilies.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "isa/isa.h"  // kernels/src: the ISA list
#include "qspmm/qspmm.h"  // kernels/src: the int8 variants
#include "spe/spe.h"
#include "qconv_support.h"
#include "test_support.h"

#if defined(SPE_FUZZ_SANITIZED)
// Sanitizer reports abort (SIGABRT, caught below to name the case) instead of exiting quietly.
extern "C" const char* __asan_default_options() { return "abort_on_error=1:detect_leaks=1"; }
extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:abort_on_error=1:print_stacktrace=1";
}
#endif

namespace {

using namespace spe_test;

constexpr int32_t kI32Max = std::numeric_limits<int32_t>::max();
constexpr int32_t kI32Min = std::numeric_limits<int32_t>::min();

// The case running now, for the crash handler: a crash in a kernel still names its geometry.
char g_case[1024] = "";

void on_crash(int sig) {
  char buf[1400];
  const int n = std::snprintf(buf, sizeof buf, "\nFAIL (signal %d) in %s\n", sig, g_case);
  if (n > 0 && write(2, buf, size_t(std::min<int>(n, sizeof buf - 1))) < 0) {}
  signal(sig, SIG_DFL);
  raise(sig);
}

struct Ctx {
  Lcg rng;
  std::vector<std::string> isas;  // available ISAs to draw from
  std::string desc;               // the geometry, for the failure message
  const char* isa() { return isas[rng.below(int(isas.size()))].c_str(); }
  void describe(const std::string& d) {
    desc = d;
    std::snprintf(g_case + std::strlen(g_case), sizeof g_case - std::strlen(g_case), ": %s", d.c_str());
  }
};

// ------------------------------------------------------------------------------ draws

int pick(Ctx& c, std::initializer_list<int> v) { return v.begin()[c.rng.below(int(v.size()))]; }
int stride(Ctx& c, int max) {  // mostly 1 and 2, sometimes anything up to max
  const double u = c.rng.uniform();
  return u < 0.5 ? 1 : u < 0.8 ? std::min(2, max) : c.rng.range(1, max);
}
int pad(Ctx& c, int big) { return c.rng.chance(0.1) ? c.rng.range(0, big) : c.rng.range(0, 3); }
int dil(Ctx& c, int big) {
  const double u = c.rng.uniform();
  return u < 0.7 ? 1 : u < 0.9 ? 2 : c.rng.range(3, big);
}
// Channel counts: small, or ones no group height divides.
int channels(Ctx& c, int max) {
  return c.rng.chance(0.25) ? pick(c, {1, 7, 11, 13, 17, 23, 29, 31, 37}) : c.rng.range(1, max);
}
// An input size with `out` outputs along a dimension (sometimes 1 pixel, or one too few).
int in_for(Ctx& c, int out, int k, int s, int p, int d) {
  if (c.rng.chance(0.08)) return 1;
  const int need = (out - 1) * s + d * (k - 1) + 1 - 2 * p + c.rng.below(s);
  return std::max(1, need - (c.rng.chance(0.03) ? s : 0));
}

std::vector<float> data(Ctx& c, size_t n, float scale) {
  std::vector<float> v(n);
  for (float& f : v) f = c.rng.sym(scale);
  return v;
}

// A status that must be an error: not OK, with a message.
std::string want_error(spe_status st, const char* what) {
  if (st == SPE_OK) return std::string(what) + ": accepted, must be refused";
  if (!*spe_last_error()) return std::string(what) + fmt(": status %d without a message", int(st));
  return "";
}

// ------------------------------------------------------------------------------ sparse conv

struct ConvCase {
  Geom g;
  int h, w, n, act, rows;
  bool bias, residual;
  double sparsity;
  int mask;  // 0 block, 1 channel, 2 unstructured
};

std::vector<float> masked(Ctx& c, const ConvCase& k) {
  const Geom& g = k.g;
  const int K = g.kh * g.kw, ncols = g.c * K;
  std::vector<float> w(size_t(g.o) * ncols);
  for (float& v : w) {
    v = c.rng.sym(1.5f);
    if (v == 0.0f) v = 1.0f;
  }
  const int br = k.mask == 2 ? 1 : std::max(1, k.rows);
  const int unit_cols = k.mask == 1 ? g.c : ncols;
  for (int r = 0; r < (g.o + br - 1) / br; ++r)
    for (int u = 0; u < unit_cols; ++u) {
      if (!(c.rng.uniform() < k.sparsity)) continue;
      for (int o = r * br; o < std::min(g.o, (r + 1) * br); ++o)
        for (int t = 0; t < (k.mask == 1 ? K : 1); ++t)
          w[size_t(o) * ncols + (k.mask == 1 ? u * K + t : u)] = 0.0f;
    }
  return w;
}

std::vector<int> heights(Ctx& c, int o, int rows) {
  std::vector<int> hs;
  for (int left = o; left > 0;) {
    const int r = std::min(left, rows ? rows : c.rng.range(1, 8));
    hs.push_back(r);
    left -= r;
  }
  return hs;
}

struct ConvRun {
  std::vector<float> x, res, y;
  std::vector<double> ref;
  int ho = 0, wo = 0;
};

// Inputs and the reference for (n, h, w); y filled with NaN (every output must be written).
ConvRun prepare_run(Ctx& c, const ConvCase& k, const std::vector<float>& w, const std::vector<float>& b,
                    int n, int h, int wd, bool depthwise) {
  ConvRun r;
  r.ho = int(out_dim(h, k.g.ph, k.g.dh, k.g.kh, k.g.sh));
  r.wo = int(out_dim(wd, k.g.pw, k.g.dw, k.g.kw, k.g.sw));
  const size_t out_n = size_t(n) * k.g.o * r.ho * r.wo;
  r.x = data(c, size_t(n) * k.g.c * h * wd, 2.0f);
  if (k.residual) r.res = data(c, out_n, 3.0f);
  r.y.assign(out_n, std::numeric_limits<float>::quiet_NaN());
  r.ref = ref_conv(k.g, depthwise, w, k.bias ? b.data() : nullptr, r.x.data(), n, h, wd,
                   k.residual ? r.res.data() : nullptr, k.act);
  return r;
}

int64_t macs(const ConvCase& k, bool depthwise) {
  const int64_t ho = out_dim(k.h, k.g.ph, k.g.dh, k.g.kh, k.g.sh), wo = out_dim(k.w, k.g.pw, k.g.dw, k.g.kw, k.g.sw);
  return int64_t(k.n) * k.g.o * ho * wo * (depthwise ? 1 : k.g.c) * k.g.kh * k.g.kw;
}

ConvCase draw_conv(Ctx& c, bool linear) {
  ConvCase k{};
  Geom& g = k.g;
  if (linear) {
    g = {c.rng.range(1, 300), c.rng.range(1, 300), 1, 1, 1, 1, 0, 0, 1, 1};
    if (c.rng.chance(0.3)) g.o = channels(c, 64), g.c = channels(c, 64);
    k.h = k.w = 1;
    k.n = c.rng.range(1, 8);
  } else {
    g.o = channels(c, 40);
    g.c = channels(c, 20);
    g.kh = c.rng.chance(0.05) ? c.rng.range(1, 11) : c.rng.range(1, 7);
    g.kw = c.rng.chance(0.5) ? g.kh : c.rng.range(1, 7);
    g.sh = stride(c, 8), g.sw = c.rng.chance(0.5) ? g.sh : stride(c, 8);
    g.ph = pad(c, 9), g.pw = c.rng.chance(0.5) ? g.ph : pad(c, 9);
    g.dh = dil(c, 5), g.dw = c.rng.chance(0.5) ? g.dh : dil(c, 5);
    k.h = in_for(c, c.rng.range(1, 12), g.kh, g.sh, g.ph, g.dh);
    k.w = in_for(c, c.rng.range(1, 14), g.kw, g.sw, g.pw, g.dw);
    k.n = c.rng.chance(0.7) ? 1 : c.rng.range(2, 3);
  }
  k.rows = c.rng.chance(0.3) ? 0 : c.rng.range(1, 8);
  k.sparsity = c.rng.chance(0.5) ? double(pick(c, {0, 25, 50, 75, 90, 97, 100})) / 100 : c.rng.uniform();
  k.mask = c.rng.below(3);
  k.act = c.rng.below(3);
  k.bias = c.rng.chance(0.7);
  k.residual = c.rng.chance(0.3);
  while (macs(k, false) > 300000) {  // keep the double-precision reference cheap
    if (g.o > 1) g.o = (g.o + 1) / 2;
    else if (g.c > 1) g.c = (g.c + 1) / 2;
    else if (k.n > 1) k.n = 1;
    else break;
  }
  return k;
}

std::string conv_desc(const ConvCase& k, const char* isa, int threads) {
  const Geom& g = k.g;
  return fmt("O=%d C=%d k=%dx%d s=%dx%d p=%dx%d d=%dx%d input %dx%dx%d n=%d rows=%d sparsity=%.3f "
             "mask=%d act=%d bias=%d res=%d isa=%s threads=%d",
             g.o, g.c, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.c, k.h, k.w, k.n, k.rows,
             k.sparsity, k.mask, k.act, int(k.bias), int(k.residual), isa, threads);
}

// Breaks one piece of a valid layer description; the result must be refused.
std::string invalid_create(Ctx& c, spe_conv_params p, Packed pk, int act, const char* isa) {
  int32_t n_groups = int32_t(pk.row0.size());
  const int what = c.rng.below(14);
  const char* isa_used = isa;
  switch (what) {
    case 0: p.out_channels = pick(c, {0, -1, kI32Min}); break;
    case 1: p.in_channels = pick(c, {0, -5, kI32Min}); break;
    case 2: (c.rng.chance(0.5) ? p.kh : p.kw) = pick(c, {0, -1, 65, kI32Max}); break;
    case 3: (c.rng.chance(0.5) ? p.stride_h : p.stride_w) = pick(c, {0, -2, 9, 1000, kI32Max}); break;
    case 4: (c.rng.chance(0.5) ? p.pad_h : p.pad_w) = pick(c, {-1, kI32Min}); break;
    case 5: (c.rng.chance(0.5) ? p.dil_h : p.dil_w) = pick(c, {0, -1, 65, kI32Max}); break;
    case 6: act = pick(c, {SPE_ACT_LAST_ + 1, -1, 1000}); break;
    case 7: isa_used = "sse9000"; break;
    case 8: pk.rows[c.rng.below(n_groups)] = pick(c, {0, 9, -1}); break;
    case 9: pk.row0[c.rng.below(n_groups)] = pick(c, {-1, p.out_channels, kI32Max}); break;
    case 10:
      if (pk.ptr.back() > 0) pk.ptr.back() = -1;
      else pk.ptr[0] = -1;
      break;
    case 11:
      if (pk.col.empty()) p.out_channels = 0;
      else pk.col[c.rng.below(int(pk.col.size()))] = c.rng.chance(0.5) ? -1 : p.in_channels * p.kh * p.kw;
      break;
    case 12: n_groups = c.rng.chance(0.5) ? -1 : n_groups - 1; break;  // a row left uncovered
    default: p.in_channels = 1 << 20, p.kh = p.kw = 64; break;          // columns overflow int32
  }
  spe_sparse_conv* out = nullptr;
  const spe_status st = spe_sparse_conv_create(
      &p, n_groups, pk.row0.data(), pk.rows.data(), pk.ptr.data(), pk.col.data(), pk.values.data(),
      nullptr, spe_activation(act), isa_used, &out);
  std::string err = want_error(st, fmt("create with mutation %d", what).c_str());
  if (out) {
    spe_sparse_conv_destroy(out);
    if (err.empty()) err = "create refused but set *out";
  }
  return err;
}

// Calls a valid layer wrongly; each must be refused (or, huge inputs on no images, may pass).
std::string invalid_run(Ctx& c, spe_sparse_conv* conv, const ConvCase& k) {
  float dummy[4] = {};
  const Geom& g = k.g;
  switch (c.rng.below(5)) {
    case 0: return want_error(spe_sparse_conv_run(conv, dummy, -1, k.h, k.w, nullptr, dummy), "n = -1");
    case 1: return want_error(spe_sparse_conv_run(conv, nullptr, 1, k.h, k.w, nullptr, dummy), "null x");
    case 2: {
      const int bad = pick(c, {0, -1, kI32Min});
      const bool rows = c.rng.chance(0.5);
      return want_error(spe_sparse_conv_run(conv, dummy, 1, rows ? bad : k.h, rows ? k.w : bad,
                                            nullptr, dummy), "h or w <= 0");
    }
    case 3: {  // smaller than the dilated kernel, if the padding allows it
      const int h = g.dh * (g.kh - 1) - 2 * g.ph;
      if (h < 1) return "";
      return want_error(spe_sparse_conv_run(conv, dummy, 1, h, k.w, nullptr, dummy), "input smaller than the kernel");
    }
    default: {  // huge on no images: checked, never touched; refused only as "too large"
      const int h = pick(c, {kI32Max, 1 << 20, 65536, k.h}), w = pick(c, {kI32Max, 1 << 24, 46341});
      const bool small = out_dim(h, g.ph, g.dh, g.kh, g.sh) <= 0 || out_dim(w, g.pw, g.dw, g.kw, g.sw) <= 0;
      const spe_status st = spe_sparse_conv_run(conv, dummy, 0, h, w, nullptr, dummy);
      const char* why = small ? "too small" : "too large";
      if ((st == SPE_OK && !small) || (st == SPE_ERR_INVALID_ARGUMENT && std::strstr(spe_last_error(), why)))
        return "";
      return fmt("huge input %dx%d on no images: status %d, '%s'", h, w, int(st), spe_last_error());
    }
  }
}

std::string check_conv_run(spe_sparse_conv* conv, const ConvCase& k, ConvRun& r, int n, int h, int w) {
  const spe_status st = spe_sparse_conv_run(conv, r.x.data(), n, h, w, k.residual ? r.res.data() : nullptr, r.y.data());
  if (st != SPE_OK) return fmt("run %dx%d returned %d: %s", h, w, int(st), spe_last_error());
  const std::string e = compare(r.y.data(), r.ref, k.g.c * k.g.kh * k.g.kw, k.g.o, r.ho, r.wo);
  return e.empty() ? "" : fmt("input %dx%d: ", h, w) + e;
}

std::string fuzz_conv(Ctx& c, bool linear) {
  ConvCase k = draw_conv(c, linear);
  const Geom& g = k.g;
  const char* isa = c.isa();
  const int threads = c.rng.range(1, 3);
  c.describe(conv_desc(k, isa, threads));
  spe_set_num_threads(threads);
  const int ncols = g.c * g.kh * g.kw;
  const std::vector<float> w = masked(c, k);
  const Packed pk = pack(w, ncols, heights(c, g.o, k.rows));
  const std::vector<float> b = data(c, size_t(g.o), 2.0f);
  const spe_conv_params p = {g.o, g.c, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw};
  if (c.rng.chance(0.08)) return invalid_create(c, p, pk, k.act, isa);
  spe_sparse_conv* conv = nullptr;
  spe_status st = spe_sparse_conv_create(&p, int32_t(pk.row0.size()), pk.row0.data(), pk.rows.data(),
                                         pk.ptr.data(), pk.col.data(), pk.values.data(),
                                         k.bias ? b.data() : nullptr, spe_activation(k.act), isa, &conv);
  if (st != SPE_OK) return fmt("create returned %d: %s", int(st), spe_last_error());
  struct Free {
    spe_sparse_conv* c;
    ~Free() { spe_sparse_conv_destroy(c); }
  } free_conv{conv};
  if (spe_sparse_conv_nnz(conv) != int64_t(pk.values.size())) return "nnz differs from the packed values";
  if (c.rng.chance(0.08)) return invalid_run(c, conv, k);
  const int64_t ho = out_dim(k.h, g.ph, g.dh, g.kh, g.sh), wo = out_dim(k.w, g.pw, g.dw, g.kw, g.sw);
  int32_t qh = -1, qw = -1;
  spe_sparse_conv_output_size(conv, k.h, k.w, &qh, &qw);
  if (qh != ho || qw != wo) return fmt("output size %dx%d, expected %lldx%lld", qh, qw, (long long)ho, (long long)wo);
  if (ho <= 0 || wo <= 0) {  // the draw made the input smaller than the kernel
    std::vector<float> x(size_t(k.n) * g.c * k.h * k.w), y(1);
    return want_error(spe_sparse_conv_run(conv, x.data(), k.n, k.h, k.w, nullptr, y.data()), "input smaller than the kernel");
  }
  ConvRun r = prepare_run(c, k, w, b, k.n, k.h, k.w, false);
  std::string err = check_conv_run(conv, k, r, k.n, k.h, k.w);
  if (!err.empty()) return err;
  if (c.rng.chance(0.1)) {  // another thread count: bit for bit
    std::vector<float> y1 = r.y;
    spe_set_num_threads(threads == 1 ? 3 : 1);
    err = check_conv_run(conv, k, r, k.n, k.h, k.w);
    if (err.empty() && std::memcmp(y1.data(), r.y.data(), y1.size() * 4) != 0)
      err = "results differ between thread counts";
    spe_set_num_threads(threads);
    if (!err.empty()) return err;
  }
  if (c.rng.chance(0.15)) {  // a second input size through the same layer, then the first again
    ConvCase k2 = k;
    k2.h = in_for(c, c.rng.range(1, 9), g.kh, g.sh, g.ph, g.dh);
    k2.w = in_for(c, c.rng.range(1, 9), g.kw, g.sw, g.pw, g.dw);
    if (out_dim(k2.h, g.ph, g.dh, g.kh, g.sh) > 0 && out_dim(k2.w, g.pw, g.dw, g.kw, g.sw) > 0) {
      ConvRun r2 = prepare_run(c, k2, w, b, 1, k2.h, k2.w, false);
      err = check_conv_run(conv, k2, r2, 1, k2.h, k2.w);
      if (err.empty()) {
        std::fill(r.y.begin(), r.y.end(), std::numeric_limits<float>::quiet_NaN());
        err = check_conv_run(conv, k, r, k.n, k.h, k.w);
      }
      if (!err.empty()) return "resized: " + err;
    }
  }
  if (c.rng.chance(0.05)) {  // two threads in the layer at once (one gets a private workspace)
    std::fill(r.y.begin(), r.y.end(), std::numeric_limits<float>::quiet_NaN());
    ConvRun r2 = prepare_run(c, k, w, b, k.n, k.h, k.w, false);
    std::string e1, e2;
    std::thread t([&] { e2 = check_conv_run(conv, k, r2, k.n, k.h, k.w); });
    e1 = check_conv_run(conv, k, r, k.n, k.h, k.w);
    t.join();
    if (!e1.empty() || !e2.empty()) return "concurrent: " + e1 + " / " + e2;
  }
  return "";
}

std::string fuzz_sparse_conv(Ctx& c) { return fuzz_conv(c, false); }
std::string fuzz_linear(Ctx& c) { return fuzz_conv(c, true); }

// ------------------------------------------------------------------------------ dense conv

// The packed dense conv on a sparse conv's geometry draw with a dense weight: "gemm" (the
// direct path when C*kh*kw <= 64 or C <= 4, the pointwise one for a 1x1, the phase path for a
// strided conv past 1x1, else the implicit GEMM), or one path forced; 1..3 threads, every
// activation.
std::string fuzz_dense_conv(Ctx& c) {
  ConvCase k = draw_conv(c, false);
  const Geom& g = k.g;
  k.act = c.rng.below(5);
  const char* isa = c.isa();
  const char* const algos[] = {"gemm", "gemm-direct", "gemm-packed", "gemm-phase", "gemm-pointwise"};
  const char* algo = algos[pick(c, {0, 0, 1, 2, 3, 4})];
  const int threads = c.rng.range(1, 3);
  c.describe(conv_desc(k, isa, threads) + " (dense, " + algo + ")");
  spe_set_num_threads(threads);
  const std::vector<float> w = data(c, size_t(g.o) * g.c * g.kh * g.kw, 1.0f), b = data(c, size_t(g.o), 2.0f);
  const spe_conv_params p = {g.o, g.c, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw};
  spe_dense_conv* conv = nullptr;
  spe_status st = spe_dense_conv_create(&p, w.data(), k.bias ? b.data() : nullptr,
                                        spe_activation(k.act), isa, algo, &conv);
  if (st != SPE_OK) return fmt("create returned %d: %s", int(st), spe_last_error());
  const std::unique_ptr<spe_dense_conv, void (*)(spe_dense_conv*)> hold(conv, spe_dense_conv_destroy);
  const int64_t ho = out_dim(k.h, g.ph, g.dh, g.kh, g.sh), wo = out_dim(k.w, g.pw, g.dw, g.kw, g.sw);
  if (ho <= 0 || wo <= 0) {
    std::vector<float> x(size_t(k.n) * g.c * k.h * k.w), y(1);
    return want_error(spe_dense_conv_run(conv, x.data(), k.n, k.h, k.w, nullptr, y.data()), "input smaller than the kernel");
  }
  ConvRun r = prepare_run(c, k, w, b, k.n, k.h, k.w, false);
  st = spe_dense_conv_run(conv, r.x.data(), k.n, k.h, k.w, k.residual ? r.res.data() : nullptr, r.y.data());
  if (st != SPE_OK) return fmt("run returned %d: %s", int(st), spe_last_error());
  return compare(r.y.data(), r.ref, g.c * g.kh * g.kw, g.o, r.ho, r.wo);
}

// ------------------------------------------------------------------------------ depthwise

std::string fuzz_depthwise(Ctx& c) {
  ConvCase k{};
  Geom& g = k.g;
  g.o = g.c = channels(c, 16);
  g.kh = c.rng.chance(0.05) ? c.rng.range(1, 13) : c.rng.range(1, 7);
  g.kw = c.rng.chance(0.5) ? g.kh : c.rng.range(1, 7);
  const bool huge_stride = c.rng.chance(0.08);
  g.sh = huge_stride ? c.rng.range(9, 64) : stride(c, 4);
  g.sw = c.rng.chance(0.5) ? g.sh : huge_stride ? c.rng.range(1, 64) : stride(c, 4);
  g.ph = pad(c, 20), g.pw = c.rng.chance(0.5) ? g.ph : pad(c, 20);
  g.dh = dil(c, 8), g.dw = c.rng.chance(0.5) ? g.dh : dil(c, 8);
  k.h = in_for(c, c.rng.range(1, 10), g.kh, g.sh, g.ph, g.dh);
  k.w = in_for(c, c.rng.chance(0.1) ? c.rng.range(16, 200) : c.rng.range(1, 20), g.kw, g.sw, g.pw, g.dw);
  k.n = c.rng.chance(0.7) ? 1 : c.rng.range(2, 3);
  k.act = c.rng.below(3), k.bias = c.rng.chance(0.7), k.residual = c.rng.chance(0.3);
  while (macs(k, true) > 300000 && g.c > 1) g.o = g.c = (g.c + 1) / 2;
  const char* isa = c.isa();
  const int threads = c.rng.range(1, 3);
  c.describe(conv_desc(k, isa, threads) + " (depthwise)");
  spe_set_num_threads(threads);
  const std::vector<float> w = data(c, size_t(g.c) * g.kh * g.kw, 1.5f), b = data(c, size_t(g.c), 2.0f);
  spe_conv_params p = {g.c, g.c, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw};
  int act = k.act;
  const char* isa_used = isa;
  const float* wp = w.data();
  if (c.rng.chance(0.08)) {
    switch (c.rng.below(8)) {
      case 0: p.out_channels = g.c + 1; break;
      case 1: (c.rng.chance(0.5) ? p.stride_h : p.stride_w) = pick(c, {0, 65, kI32Max, -3}); break;
      case 2: (c.rng.chance(0.5) ? p.pad_h : p.pad_w) = pick(c, {-1, 65537, kI32Max}); break;
      case 3: (c.rng.chance(0.5) ? p.dil_h : p.dil_w) = pick(c, {0, 65, kI32Max}); break;
      case 4: (c.rng.chance(0.5) ? p.kh : p.kw) = pick(c, {0, 65, kI32Max}); break;
      case 5: act = 7; break;
      case 6: isa_used = c.rng.chance(0.5) ? "sse9000" : nullptr; break;
      default: wp = nullptr; break;
    }
    spe_depthwise_conv* out = nullptr;
    const spe_status st = spe_depthwise_conv_create(&p, wp, nullptr, spe_activation(act), isa_used, &out);
    if (out) spe_depthwise_conv_destroy(out);
    return out ? "create refused but set *out" : want_error(st, "invalid depthwise create");
  }
  spe_depthwise_conv* conv = nullptr;
  spe_status st = spe_depthwise_conv_create(&p, w.data(), k.bias ? b.data() : nullptr,
                                            spe_activation(k.act), isa, &conv);
  if (st != SPE_OK) return fmt("create returned %d: %s", int(st), spe_last_error());
  struct Free {
    spe_depthwise_conv* c;
    ~Free() { spe_depthwise_conv_destroy(c); }
  } free_conv{conv};
  const int64_t ho = out_dim(k.h, g.ph, g.dh, g.kh, g.sh), wo = out_dim(k.w, g.pw, g.dw, g.kw, g.sw);
  float dummy[4] = {};
  if (c.rng.chance(0.05))
    return want_error(spe_depthwise_conv_run(conv, dummy, 1, pick(c, {0, -1, kI32Min}), k.w, nullptr, dummy), "h <= 0");
  if (c.rng.chance(0.03))  // huge: refused as too large before anything is touched
    return want_error(spe_depthwise_conv_run(conv, dummy, 1, 1 << 28, k.w, nullptr, dummy), "huge input");
  if (ho <= 0 || wo <= 0)
    return want_error(spe_depthwise_conv_run(conv, dummy, 1, k.h, k.w, nullptr, dummy), "input smaller than the kernel");
  ConvRun r = prepare_run(c, k, w, b, k.n, k.h, k.w, true);
  st = spe_depthwise_conv_run(conv, r.x.data(), k.n, k.h, k.w, k.residual ? r.res.data() : nullptr, r.y.data());
  if (st != SPE_OK) return fmt("run returned %d: %s", int(st), spe_last_error());
  return compare(r.y.data(), r.ref, g.kh * g.kw, g.c, r.ho, r.wo);
}

// ------------------------------------------------------------------------------ max pooling

std::string fuzz_max_pool(Ctx& c) {
  int n = c.rng.chance(0.1) ? 0 : c.rng.range(1, 3), ch = c.rng.chance(0.03) ? 0 : c.rng.range(1, 6);
  int kh = c.rng.range(1, 6), kw = c.rng.chance(0.5) ? kh : c.rng.range(1, 6);
  int sh = stride(c, 5), sw = c.rng.chance(0.5) ? sh : stride(c, 5);
  int ph = c.rng.range(0, kh / 2), pw = c.rng.range(0, kw / 2);
  int h = c.rng.range(1, 20), w = c.rng.range(1, 24);
  const double u = c.rng.uniform();  // an edge of torch's rules, now and then
  if (u < 0.04) (c.rng.chance(0.5) ? sh : sw) = pick(c, {0, -1, kI32Min});
  else if (u < 0.07) (c.rng.chance(0.5) ? kh : kw) = pick(c, {0, -2, kI32Min});
  else if (u < 0.11) (c.rng.chance(0.5) ? ph : pw) = c.rng.chance(0.3) ? -1 : kh / 2 + 1 + c.rng.below(3);
  else if (u < 0.14) (c.rng.chance(0.5) ? h : w) = pick(c, {0, -1});
  else if (u < 0.17) kh = h + 2 * ph + c.rng.range(1, 2);  // window past the padded input
  else if (u < 0.20) sh = sw = kI32Max;                      // one output
  else if (u < 0.23) kh = kw = kI32Max, ph = pw = kI32Max / 2, h = c.rng.range(1, 3), w = c.rng.range(1, 3);
  const bool nans = c.rng.chance(0.2);
  const int threads = c.rng.range(1, 3);
  c.describe(fmt("n=%d c=%d input %dx%d k=%dx%d s=%dx%d p=%dx%d nans=%d threads=%d (max_pool)", n, ch,
                 h, w, kh, kw, sh, sw, ph, pw, int(nans), threads));
  spe_set_num_threads(threads);
  const int64_t ho = pool_out(h, kh, sh, ph), wo = pool_out(w, kw, sw, pw);
  const bool valid = ho > 0 && wo > 0 && ch > 0;
  std::vector<float> x(size_t(std::max(n, 0)) * std::max(ch, 0) * std::max(h, 0) * std::max(w, 0));
  for (float& v : x) v = nans && c.rng.chance(0.15) ? std::numeric_limits<float>::quiet_NaN()
                                                    : c.rng.chance(0.05) ? -std::numeric_limits<float>::infinity()
                                                                         : c.rng.sym(4.0f);
  std::vector<float> y(valid ? size_t(n) * ch * ho * wo + 1 : 1, -7.0f);
  const spe_status st = spe_max_pool2d(x.data(), n, ch, h, w, kh, kw, sh, sw, ph, pw, y.data());
  if (!valid) return want_error(st, "a pool torch rejects");
  if (st != SPE_OK) return fmt("returned %d: %s (torch accepts)", int(st), spe_last_error());
  const std::vector<float> ref = ref_max_pool(x.data(), n, ch, h, w, kh, kw, sh, sw, ph, pw);
  for (size_t i = 0; i < ref.size(); ++i)
    if (!(y[i] == ref[i] || (std::isnan(y[i]) && std::isnan(ref[i]))))
      return fmt("y[%zu] = %g, reference %g", i, double(y[i]), double(ref[i]));
  if (y[ref.size()] != -7.0f) return "wrote past the output";
  return "";
}

// ------------------------------------------------------------------------------ fused blocks

// A random inverted-residual block (kernels/src/mobile/): listed depthwise geometry, expand or
// not, dense to empty 1x1s with mixed group heights, any schedule and flags, odd sizes, 1-3
// threads; now and then a create the C API must refuse.
std::string fuzz_invres(Ctx& c) {
  const int k = c.rng.chance(0.7) ? 3 : 5, s = c.rng.range(1, 2);
  const int cin = channels(c, 24), t = c.rng.chance(0.2) ? 1 : c.rng.range(2, 6);
  const int ce = cin * t, cout = c.rng.chance(0.4) ? cin : channels(c, 24);
  const int h = c.rng.range(1, 16), w = c.rng.chance(0.1) ? c.rng.range(17, 60) : c.rng.range(1, 16);
  const int n = c.rng.chance(0.8) ? 1 : 2, threads = c.rng.range(1, 3);
  const bool residual = s == 1 && cin == cout && c.rng.chance(0.7);
  const double sparsity = pick(c, {0, 50, 80, 100}) / 100.0;
  const char* isa = c.isa();
  spe_inverted_block_params p{cin, ce, cout, k, s, SPE_ACT_RELU6, SPE_ACT_RELU6,
                              int32_t(residual), c.rng.chance(0.2) ? c.rng.range(1, 3) : 0,
                              c.rng.range(0, 2), c.rng.range(0, 3)};
  c.describe(fmt("n=%d cin=%d t=%d cout=%d %dx%d k=%d s=%d res=%d sp=%.1f sched=%d band=%d flags=%d "
                 "threads=%d %s (invres)", n, cin, t, cout, h, w, k, s, int(residual), sparsity,
                 p.schedule, p.band_rows, p.flags, threads, isa));
  spe_set_num_threads(threads);
  Conv1x1 ex;
  if (t > 1) ex = random_1x1(ce, cin, sparsity, c.rng.range(0, 8), c.rng);
  const Conv1x1 pr = random_1x1(cout, ce, sparsity, c.rng.range(0, 8), c.rng);
  const std::vector<float> dw = data(c, size_t(ce) * k * k, 0.5f), dwb = data(c, size_t(ce), 0.5f);
  const spe_pointwise_weights exv = pointwise_view(ex), prv = pointwise_view(pr);
  if (c.rng.chance(0.08)) {
    switch (c.rng.below(5)) {
      case 0: p.kernel = pick(c, {0, 4, 7, kI32Max}); break;
      case 1: p.stride = pick(c, {0, 3, -1}); break;
      case 2: p.residual = 1, p.out_channels = cin + 1; break;
      case 3: p.schedule = pick(c, {3, -1}); break;
      default: p.expanded = ce + 1; break;
    }
    spe_inverted_block* out = nullptr;
    const spe_status st = spe_inverted_block_create(&p, t > 1 ? &exv : nullptr, dw.data(), dwb.data(), &prv, isa, &out);
    if (out) spe_inverted_block_destroy(out);
    return out ? "create refused but set *out" : want_error(st, "invalid block create");
  }
  spe_inverted_block* b = nullptr;
  spe_status st = spe_inverted_block_create(&p, t > 1 ? &exv : nullptr, dw.data(), dwb.data(), &prv, isa, &b);
  if (st != SPE_OK) return fmt("create returned %d: %s", int(st), spe_last_error());
  struct Free {
    spe_inverted_block* b;
    ~Free() { spe_inverted_block_destroy(b); }
  } free_block{b};
  const int ho = int(out_dim(h, k / 2, 1, k, s)), wo = int(out_dim(w, k / 2, 1, k, s));
  const std::vector<float> x = data(c, size_t(n) * cin * h * w, 2.0f);
  std::vector<float> y(size_t(n) * cout * ho * wo + 1, -7.0f);
  st = spe_inverted_block_run(b, x.data(), n, h, w, y.data());
  if (st != SPE_OK) return fmt("run returned %d: %s", int(st), spe_last_error());
  if (y.back() != -7.0f) return "wrote past the output";
  const auto ref = ref_inverted_block({cin, ce, cout, k, s, n, h, w}, t > 1 ? &ex : nullptr, dw,
                                      dwb, pr, x.data(), residual);
  return compare(y.data(), ref, std::max(cin, ce) + k * k, cout, ho, wo);
}

// ------------------------------------------------------------------------------ int8 conv

// The int8 conv on a sparse conv's geometry draw: a variant drawn from those this CPU runs
// (not isa.h's ISAs), zero points anywhere in [0, 255] (0 and 255 often), output scales from
// fine to coarse, NCHW or NCHW4 on each side, 1..3 threads; invalid quantization parameters
// and layouts must be refused.
std::string fuzz_qconv(Ctx& c) {
  ConvCase k = draw_conv(c, c.rng.chance(0.2));
  Geom& g = k.g;
  while (int64_t((g.c + 3) / 4) * 4 * g.kh * g.kw > 65536) g.c = (g.c + 1) / 2;
  std::vector<const char*> variants;
  for (const char* v : {"scalar", "avx2", "avx512vnni", "neon", "neondot"}) {
    spe_conv_params p1 = {1, 4, 1, 1, 1, 1, 0, 0, 1, 1};
    const int32_t z = 0, one = 1;
    const int64_t ptr[2] = {0, 0};
    const float s1 = 1.0f;
    spe_qconv_quant q1{};
    q1.input = q1.output = q1.residual = {1.0f, 0};
    q1.weight_scale = &s1;
    spe_qconv* probe = nullptr;
    if (spe_qconv_create(&p1, 1, &z, &one, ptr, nullptr, nullptr, &q1, SPE_ACT_NONE, v, &probe) == SPE_OK)
      variants.push_back(v);
    spe_qconv_destroy(probe);
  }
  const char* variant = variants[size_t(c.rng.below(int(variants.size())))];
  const int threads = c.rng.range(1, 3);
  auto zero = [&] { return c.rng.chance(0.3) ? pick(c, {0, 255, 128}) : c.rng.range(0, 255); };
  spe_qconv_quant q{};
  q.input = {float(0.001 + 0.05 * c.rng.uniform()), zero()};
  q.output = {float(pick(c, {1, 10, 100}) * (0.001 + 0.05 * c.rng.uniform())), zero()};
  q.residual = {float(0.001 + 0.05 * c.rng.uniform()), zero()};
  q.input_layout = c.rng.below(2);
  q.output_layout = c.rng.below(2);
  c.describe(conv_desc(k, variant, threads) + fmt(" zx=%d zy=%d zr=%d sy=%g layouts=%d%d", q.input.zero_point,
                                                   q.output.zero_point, q.residual.zero_point, q.output.scale,
                                                   q.input_layout, q.output_layout));
  spe_set_num_threads(threads);
  const QLayer L = make_qlayer(QShape{g.o, g.c, g.kh, g.kw, k.rows, k.sparsity, k.mask == 0, k.bias}, c.rng);
  q.weight_scale = L.wscale.data();
  q.bias = k.bias ? L.bias.data() : nullptr;
  const spe_conv_params p = {g.o, g.c, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw};
  if (c.rng.chance(0.08)) {  // one broken piece: refused, nothing made
    spe_qconv_quant bad = q;
    int act = k.act;
    switch (c.rng.below(6)) {
      case 0: bad.input.scale = pick(c, {0, -1}) * 1.0f; break;
      case 1: bad.output.zero_point = pick(c, {-1, 256, kI32Max}); break;
      case 2: bad.output.scale = std::numeric_limits<float>::quiet_NaN(); break;
      case 3: bad.output_layout = pick(c, {2, -1}); break;
      case 4: act = pick(c, {SPE_ACT_HARDSWISH, SPE_ACT_GELU, 1000}); break;
      default: bad.output.scale = 1e-38f; bad.input.scale = 1e30f; break;  // folded scale overflows
    }
    spe_qconv* out = nullptr;
    const spe_status st = spe_qconv_create(&p, int32_t(L.row0.size()), L.row0.data(), L.rows.data(), L.ptr.data(),
                                           L.quad.data(), L.values.data(), &bad, spe_activation(act), variant, &out);
    std::string err = want_error(st, "int8 create with a broken parameter");
    if (out) spe_qconv_destroy(out);
    return err;
  }
  spe_qconv* conv = nullptr;
  if (spe_qconv_create(&p, int32_t(L.row0.size()), L.row0.data(), L.rows.data(), L.ptr.data(), L.quad.data(),
                       L.values.data(), &q, spe_activation(k.act), variant, &conv) != SPE_OK)
    return fmt("create failed: %s", spe_last_error());
  struct Free {
    spe_qconv* c;
    ~Free() { spe_qconv_destroy(c); }
  } free_conv{conv};
  const int64_t ho = out_dim(k.h, g.ph, g.dh, g.kh, g.sh), wo = out_dim(k.w, g.pw, g.dw, g.kw, g.sw);
  if (ho <= 0 || wo <= 0) {
    uint8_t dummy[4] = {};
    return want_error(spe_qconv_run(conv, dummy, k.n, k.h, k.w, nullptr, dummy), "input smaller than the kernel");
  }
  const int64_t in_px = int64_t(k.h) * k.w, out_px = ho * wo;
  std::vector<uint8_t> x(size_t(k.n) * g.c * in_px), res(size_t(k.n) * g.o * out_px);
  for (auto& v : x) v = uint8_t(c.rng.next() >> 24);
  for (auto& v : res) v = uint8_t(c.rng.next() >> 24);
  const std::vector<uint8_t> xl = q.input_layout ? to_quads(x.data(), k.n, g.c, in_px, 31) : x;
  const std::vector<uint8_t> rl = q.output_layout ? to_quads(res.data(), k.n, g.o, out_px, 0) : res;
  const size_t yn = q.output_layout ? size_t(k.n) * ((g.o + 3) / 4) * out_px * 4 : res.size();
  std::vector<uint8_t> y(yn + 64, 0xA5);
  const spe_status st = spe_qconv_run(conv, xl.data(), k.n, k.h, k.w, k.residual ? rl.data() : nullptr, y.data());
  if (st != SPE_OK) return fmt("run returned %d: %s", int(st), spe_last_error());
  for (size_t i = yn; i < y.size(); ++i)
    if (y[i] != 0xA5) return "wrote past the output";
  const std::vector<uint8_t> ref = ref_qconv(g, L, q, k.act, x.data(), k.n, k.h, k.w, k.residual ? res.data() : nullptr);
  for (size_t at = 0; at < ref.size(); ++at) {
    const int64_t i = int64_t(at % out_px);
    const int o = int(at / out_px % g.o), b = int(at / (out_px * g.o));
    const uint8_t got = q.output_layout ? y[((size_t(b) * ((g.o + 3) / 4) + o / 4) * out_px + i) * 4 + o % 4] : y[at];
    if (got != ref[at]) return fmt("y[n=%d,o=%d,pixel=%lld] = %d, reference %d", b, o, (long long)i, got, ref[at]);
  }
  if (c.rng.chance(0.1)) {  // two threads in the layer at once (one gets a private workspace), and
    std::vector<uint8_t> y2(yn), y3(yn);  // another thread count: the same bytes
    spe_set_num_threads(threads == 1 ? 3 : 1);
    spe_status s2 = SPE_OK;
    std::thread t([&] { s2 = spe_qconv_run(conv, xl.data(), k.n, k.h, k.w, k.residual ? rl.data() : nullptr, y2.data()); });
    const spe_status s3 = spe_qconv_run(conv, xl.data(), k.n, k.h, k.w, k.residual ? rl.data() : nullptr, y3.data());
    t.join();
    spe_set_num_threads(threads);
    if (s2 != SPE_OK || s3 != SPE_OK || std::memcmp(y2.data(), y.data(), yn) || std::memcmp(y3.data(), y.data(), yn))
      return "concurrent runs / another thread count differ";
  }
  return "";
}

// The int8 depthwise conv: a random geometry (kernels 1..7, strides 1..3, padding up to the
// kernel, dilation 1..2), channels, zero points and thread count, on a variant drawn from
// those that run here (the permute path where the geometry suits it, else the generic row).
std::string fuzz_qdepthwise(Ctx& c) {
  std::vector<const char*> variants;
  for (const char* v : {"scalar", "avx2", "avx512vnni", "neon", "neondot"}) {
    spe::QVariant q;
    if (spe::parse_qvariant(v, &q) && spe::qspmm_kernels(q)) variants.push_back(v);
  }
  const char* variant = variants[size_t(c.rng.below(int(variants.size())))];
  const int k = c.rng.range(1, 7), s = c.rng.range(1, 3), d = c.rng.chance(0.2) ? 2 : 1;
  const int p = c.rng.range(0, k / 2 + (c.rng.chance(0.1) ? 2 : 0));
  const int ch = channels(c, 40), h = c.rng.range(1, 20), w = c.rng.range(1, 23);
  const int zx = c.rng.chance(0.3) ? pick(c, {0, 255}) : c.rng.range(0, 255);
  const int act = c.rng.below(3), batch = c.rng.range(1, 2), threads = c.rng.range(1, 3);
  const bool residual = c.rng.chance(0.3);
  c.describe(fmt("C=%d k=%d s=%d p=%d d=%d input %dx%d n=%d act=%d res=%d zx=%d %s threads=%d", ch, k, s, p,
                 d, h, w, batch, act, int(residual), zx, variant, threads));
  if (out_dim(h, p, d, k, s) <= 0 || out_dim(w, p, d, k, s) <= 0) return "";  // nothing to compute
  return run_dw_case(variant, ch, h, w, k, s, p, d, act, residual, batch, zx, threads, c.rng);
}

// ------------------------------------------------------------------------------ the families

struct Family {
  const char* name;
  std::string (*run)(Ctx&);
};
const Family kFamilies[] = {
    {"sparse_conv", fuzz_sparse_conv},
    {"linear", fuzz_linear},
    {"depthwise", fuzz_depthwise},
    {"max_pool", fuzz_max_pool},
    {"invres", fuzz_invres},
    {"dense_conv", fuzz_dense_conv},
    {"qconv", fuzz_qconv},
    {"qdepthwise", fuzz_qdepthwise},
};

uint64_t case_seed(uint64_t seed, uint64_t i) {  // splitmix64 of (seed, case)
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--seed S] [--cases N] [--time-limit SECONDS] [--family NAME]... "
               "[--case I] [--isa NAME]... [--verbose]\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) signal(sig, on_crash);
  uint64_t seed = 1;
  long long cases = 10000, only_case = -1;
  double time_limit = 0;
  bool verbose = false;
  std::vector<std::string> families, isas_wanted;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool more = i + 1 < argc;
    if (a == "--seed" && more) seed = std::strtoull(argv[++i], nullptr, 0);
    else if (a == "--cases" && more) cases = std::atoll(argv[++i]);
    else if (a == "--time-limit" && more) time_limit = std::atof(argv[++i]);
    else if (a == "--family" && more) families.push_back(argv[++i]);
    else if (a == "--case" && more) only_case = std::atoll(argv[++i]);
    else if (a == "--isa" && more) isas_wanted.push_back(argv[++i]);
    else if (a == "--verbose" || a == "-v") verbose = true;
    else return usage(argv[0]);
  }
  std::vector<const Family*> fams;
  for (const Family& f : kFamilies)
    if (families.empty() || std::find(families.begin(), families.end(), f.name) != families.end())
      fams.push_back(&f);
  if (fams.empty()) return usage(argv[0]);
  std::vector<std::string> isas;
  for (int i = 0; i < spe::kNumIsas; ++i)
    if (const char* s = spe::isa_name(spe::Isa(i)); spe_isa_available(s) &&
        (isas_wanted.empty() || std::find(isas_wanted.begin(), isas_wanted.end(), s) != isas_wanted.end()))
      isas.push_back(s);
  if (isas.empty()) return usage(argv[0]);
  std::string line;
  for (const auto& s : isas) line += " " + s;
  std::printf("fuzz seed %llu, isas%s\n", (unsigned long long)seed, line.c_str());

  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  std::vector<long long> per_family(fams.size(), 0);
  long long run = 0, failed = 0;
  const long long first = only_case >= 0 ? only_case : 0, last = only_case >= 0 ? only_case + 1 : cases;
  for (long long i = first; i < last; ++i) {
    if (time_limit > 0 && elapsed() > time_limit) break;
    const size_t fi = size_t(i) % fams.size();
    Ctx c{Lcg(case_seed(seed, uint64_t(i))), isas, ""};
    std::snprintf(g_case, sizeof g_case, "case %lld (%s, replay: --seed %llu --case %lld)", i,
                  fams[fi]->name, (unsigned long long)seed, i);
    const std::string err = fams[fi]->run(c);
    ++run, ++per_family[fi];
    if (!err.empty()) {
      ++failed;
      if (failed <= 20) std::printf("FAIL %s: %s\n", g_case, err.c_str());
    } else if (verbose) {
      std::printf("ok   %s\n", g_case);
    }
  }
  std::string counts;
  for (size_t f = 0; f < fams.size(); ++f) counts += fmt("%s%s %lld", f ? ", " : "", fams[f]->name, per_family[f]);
  std::printf("fuzz: %lld cases, %lld failed, %.1f s, seed %llu (%s)\n", run, failed, elapsed(),
              (unsigned long long)seed, counts.c_str());
  return failed == 0 && run > 0 ? 0 : 1;
}
