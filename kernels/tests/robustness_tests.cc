// The kernel test runner's robustness checks (issue P5), through the public C API only:
//   - max pooling validates like torch (stride 0, padding above half the kernel, floor-mode
//     output sizes, C == 0, huge kernels and strides) and propagates NaN like torch;
//   - huge-but-valid geometries are refused with a message, never a wrong offset or a crash;
//   - several threads share one layer (the layer's workspace lock is only ever try_locked);
//   - a child forked while another thread is inside a layer runs that layer (no inherited
//     lock can hang it; each child has an alarm, so a hang fails instead of blocking);
//   - under an address-space limit (RLIMIT_AS, in a forked child) every allocation failure
//     becomes SPE_ERR_OUT_OF_MEMORY with a message, the process survives, layers stay usable.
#include <sys/resource.h>
#include <sys/wait.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>

#include "runner.h"
#include "spe/spe.h"
#include "test_support.h"

namespace spe_test {
namespace {

constexpr spe_status BAD = SPE_ERR_INVALID_ARGUMENT;
constexpr int32_t kI32Max = std::numeric_limits<int32_t>::max();

// ------------------------------------------------------------------------------ max pooling

struct PoolCase {
  int n, c, h, w, kh, kw, sh, sw, ph, pw;
};

// Status and output against torch's rules (test_support.h pool_out, ref_max_pool).
void check_pool(const PoolCase& p, const std::string& name, bool nans) {
  set_current(name);
  const int64_t ho = pool_out(p.h, p.kh, p.sh, p.ph), wo = pool_out(p.w, p.kw, p.sw, p.pw);
  const bool valid = ho > 0 && wo > 0 && p.n >= 0 && p.c > 0;
  int32_t qh = -7, qw = -7;
  const spe_status sq = spe_max_pool2d_output_size(p.h, p.w, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, &qh, &qw);
  const bool size_ok = ho > 0 && wo > 0 ? sq == SPE_OK && qh == ho && qw == wo
                                        : sq == BAD && std::strlen(spe_last_error()) > 0;
  record(size_ok, name + "-output-size",
         fmt("status %d, %dx%d, torch %lldx%lld", int(sq), qh, qw, (long long)ho, (long long)wo));
  const size_t in_n = size_t(std::max(p.n, 0)) * std::max(p.c, 0) * std::max(p.h, 0) * std::max(p.w, 0);
  const size_t out_n = valid ? size_t(p.n) * p.c * ho * wo : 0;
  Guarded x(in_n), y(out_n);
  Lcg rng(seed_of(name));
  for (size_t i = 0; i < in_n; ++i)
    x.data()[i] = nans && rng.chance(0.1) ? std::numeric_limits<float>::quiet_NaN() : rng.sym(3.0f);
  y.fill(-12345.0f);
  const spe_status st = spe_max_pool2d(x.data(), p.n, p.c, p.h, p.w, p.kh, p.kw, p.sh, p.sw,
                                       p.ph, p.pw, y.data());
  if (!valid) {
    record(st == BAD && std::strlen(spe_last_error()) > 0, name + "-rejected",
           fmt("status %d (torch rejects), '%s'", int(st), spe_last_error()));
    return;
  }
  std::string err = st == SPE_OK ? "" : fmt("status %d: %s", int(st), spe_last_error());
  const std::vector<float> ref =
      ref_max_pool(x.data(), p.n, p.c, p.h, p.w, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw);
  for (size_t i = 0; i < ref.size() && err.empty(); ++i) {
    const float a = y.data()[i], b = ref[i];
    if (!(a == b || (std::isnan(a) && std::isnan(b))))
      err = fmt("y[%zu] = %g, reference %g", i, double(a), double(b));
  }
  record(err.empty(), name, err);
}

void pool_torch_rules() {
  const PoolCase cases[] = {
      {1, 2, 4, 4, 2, 2, 0, 2, 0, 0},        // stride 0: torch raises (the old SIGFPE)
      {1, 2, 4, 4, 2, 2, 2, 0, 0, 0},
      {1, 2, 4, 4, 2, 2, -1, 1, 0, 0},       // negative stride
      {1, 2, 2, 5, 3, 3, 2, 2, 0, 0},        // span -1: floor gives 0 rows (truncation gave 1)
      {1, 2, 5, 2, 3, 3, 2, 2, 0, 0},
      {1, 2, 1, 1, 3, 3, 2, 2, 0, 0},
      {1, 2, 2, 4, 3, 3, 2, 2, 1, 1},        // the same with padding: valid
      {1, 2, 4, 4, 2, 2, 1, 1, 1, 1},        // pad == k/2 for an even kernel: output 5x5
      {1, 2, 4, 4, 3, 3, 1, 1, 2, 1},        // pad above half the kernel
      {1, 2, 4, 4, 0, 2, 1, 1, 0, 0},        // zero kernel
      {1, 0, 4, 4, 2, 2, 2, 2, 0, 0},        // no channels
      {1, 2, 0, 4, 2, 2, 2, 2, 0, 0},        // empty plane
      {0, 2, 4, 4, 2, 2, 2, 2, 0, 0},        // empty batch: valid, nothing to do
      {-1, 2, 4, 4, 2, 2, 2, 2, 0, 0},
      {1, 2, 1, 1, kI32Max, kI32Max, 1, 1, kI32Max / 2, kI32Max / 2},  // valid in torch: 1x1
      {1, 2, 3, 3, 2, 2, kI32Max, kI32Max, 0, 0},                     // huge stride: 1x1
      {1, 2, 3, 3, 2, 2, kI32Max, kI32Max, 1, 1},
      {1, 2, 3, 3, kI32Max, 2, 1, 1, 0, 0},                           // kernel past the input
      {1, 2, 4, 4, 2, 2, 1, 1, kI32Max, 0},
      {1, 2, 4, 4, std::numeric_limits<int32_t>::min(), 2, 1, 1, 0, 0},
      {2, 3, 9, 7, 3, 2, 2, 3, 1, 1},
      {1, 1, 7, 1, 1, 7, 3, 1, 0, 3},
  };
  int i = 0;
  for (const PoolCase& p : cases) {
    const std::string name = fmt("maxpool-torch-%02d-n%dc%d-%dx%d-k%dx%d-s%dx%d-p%dx%d", i++, p.n,
                                 p.c, p.h, p.w, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw);
    check_pool(p, name, false);
  }
  // NaN wins wherever it is (torch: `val > max || isnan(val)`), at 1 and 3 threads
  for (int t : {1, 3}) {
    spe_set_num_threads(t);
    check_pool({2, 5, 11, 13, 3, 3, 2, 2, 1, 1}, fmt("maxpool-nan-propagates-t%d", t), true);
    check_pool({1, 9, 6, 17, 2, 5, 1, 3, 1, 2}, fmt("maxpool-nan-propagates-asym-t%d", t), true);
  }
}

// ------------------------------------------------------------------------------ layers

struct TestLayer {
  Geom g{};
  std::vector<float> w, bias;
  spe_sparse_conv* conv = nullptr;
  ~TestLayer() { spe_sparse_conv_destroy(conv); }
};

// A half-sparse layer (unstructured mask, groups of 4 rows) with bias and ReLU.
bool make_layer(TestLayer* l, const Geom& g, const char* isa, const std::string& seed) {
  Lcg rng(seed_of(seed));
  l->g = g;
  const int ncols = g.c * g.kh * g.kw;
  l->w.assign(size_t(g.o) * ncols, 0.0f);
  for (float& v : l->w) v = rng.chance(0.5) ? rng.sym(1.0f) : 0.0f;
  for (int o = 0; o < g.o; ++o) l->bias.push_back(rng.sym(1.0f));
  std::vector<int> heights;
  for (int left = g.o; left > 0; left -= 4) heights.push_back(std::min(4, left));
  const Packed p = pack(l->w, ncols, heights);
  const spe_conv_params params = {g.o, g.c, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw};
  return spe_sparse_conv_create(&params, int32_t(p.row0.size()), p.row0.data(), p.rows.data(),
                                p.ptr.data(), p.col.data(), p.values.data(), l->bias.data(),
                                SPE_ACT_RELU, isa, &l->conv) == SPE_OK;
}

// Starts check `name` on a new "auto" layer of geometry g; false (recorded as the check's
// failure) if the layer cannot be made.
bool begin_with_layer(const std::string& name, TestLayer* l, const Geom& g) {
  set_current(name);
  if (make_layer(l, g, "auto", name)) return true;
  record(false, name, spe_last_error());
  return false;
}

std::vector<float> random_input(size_t n, const std::string& seed) {
  Lcg rng(seed_of(seed));
  std::vector<float> x(n);
  for (float& v : x) v = rng.sym(2.0f);
  return x;
}

// ------------------------------------------------------------------------------ huge geometries

void huge_geometries() {
  set_current("huge-geometries");
  float dummy[4] = {};  // never read: every call below must be refused before touching memory
  {
    TestLayer l;
    const bool made = make_layer(&l, {4, 4, 3, 3, 1, 1, 1, 1, 1, 1}, "auto", "huge-3x3");
    for (const auto& hw : {std::pair<int, int>{65536, 65536}, {kI32Max, kI32Max}, {1, kI32Max},
                           {46341, 11586}}) {
      for (int n : {0, 1}) {
        const std::string name = fmt("huge-3x3-input-%dx%d-n%d", hw.first, hw.second, n);
        set_current(name);
        const spe_status st = made ? spe_sparse_conv_run(l.conv, dummy, n, hw.first, hw.second, nullptr, dummy)
                                   : SPE_ERR_INTERNAL;
        record(st == BAD && std::strstr(spe_last_error(), "too large"), name,
               fmt("status %d, '%s'", int(st), spe_last_error()));
      }
    }
  }
  {
    // 1x1 stride 1: reads x directly, whose C*H*W must fit the int32 offsets too
    TestLayer l;
    const bool made = make_layer(&l, {4, 2, 1, 1, 1, 1, 0, 0, 1, 1}, "auto", "huge-1x1");
    const spe_status st = made ? spe_sparse_conv_run(l.conv, dummy, 1, 46341, 23171, nullptr, dummy)
                               : SPE_ERR_INTERNAL;
    record(st == BAD && std::strstr(spe_last_error(), "too large"), "huge-1x1-direct-input",
           fmt("status %d, '%s'", int(st), spe_last_error()));
  }
  {
    // a padding of 2^30: the output of a 1x1 image does not fit int32
    TestLayer l;
    const bool made = make_layer(&l, {2, 1, 1, 1, 1, 1, 1 << 30, 1 << 30, 1, 1}, "auto", "huge-pad");
    int32_t ho = -1, wo = -1;
    if (made) spe_sparse_conv_output_size(l.conv, 1, 1, &ho, &wo);
    const spe_status st = made ? spe_sparse_conv_run(l.conv, dummy, 1, 1, 1, nullptr, dummy) : SPE_ERR_INTERNAL;
    record(made && ho == 0 && wo == 0 && st == BAD && std::strstr(spe_last_error(), "too large"),
           "huge-padding-output", fmt("output %dx%d, status %d, '%s'", ho, wo, int(st), spe_last_error()));
  }
  {
    // out_channels 2^31 - 1 with one group: refused before anything of that size is allocated
    const spe_conv_params p = {kI32Max, 1, 1, 1, 1, 1, 0, 0, 1, 1};
    const int32_t row0 = 0, rows = 1, col = 0;
    const int64_t ptr[2] = {0, 1};
    const float v = 1.0f;
    spe_sparse_conv* c = nullptr;
    const spe_status st = spe_sparse_conv_create(&p, 1, &row0, &rows, ptr, &col, &v, nullptr,
                                                 SPE_ACT_NONE, "scalar", &c);
    record(st == BAD && !c && std::strstr(spe_last_error(), "cannot cover"), "huge-out-channels-few-groups",
           fmt("status %d, '%s'", int(st), spe_last_error()));
    if (c) spe_sparse_conv_destroy(c);
  }
  {
    const spe_conv_params p = {2, 2, 3, 3, 1, 1, 1, 1, 1, 1};
    const std::vector<float> w(18, 1.0f);
    spe_depthwise_conv* c = nullptr;
    const bool made = spe_depthwise_conv_create(&p, w.data(), nullptr, SPE_ACT_NONE, "auto", &c) == SPE_OK;
    for (const auto& hw : {std::pair<int, int>{1, 1 << 28}, {1 << 28, 1}, {kI32Max, kI32Max}}) {
      const std::string name = fmt("huge-depthwise-input-%dx%d", hw.first, hw.second);
      const spe_status st = made ? spe_depthwise_conv_run(c, dummy, 1, hw.first, hw.second, nullptr, dummy)
                                 : SPE_ERR_INTERNAL;
      record(st == BAD && std::strstr(spe_last_error(), "too large"), name,
             fmt("status %d, '%s'", int(st), spe_last_error()));
    }
    spe_depthwise_conv_destroy(c);
  }
}

// ------------------------------------------------------------------------------ NULL layers

// The accessors that return no status take a NULL layer without crashing: no output, an empty
// name, nothing to destroy; the calls that return a status refuse it.
void null_layers() {
  set_current("null-layers");
  int32_t ho = -1, wo = -1;
  spe_sparse_conv_output_size(nullptr, 8, 8, &ho, &wo);
  record(ho == 0 && wo == 0, "null-sparse-output-size", fmt("%dx%d", ho, wo));
  ho = wo = -1;
  spe_depthwise_conv_output_size(nullptr, 8, 8, &ho, &wo);
  record(ho == 0 && wo == 0, "null-depthwise-output-size", fmt("%dx%d", ho, wo));
  record(std::strcmp(spe_sparse_conv_kernel_name(nullptr), "") == 0 &&
             std::strcmp(spe_depthwise_conv_kernel_name(nullptr), "") == 0 &&
             spe_sparse_conv_nnz(nullptr) == 0,
         "null-names-nnz", "");
  spe_sparse_conv_destroy(nullptr);
  spe_depthwise_conv_destroy(nullptr);
  float buf[4] = {};
  record(spe_sparse_conv_run(nullptr, buf, 1, 1, 1, nullptr, buf) == BAD &&
             spe_depthwise_conv_run(nullptr, buf, 1, 1, 1, nullptr, buf) == BAD,
         "null-run", spe_last_error());
}

// ------------------------------------------------------------------------------ threads

// Several threads run one layer on inputs of different sizes at once; each result must equal,
// bit for bit, the layer's result for that input run alone.
void threads_share_a_layer(bool quick) {
  const std::string name = "threads-share-a-layer";
  TestLayer l;
  if (!begin_with_layer(name, &l, {12, 5, 3, 3, 2, 1, 1, 1, 1, 1})) return;
  const std::pair<int, int> sizes[] = {{13, 11}, {7, 9}, {13, 11}, {20, 6}};
  std::vector<std::vector<float>> xs, want;
  spe_set_num_threads(2);
  for (const auto& hw : sizes) {
    const int ho = int(out_dim(hw.first, 1, 1, 3, 2)), wo = int(out_dim(hw.second, 1, 1, 3, 1));
    xs.push_back(random_input(size_t(2) * 5 * hw.first * hw.second, fmt("%s-%d", name.c_str(), int(xs.size()))));
    want.emplace_back(size_t(2) * 12 * ho * wo);
    spe_sparse_conv_run(l.conv, xs.back().data(), 2, hw.first, hw.second, nullptr, want.back().data());
  }
  std::atomic<int> bad{0};
  const int iters = quick ? 40 : 150;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < iters; ++i) {
        const int k = (t + i) % 4;
        std::vector<float> y(want[k].size(), -1.0f);
        const spe_status st = spe_sparse_conv_run(l.conv, xs[k].data(), 2, sizes[k].first,
                                                  sizes[k].second, nullptr, y.data());
        if (st != SPE_OK || std::memcmp(y.data(), want[k].data(), y.size() * 4) != 0) bad++;
      }
    });
  for (auto& t : ts) t.join();
  record(bad.load() == 0, name, fmt("%d of %d calls differ from the layer's lone result", bad.load(), 4 * iters));
}

