// A small persistent thread pool for the kernels (no OpenMP: torch ships its own libgomp and two
// OpenMP runtimes in one process fight; Android builds get the same code).
//
// Or no pool of its own at all: a process that already has a parallel runtime (a TVM-compiled
// model: its generated layers run on TVM's workers) installs it with set_runtime(), and the
// kernels' chunks run on those same threads. Two pools whose idle workers spin for the next
// job steal the cores from each other on a small machine; one pool hands them over.
#ifndef SPE_COMMON_THREADPOOL_H_
#define SPE_COMMON_THREADPOOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "spe/spe.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace spe {

// The spin-wait hint (x86 pause, arm64 yield).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class ThreadPool {
 public:
  using RangeFn = std::function<void(int64_t begin, int64_t end)>;

  static ThreadPool& global();
  ~ThreadPool();

  // Total threads including the caller, clamped to [1, kMaxThreads] (a typo such as 10**6
  // must not try to start a million threads). Never throws: if the system refuses to start a
  // thread, the pool keeps the ones it could start.
  static constexpr int kMaxThreads = 1024;
  void set_num_threads(int n);
  int num_threads() const;

  // Calls fn on disjoint [begin, end) chunks of [0, n) of `grain` items each (the last may be
  // shorter), spread over the pool; the caller works too and returns when all chunks are done.
  // Calls serialise. Thread t of T first runs the t-th contiguous T-th of the chunks (the
  // caller the first), then helps with what others have left: a kernel that splits its work
  // into T equal parts gets them one per thread with no shared counter, and two layers split
  // alike leave each thread on the part of the data it wrote last.
  // An exception thrown by fn on any thread stops handing out chunks and is rethrown here, in
  // the caller, once every thread has left the job (an exception escaping a worker thread
  // would terminate the process).
  void parallel_for(int64_t n, int64_t grain, const RangeFn& fn);

  // Runs the kernels' jobs on an external runtime's threads from now on (nullptr: on this
  // pool's own workers again). The runtime's thread count is then the kernels' thread count
  // (num_threads(); set_num_threads() only sizes the own pool for when it is back). This pool's
  // workers are stopped while a runtime is installed.
  void set_runtime(const spe_parallel_runtime* rt);

  // In a forked child: the workers do not exist there; forget them (without joining) and
  // respawn on the next call. Registered with pthread_atfork.
  void reset_after_fork();

 private:
  ThreadPool();
  void worker_loop(int slot, uint64_t seen_generation);
  void stop_workers();
  void spawn_workers();
  void start_job(int64_t n, int64_t grain, int slots, const RangeFn& fn);
  void run_chunks(int slot);
  void run_on_runtime();
  static int32_t runtime_task(int32_t task, void* pool);

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex call_mu_;              // one parallel_for at a time
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_{0};      // workers still inside the current job
  bool stop_ = false;
  bool respawn_ = false;            // set in a forked child
  // current job: each slot (thread) has a contiguous part of the chunks, handed out by its
  // cursor (a cache line each: the owner's claims stay in its own cache)
  struct alignas(64) Cursor {
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  const RangeFn* fn_ = nullptr;
  int64_t n_ = 0, grain_ = 1;
  int slots_ = 0, cursor_cap_ = 0;
  std::unique_ptr<Cursor[]> cursors_;
  std::atomic<bool> failed_{false};  // a chunk threw; error_ holds the first exception
  std::exception_ptr error_;
  spe_parallel_runtime runtime_{};   // launch == nullptr: the own workers
};

}  // namespace spe
#endif  // SPE_COMMON_THREADPOOL_H_
