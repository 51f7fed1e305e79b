// The kernel test runner's bookkeeping, shared by its translation units (kernel_tests.cc: main,
// max pooling, error statuses; spmm_sweep.cc and dwconv_sweep.cc: the families' sweeps;
// robustness_tests.cc: threads, fork, memory limits, huge geometries): pass / fail counts, the
// check running now (named by the fault handler), guarded buffers, the kernel lists.
#ifndef SPE_KERNELS_TESTS_RUNNER_H_
#define SPE_KERNELS_TESTS_RUNNER_H_

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/kernel_list.h"  // kernels/src: every family's list of kernels
#include "spe/spe.h"
#include "test_support.h"

namespace spe_test {

inline int g_passed = 0, g_failed = 0;
inline bool g_verbose = false;
inline bool g_no_fork = false;  // --no-fork
inline char g_current[256] = "startup";  // the check running now, for the fault handler

inline void set_current(const std::string& s) {
  std::snprintf(g_current, sizeof g_current, "%s", s.c_str());
}

inline void record(bool ok, const std::string& name, const std::string& why = "") {
  if (ok) {
    ++g_passed;
    if (g_verbose) std::printf("ok   %s\n", name.c_str());
  } else {
    ++g_failed;
    std::printf("FAIL %s%s%s\n", name.c_str(), why.empty() ? "" : ": ", why.c_str());
  }
}

inline void on_fault(int sig) {
  // async-signal-safe: write(2) only
  const char* what = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : "signal";
  char buf[512];
  int n = std::snprintf(buf, sizeof buf,
                        "FAIL %s: %s (a kernel touched memory past a buffer?)\n", g_current, what);
  if (n > 0 && write(1, buf, size_t(std::min<int>(n, sizeof buf - 1))) < 0) {}
  _exit(3);
}

// n floats ending exactly at a PROT_NONE page: one float past the end faults.
class Guarded {
 public:
  explicit Guarded(size_t n) : n_(n) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t data = ((std::max<size_t>(n, 1) * sizeof(float) + page - 1) / page) * page;
    len_ = data + page;
    void* m = mmap(nullptr, len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      std::perror("mmap");
      std::exit(2);
    }
    base_ = static_cast<char*>(m);
    if (mprotect(base_ + data, page, PROT_NONE) != 0) {
      std::perror("mprotect");
      std::exit(2);
    }
    p_ = reinterpret_cast<float*>(base_ + data) - n;
  }
  ~Guarded() { munmap(base_, len_); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  float* data() { return p_; }
  size_t size() const { return n_; }
  void assign(const std::vector<float>& v) { std::copy(v.begin(), v.end(), p_); }
  void fill(float f) { std::fill(p_, p_ + n_, f); }

 private:
  size_t n_, len_ = 0;
  char* base_ = nullptr;
  float* p_ = nullptr;
};

// The guarded buffers of one run: x (in_n random floats), the residual (out_n random floats, or
// none) and y (out_n NaNs: every output must be written), drawn from rng in that order.
struct RunBuffers {
  Guarded x, y, res;
  bool has_res;
  RunBuffers(size_t in_n, size_t out_n, bool residual, Lcg& rng)
      : x(in_n), y(out_n), res(residual ? out_n : 0), has_res(residual) {
    for (size_t i = 0; i < in_n; ++i) x.data()[i] = rng.sym(2.0f);
    if (residual)
      for (size_t i = 0; i < out_n; ++i) res.data()[i] = rng.sym(3.0f);
    y.fill(std::numeric_limits<float>::quiet_NaN());
  }
  const float* residual() { return has_res ? res.data() : nullptr; }
};

// run(y2) (a layer's run into y2) at the other thread count (3 <-> 1), into n NaN floats: ""
// if it succeeds and y2 equals y bit for bit.
template <class Run>
std::string same_at_other_threads(int threads, const float* y, size_t n, Run run) {
  const int other = threads == 1 ? 3 : 1;
  Guarded y2(n);
  y2.fill(std::numeric_limits<float>::quiet_NaN());
  spe_set_num_threads(other);
  const spe_status st = run(y2.data());
  if (st != SPE_OK) return fmt("run at %d threads returned %d", other, int(st));
  if (std::memcmp(y, y2.data(), n * sizeof(float)) != 0)
    return fmt("%d and %d threads give different results", threads, other);
  return "";
}

// One checked run of a layer: fresh guarded buffers (RunBuffers), run(x, residual, y) at
// `threads`, check(x, residual, y) ("" or what is wrong), and, if cross, the same run at the
// other thread count, which must give y bit for bit.
template <class Run, class Check>
std::string checked_run(size_t in_n, size_t out_n, bool residual, int threads, bool cross,
                        Lcg& rng, Run run, Check check) {
  RunBuffers b(in_n, out_n, residual, rng);
  spe_set_num_threads(threads);
  const spe_status st = run(b.x.data(), b.residual(), b.y.data());
  if (st != SPE_OK) return fmt("run returned %d: %s", int(st), spe_last_error());
  const std::string err = check(b.x.data(), b.residual(), b.y.data());
  if (!err.empty() || !cross) return err;
  return same_at_other_threads(threads, b.y.data(), out_n, [&](float* y2) {
    return run(b.x.data(), b.residual(), y2);
  });
}

// Runs each case (run(case): "" or what failed) as the check "[tag] <case name>"; returns the
// number of cases.
template <class C, class Run>
size_t sweep(const std::string& tag, const std::vector<C>& cases, Run run) {
  for (const C& c : cases) {
    const std::string name = "[" + tag + "] " + c.name;
    set_current(name);
    const std::string err = run(c);
    record(err.empty(), name, err);
  }
  return cases.size();
}

// A case's epilogue: batch, activation, residual and bias.
struct Epilogue {
  int batch, act;
  bool residual, bias;
  std::string name;  // n<batch>-<activation>-<res|nores>-<bias|nobias>
};

// Every epilogue: batch 1 and 3 x none / relu / relu6 / hardswish / silu x residual or not x
// bias or not.
inline std::vector<Epilogue> every_epilogue() {
  const char* acts[] = {"none", "relu", "relu6", "hardswish", "silu", "gelu", "gelu_tanh"};
  std::vector<Epilogue> out;
  for (int n : {1, 3})
    for (int act = 0; act <= SPE_ACT_LAST_; ++act)
      for (bool res : {false, true})
        for (bool bias : {false, true})
          out.push_back({n, act, res, bias,
                         fmt("n%d-%s-%s-%s", n, acts[act], res ? "res" : "nores", bias ? "bias" : "nobias")});
  return out;
}

// Threads for a sweep's cases: alternately 1 and 3; every third case also runs at the other
// count and must give the same result bit for bit.
template <class C>
void assign_threads(std::vector<C>& cs) {
  for (size_t i = 0; i < cs.size(); ++i) {
    cs[i].threads = i % 2 ? 3 : 1;
    if (i % 3 == 0) cs[i].cross_threads = true;
  }
}

// A listed kernel's tile parameter `key` (kernel_list.h), 0 if it has none.
inline int tile_param(const spe::KernelInfo& k, const char* key) {
  for (int i = 0; i < k.n_params; ++i)
    if (std::strcmp(k.params[i].key, key) == 0) return k.params[i].value;
  return 0;
}

// spmm_sweep.cc: the f32 SpMM sweep on one ISA, and the cases of one listed f32_spmm kernel
// (virtual pixel counts around its tile); each returns its case count.
size_t spmm_isa_sweep(const std::string& isa, bool quick);
size_t spmm_kernel_sweep(const spe::KernelInfo& k, bool quick);
// dwconv_sweep.cc: the depthwise sweep on one ISA, the cases of one listed f32_dwconv kernel,
// and the depthwise error statuses.
size_t dwconv_isa_sweep(const std::string& isa, bool quick);
size_t dwconv_kernel_sweep(const spe::KernelInfo& k, bool quick);
void dw_error_cases(const std::vector<std::string>& isas_missing);

// invres_sweep.cc: the cases of one listed f32_invres kernel (the fused inverted-residual block).
size_t invres_kernel_sweep(const spe::KernelInfo& k, bool quick);
// dense_sweep.cc: the dense conv sweep on one ISA, the cases of one listed f32_gemm or f32_conv
// kernel, and the dense conv's error statuses.
size_t dense_isa_sweep(const std::string& isa, bool quick);
// qconv_sweep.cc: every int8 variant this CPU runs (they are not isa.h's ISAs).
size_t qconv_sweep(bool quick);
size_t qlinear_sweep(bool quick);  // spe_qconv_run_linear (qconv_sweep.cc)
size_t qdepthwise_sweep(bool quick);  // qconv_sweep.cc: the int8 depthwise conv
size_t qglue_sweep(bool quick);       // qglue_sweep.cc: float <-> u8, every path this machine has
size_t qconv_kernel_sweep(const spe::KernelInfo& k, bool quick);
size_t dense_kernel_sweep(const spe::KernelInfo& k, bool quick);
size_t conv_kernel_sweep(const spe::KernelInfo& k, bool quick);
void dense_error_cases();

// robustness_tests.cc
void robustness_cases(bool quick);

// activation_tests.cc: hardswish and SiLU of one ISA's epilogues, element by element; returns
// its check count.
size_t activation_isa_sweep(const std::string& isa, bool quick);

}  // namespace spe_test
#endif  // SPE_KERNELS_TESTS_RUNNER_H_