// Forks while another thread is inside a layer: the child must run that layer (and another
// one) correctly within an alarm's time. A few forks, so at least one lands mid-call.
void fork_while_busy(bool quick) {
  const std::string name = "fork-while-another-thread-is-inside-a-layer";
  TestLayer l;
  if (!begin_with_layer(name, &l, {32, 16, 3, 3, 1, 1, 1, 1, 1, 1})) return;
  const int h = 28, w = 30;
  const std::vector<float> x = random_input(size_t(16) * h * w, name);
  std::vector<float> want(size_t(32) * h * w);
  spe_set_num_threads(2);
  spe_sparse_conv_run(l.conv, x.data(), 1, h, w, nullptr, want.data());
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0};
  std::thread busy([&] {
    std::vector<float> y(want.size());
    while (!stop.load()) {
      spe_sparse_conv_run(l.conv, x.data(), 1, h, w, nullptr, y.data());
      calls++;
    }
  });
  while (calls.load() < 2) std::this_thread::yield();
  const int forks = quick ? 4 : 10;
  std::string err;
  for (int f = 0; f < forks && err.empty(); ++f) {
    const long before = calls.load();
    while (calls.load() == before) std::this_thread::yield();  // the busy thread is mid-loop
    const pid_t pid = fork();
    if (pid == 0) {
      alarm(20);  // a hang kills the child (SIGALRM) instead of blocking the runner
      std::vector<float> y(want.size(), -1.0f);
      const spe_status st = spe_sparse_conv_run(l.conv, x.data(), 1, h, w, nullptr, y.data());
      const bool same = st == SPE_OK && std::memcmp(y.data(), want.data(), y.size() * 4) == 0;
      _exit(same ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      err = WIFSIGNALED(status) ? fmt("fork %d: child killed by signal %d (hung: SIGALRM = %d)", f,
                                      WTERMSIG(status), SIGALRM)
                                : fmt("fork %d: child computed a wrong result", f);
  }
  stop.store(true);
  busy.join();
  record(err.empty(), name, err);
}

// An external parallel runtime (spe_set_parallel_runtime) runs the kernels' jobs: a layer
// gives, bit for bit, its result on the own pool, whether the runtime runs every task on its
// threads, fails without running any, or reports a silly thread count; the runtime's count is
// the kernels' count while installed; uninstalling brings the own pool back.
struct FakeRuntime {
  int threads = 3;
  bool fail = false;
  std::atomic<int> launches{0}, tasks{0};
};

int32_t fake_launch(spe_task_fn body, void* job, void* ctx) {
  auto* rt = static_cast<FakeRuntime*>(ctx);
  rt->launches++;
  if (rt->fail) return -1;
  std::vector<std::thread> ts;
  for (int t = 1; t < rt->threads; ++t) ts.emplace_back([&, t] { rt->tasks++; body(t, job); });
  rt->tasks++;
  body(0, job);
  for (auto& t : ts) t.join();
  return 0;
}

int32_t fake_threads(void* ctx) { return static_cast<FakeRuntime*>(ctx)->threads; }

void external_runtime() {
  const std::string name = "external-parallel-runtime";
  TestLayer l;
  if (!begin_with_layer(name, &l, {24, 16, 3, 3, 1, 1, 1, 1, 1, 1})) return;
  const int h = 21, w = 19;
  const std::vector<float> x = random_input(size_t(16) * h * w, name);
  std::vector<float> want(size_t(24) * h * w);
  spe_set_num_threads(2);
  spe_sparse_conv_run(l.conv, x.data(), 1, h, w, nullptr, want.data());
  auto same = [&] {
    std::vector<float> y(want.size(), -1.0f);
    return spe_sparse_conv_run(l.conv, x.data(), 1, h, w, nullptr, y.data()) == SPE_OK &&
           std::memcmp(y.data(), want.data(), y.size() * 4) == 0;
  };
  FakeRuntime rt;
  const spe_parallel_runtime spec{fake_launch, fake_threads, &rt};
  record(spe_set_parallel_runtime(&spec) == SPE_OK && spe_get_num_threads() == 3 && same() &&
             rt.launches.load() > 0 && rt.tasks.load() == 3 * rt.launches.load(),
         name + "-runs-tasks",
         fmt("threads %d, %d launches, %d tasks", int(spe_get_num_threads()), rt.launches.load(),
             rt.tasks.load()));
  if (!g_no_fork) {  // the child has none of the runtime's threads: the kernels' own pool
    rt.launches = 0;
    const pid_t pid = fork();
    if (pid == 0) {
      alarm(20);
      _exit(spe_get_num_threads() == 2 && same() && rt.launches.load() == 0 ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    record(WIFEXITED(status) && WEXITSTATUS(status) == 0, name + "-forked-child",
           fmt("child status %d", status));
  }
  rt.fail = true;
  record(same(), name + "-failed-launch", "a launch that runs nothing must leave the caller the job");
  rt.fail = false;
  rt.threads = -5;
  record(spe_get_num_threads() == 1 && same(), name + "-bad-count",
         fmt("threads %d", int(spe_get_num_threads())));
  const spe_parallel_runtime half{fake_launch, nullptr, &rt};
  record(spe_set_parallel_runtime(&half) == BAD && std::strlen(spe_last_error()) > 0,
         name + "-no-num-threads", spe_last_error());
  record(spe_set_parallel_runtime(nullptr) == SPE_OK && spe_get_num_threads() == 2 && same(),
         name + "-uninstalled", fmt("threads %d", int(spe_get_num_threads())));
}

// ------------------------------------------------------------------------------ memory limits

#if defined(__SANITIZE_ADDRESS__)
void out_of_memory() {}  // ASan reserves terabytes of shadow memory: no RLIMIT_AS under it
#else

// Virtual memory in use, bytes (first field of /proc/self/statm, in pages).
int64_t vm_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  long pages = 0;
  if (!f || std::fscanf(f, "%ld", &pages) != 1) pages = 0;
  if (f) std::fclose(f);
  return int64_t(pages) * sysconf(_SC_PAGESIZE);
}

// Untouched anonymous memory: address space only, every page reads as zero.
float* reserve(size_t floats) {
  void* m = mmap(nullptr, floats * 4, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return m == MAP_FAILED ? nullptr : static_cast<float*>(m);
}

// In the child: each failed check prints a FAIL line; returns the number failed.
int oom_checks() {
  int failed = 0;
  auto check = [&](bool ok, const char* what, spe_status st) {
    if (!ok) {
      std::printf("FAIL oom-%s: status %d, '%s'\n", what, int(st), spe_last_error());
      ++failed;
    }
  };
  auto oom = [](spe_status st) {
    return st == SPE_ERR_OUT_OF_MEMORY && std::strstr(spe_last_error(), "out of memory");
  };
  // Everything the calls read is reserved before the limit; what they allocate is not.
  spe_set_num_threads(2);
  TestLayer big;  // 8x8 stride 8: 64 phase planes, a workspace as large as the 8192^2 input
  make_layer(&big, {1, 1, 8, 8, 8, 8, 0, 0, 1, 1}, "auto", "oom-big");
  const size_t side = 8192;
  float* x = reserve(side * side);
  float* y = reserve((side / 8) * (side / 8));
  const spe_conv_params dwp = {2, 2, 3, 3, 1, 1, 1, 1, 1, 1};
  const std::vector<float> dww(18, 1.0f);
  spe_depthwise_conv* dw = nullptr;
  spe_depthwise_conv_create(&dwp, dww.data(), nullptr, SPE_ACT_NONE, "auto", &dw);
  const size_t wide = size_t(1) << 26;  // one 256 MB row per plane
  float* dx = reserve(2 * wide);
  float* dy = reserve(2 * wide);
  float* px = reserve(8 * wide);
  float* py = reserve(8 * (wide / 2));
  int32_t* cols = reinterpret_cast<int32_t*>(reserve(wide));
  float* vals = reserve(wide);
  std::vector<float> small_x(64, 1.0f), small_y(1, 0.0f);
  spe_sparse_conv_run(big.conv, small_x.data(), 1, 8, 8, nullptr, small_y.data());  // warm
  if (!x || !y || !dx || !dy || !px || !py || !cols || !vals || !big.conv || !dw) {
    std::printf("FAIL oom-setup: could not reserve the inputs\n");
    return 1;
  }
  const rlim_t limit = rlim_t(vm_bytes() + (96 << 20));
  const rlimit rl = {limit, limit};
  if (setrlimit(RLIMIT_AS, &rl) != 0) {
    std::printf("FAIL oom-setup: setrlimit failed\n");
    return 1;
  }
  if (void* probe = std::malloc(size_t(256) << 20)) {  // e.g. qemu-user ignores RLIMIT_AS
    std::free(probe);
    std::printf("skip oom checks: RLIMIT_AS is not enforced here\n");
    return 0;
  }
  spe_status st = spe_sparse_conv_run(big.conv, x, 1, int(side), int(side), nullptr, y);
  check(oom(st), "sparse-conv-workspace", st);
  st = spe_sparse_conv_run(big.conv, small_x.data(), 1, 8, 8, nullptr, small_y.data());
  double want = big.bias[0];
  for (int i = 0; i < 64; ++i) want += big.w[i];
  check(st == SPE_OK && std::fabs(small_y[0] - std::max(want, 0.0)) < 1e-4, "sparse-conv-usable-after", st);
  {
    // copying a layer's 256 MB of entries (64M entries of column 0, one row)
    const spe_conv_params p = {1, 1, 1, 1, 1, 1, 0, 0, 1, 1};
    const int32_t row0 = 0, rows = 1;
    const int64_t ptr[2] = {0, int64_t(wide)};
    spe_sparse_conv* c = nullptr;
    st = spe_sparse_conv_create(&p, 1, &row0, &rows, ptr, cols, vals, nullptr, SPE_ACT_NONE, "auto", &c);
    check(oom(st) && !c, "sparse-conv-create", st);
  }
  {
    const spe_conv_params p = {kI32Max, 1, 1, 1, 1, 1, 0, 0, 1, 1};
    const int32_t row0 = 0, rows = 1, col = 0;
    const int64_t ptr[2] = {0, 1};
    const float v = 1.0f;
    spe_sparse_conv* c = nullptr;
    st = spe_sparse_conv_create(&p, 1, &row0, &rows, ptr, &col, &v, nullptr, SPE_ACT_NONE, "auto", &c);
    check(st == BAD && !c, "sparse-conv-create-huge-out-channels", st);
  }
  st = spe_depthwise_conv_run(dw, dx, 1, 1, int(wide), nullptr, dy);  // 2 planes: pool workers
  check(oom(st), "depthwise-row-buffers", st);
  st = spe_max_pool2d(px, 1, 8, 1, int(wide), 1, 2, 1, 2, 0, 0, py);  // 8 planes, 2 chunks
  check(oom(st), "max-pool-row", st);
  spe_set_num_threads(200);  // 8 MB of stack each: only some can start
  const int32_t got = spe_get_num_threads();
  st = spe_sparse_conv_run(big.conv, small_x.data(), 1, 8, 8, nullptr, small_y.data());
  check(got >= 1 && got < 200 && st == SPE_OK, "threads-beyond-the-limit", st);
  return failed;
}

// Runs oom_checks() in a child (so the limit stays there) and records its outcome.
void out_of_memory() {
  set_current("out-of-memory");
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(60);
    const int failed = oom_checks();
    std::fflush(stdout);
    _exit(std::min(failed, 100));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  record(WIFEXITED(status) && WEXITSTATUS(status) == 0, "out-of-memory-is-a-status",
         WIFSIGNALED(status) ? fmt("the child died of signal %d (an exception escaped: SIGABRT = %d)",
                                   WTERMSIG(status), SIGABRT)
                             : fmt("%d checks failed", WEXITSTATUS(status)));
}
#endif

}  // namespace

void robustness_cases(bool quick) {
  const int32_t threads = spe_get_num_threads();
  pool_torch_rules();
  huge_geometries();
  null_layers();
  threads_share_a_layer(quick);
  external_runtime();
  if (g_no_fork) {
    std::printf("skipped: the checks that fork (--no-fork)\n");
  } else {
    fork_while_busy(quick);
    out_of_memory();
  }
  spe_set_num_threads(threads);
}

}  // namespace spe_test
