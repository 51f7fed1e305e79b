// Standalone test runner for the kernels, written against the public C API (spe/spe.h) and the
// kernel lists (kernels/src/common/kernel_list.h): no Python, no torch, so it runs wherever the
// library does, e.g. an aarch64 build under qemu.
//
// Every ISA variant this CPU (and build) can run, and every kernel the families' lists name for
// it, is checked against an independent reference (test_support.h): plain-loop direct
// convolutions with double accumulation, plus bias, residual and activation. The sweeps
// (spmm_sweep.cc, dwconv_sweep.cc) follow tests/kernels/test_spmm.py and test_depthwise.py:
// per ISA the geometries, channels, sparsities, epilogues and thread counts; per listed kernel
// the cases around its tile (f32_spmm: virtual pixel counts on and around its tile width, so the
// masked tail tiles run; f32_dwconv: its geometry at several paddings), each checking that the
// layer picks that kernel. Then max pooling against a plain reference, error handling (bad
// arguments return a status, never crash), and the robustness checks of robustness_tests.cc
// (torch's max-pool rules, huge geometries, threads sharing a layer, fork while busy, memory
// limits). activation_tests.cc checks each ISA's hardswish / SiLU element by element (through
// the SpMM crop's act_row, an internal entry point, and the depthwise conv).
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

#include <algorithm>
#include <chrono>
#include <cmath>
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
  expect("unknown-activation", edit([](Build& b) { b.act = SPE_ACT_LAST_ + 1; }), BAD);
  expect("negative-groups", edit([](Build& b) { b.n_groups = -1; }), BAD);
  expect("null-group-arrays", edit([](Build& b) { b.row0.clear(); }), BAD);
  expect("group-rows-9", edit([](Build& b) { b.p.out_channels = 9; b.rows = {9}; }), BAD);
  expect("group-rows-0", edit([](Build& b) { b.rows = {0}; }), BAD);
  expect("group-past-out-channels", edit([](Build& b) { b.row0 = {1}; }), BAD);
  expect("row-covered-twice",
         edit([](Build& b) { b.n_groups = 2; b.row0 = {0, 0}; b.rows = {4, 4}; b.ptr = {0, 1, 2}; }),
         BAD);
  expect("row-not-covered", edit([](Build& b) { b.rows = {3}; }), BAD);
  expect("no-groups", edit([](Build& b) { b.n_groups = 0; b.ptr = {0}; }), BAD);
  expect("ptr-not-monotone",
         edit([](Build& b) { b.n_groups = 2; b.row0 = {0, 2}; b.rows = {2, 2}; b.ptr = {0, 3, 2}; }),
         BAD);
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

// The sweep of each family's listed kernels: a new family adds its line here.
struct FamilySweep {
  const char* family;
  size_t (*kernel_sweep)(const spe::KernelInfo&, bool quick);
};
const FamilySweep kFamilySweeps[] = {{"f32_spmm", spmm_kernel_sweep},
                                     {"f32_dwconv", dwconv_kernel_sweep},
                                     {"f32_invres", invres_kernel_sweep},
                                     {"f32_gemm", dense_kernel_sweep},
                                     {"f32_conv", conv_kernel_sweep},
                                     {"qs8_spmm", qconv_kernel_sweep}};

// Every listed kernel of the tested ISAs through its family's sweep; returns the case count.
size_t listed_kernel_sweeps(const std::vector<std::string>& isas, bool quick) {
  size_t n = 0;
  for (const spe::KernelInfo& k : spe::kernel_list()) {
    if (std::find(isas.begin(), isas.end(), spe::isa_name(k.isa)) == isas.end()) continue;
    const FamilySweep* f = nullptr;
    for (const FamilySweep& s : kFamilySweeps)
      if (std::strcmp(s.family, k.family) == 0) f = &s;
    if (f) n += f->kernel_sweep(k, quick);
    else record(false, k.name, std::string("no sweep for family ") + k.family);
  }
  return n;
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
  for (int i = 0; i < spe::kNumIsas; ++i) {
    const std::string isa = spe::isa_name(spe::Isa(i));
    const bool wanted = only.empty() || std::find(only.begin(), only.end(), isa) != only.end();
    if (!spe_isa_available(isa.c_str())) missing.push_back(isa);
    else if (wanted) isas.push_back(isa);
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

  size_t n_conv = 0, n_dw = 0, n_dense = 0;
  for (const std::string& isa : isas) {
    n_conv = spmm_isa_sweep(isa, quick);
    n_dw = dwconv_isa_sweep(isa, quick);
    n_dense = dense_isa_sweep(isa, quick);
    activation_isa_sweep(isa, quick);
  }
  const size_t n_kernel = listed_kernel_sweeps(isas, quick);
  const size_t n_int8 = only.empty() ? qconv_sweep(quick) + qlinear_sweep(quick) + qdepthwise_sweep(quick) + qglue_sweep(quick) : 0;
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
  dense_error_cases();
  robustness_cases(quick);

  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("time: %.2f s, %zu conv + %zu depthwise cases per ISA, %zu listed-kernel cases, "
              "%zu dense cases per ISA, %zu int8 cases\n", secs, n_conv, n_dw, n_kernel, n_dense, n_int8);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 && g_passed > 0 ? 0 : 1;
}
