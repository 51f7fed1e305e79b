// Persistent worker threads that spin briefly, then sleep, between jobs: back-to-back layer
// calls at batch 1 then cost microseconds to dispatch, and an idle process burns no CPU.
#include "threadpool.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <new>

namespace spe {

ThreadPool& ThreadPool::global() {
  static ThreadPool* pool = new ThreadPool();  // leaked on purpose: no join at static exit
  return *pool;
}

ThreadPool::ThreadPool() {
  // Workers start on the first parallel job, not here: a process whose kernels run on an
  // installed runtime (set_runtime) never starts them.
  unsigned hw = std::thread::hardware_concurrency();
  n_threads_ = std::clamp(hw == 0 ? 1 : int(hw), 1, kMaxThreads);
  respawn_ = n_threads_ > 1;
  pthread_atfork(nullptr, nullptr, [] { ThreadPool::global().reset_after_fork(); });
}

int ThreadPool::num_threads() const {
  if (runtime_.launch != nullptr)
    return std::clamp(int(runtime_.num_threads(runtime_.ctx)), 1, kMaxThreads);
  return n_threads_;
}

void ThreadPool::set_runtime(const spe_parallel_runtime* rt) {
  std::lock_guard<std::mutex> call(call_mu_);
  if (rt != nullptr) {
    stop_workers();
    runtime_ = *rt;
    return;
  }
  runtime_ = spe_parallel_runtime{};
  respawn_ = n_threads_ > 1;  // the own workers start again on the next job
}

int32_t ThreadPool::runtime_task(int32_t task, void* pool) {
  auto* self = static_cast<ThreadPool*>(pool);
  // a runtime that runs more tasks (or numbers them oddly) only makes some start elsewhere
  self->run_chunks(task > 0 ? int(task % self->slots_) : 0);  // catches what a chunk throws
  return 0;
}

// The job is set up as for the own workers; every runtime thread pulls chunks until none is
// left. Then the caller pulls any chunk left over, which is all of them if the runtime ran
// nothing (launch failed or ran no task): the job completes whatever the runtime did.
void ThreadPool::run_on_runtime() {
  runtime_.launch(&ThreadPool::runtime_task, this, runtime_.ctx);
  run_chunks(0);
}

void ThreadPool::reset_after_fork() {
  // Only the forking thread survives: mutexes may be held by threads that are gone, and the
  // std::thread objects name threads that do not exist here (joining or destroying them would
  // hang or terminate), so leak them and start clean.
  new (&call_mu_) std::mutex();
  new (&mu_) std::mutex();
  new (&cv_) std::condition_variable();
  new std::vector<std::thread>(std::move(workers_));
  workers_ = std::vector<std::thread>();
  active_.store(0);
  failed_.store(false);
  new (&error_) std::exception_ptr();  // leaked if set: it may be mid-write by a dead thread
  stop_ = false;
  fn_ = nullptr;
  // An installed runtime may not survive fork (TVM's pool does not: the child's launches wait
  // for workers that are gone), so the child runs the kernels on workers of its own.
  runtime_ = spe_parallel_runtime{};
  respawn_ = n_threads_ > 1;
}

void ThreadPool::spawn_workers() {
  // The generation is read here, not in the new thread: a job posted before the thread first
  // runs must still count as unseen.
  const uint64_t gen = generation_.load();
  respawn_ = false;
  try {
    workers_.reserve(size_t(n_threads_ - 1));
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i, gen] { worker_loop(i, gen); });
  } catch (...) {  // out of memory or of threads (std::system_error): run with what started
    n_threads_ = int(workers_.size()) + 1;
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  stop_ = false;
}

void ThreadPool::set_num_threads(int n) {
  std::lock_guard<std::mutex> call(call_mu_);
  n = std::clamp(n, 1, kMaxThreads);
  if (n == n_threads_ && int(workers_.size()) == n - 1 && !respawn_) return;
  stop_workers();
  n_threads_ = n;
  if (runtime_.launch == nullptr) spawn_workers();
  else respawn_ = false;  // spawned when the runtime is uninstalled
}

void ThreadPool::start_job(int64_t n, int64_t grain, int slots, const RangeFn& fn) {
  if (slots > cursor_cap_) {
    cursors_.reset(new Cursor[size_t(slots)]);
    cursor_cap_ = slots;
  }
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  slots_ = slots;
  // slot t: chunks [t * q + min(t, r), ...) where chunks = q * slots + r (the first r one more)
  const int64_t chunks = (n - 1) / grain + 1, q = chunks / slots, r = chunks % slots;
  for (int t = 0; t < slots; ++t) {
    const int64_t b = t * q + std::min<int64_t>(t, r);
    cursors_[t].next.store(b, std::memory_order_relaxed);
    cursors_[t].end = b + q + (t < r ? 1 : 0);
  }
}

void ThreadPool::run_chunks(int slot) {
  for (int i = 0; i < slots_; ++i) {  // its own part first, then the others' leftovers
    Cursor& cur = cursors_[(slot + i) % slots_];
    for (;;) {
      const int64_t c = cur.next.fetch_add(1, std::memory_order_relaxed);
      if (c >= cur.end) break;
      try {
        (*fn_)(c * grain_, std::min(n_, (c + 1) * grain_));
      } catch (...) {
        // The first thread to fail keeps its exception; every thread then runs out of chunks.
        bool expected = false;
        if (failed_.compare_exchange_strong(expected, true)) error_ = std::current_exception();
        for (int t = 0; t < slots_; ++t) cursors_[t].next.store(cursors_[t].end);
      }
    }
  }
}

void ThreadPool::worker_loop(int slot, uint64_t seen) {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), "spe-worker");  // what profilers and top -H show
#endif
  for (;;) {
    // Spin ~50 us for the next job before sleeping, looking at the generation after every
    // pause (one pause is ~140 cycles on Intel since Skylake-SP: 64 between looks delayed
    // each job's start by up to 3 us, more than a small layer's whole time) and at the clock
    // every 64.
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    for (unsigned spins = 1; generation_.load(std::memory_order_acquire) == seen; ++spins) {
      cpu_relax();
      if (spins % 64 == 0 && std::chrono::steady_clock::now() >= until) break;
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return generation_.load() != seen; });
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_) return;
    run_chunks(slot);
    active_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const RangeFn& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  std::lock_guard<std::mutex> call(call_mu_);
  const bool external = runtime_.launch != nullptr;
  if (respawn_ && !external) spawn_workers();
  if (n <= grain || (external ? num_threads() == 1 : workers_.empty())) {
    // on the caller alone: exceptions propagate as is
    for (int64_t b = 0; b < n; b += grain) fn(b, std::min(n, b + grain));
    return;
  }
  start_job(n, grain, external ? num_threads() : int(workers_.size()) + 1, fn);
  if (external) {
    run_on_runtime();
  } else {
    active_.store(int(workers_.size()));
    {
      std::lock_guard<std::mutex> lk(mu_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    run_chunks(0);
    while (active_.load(std::memory_order_acquire) != 0) cpu_relax();
  }
  fn_ = nullptr;
  if (failed_.load(std::memory_order_acquire)) {
    std::exception_ptr e = std::move(error_);
    error_ = nullptr;
    failed_.store(false);
    std::rethrow_exception(e);
  }
}

}  // namespace spe
