// The kernel test runner's bookkeeping, shared by its translation units (kernel_tests.cc: the
// sweeps; robustness_tests.cc: threads, fork, memory limits, huge geometries): pass / fail
// counts, the check running now (named by the fault handler), guarded buffers.
#ifndef SPE_KERNELS_TESTS_RUNNER_H_
#define SPE_KERNELS_TESTS_RUNNER_H_

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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

// robustness_tests.cc
void robustness_cases(bool quick);

}  // namespace spe_test
#endif  // SPE_KERNELS_TESTS_RUNNER_H_
