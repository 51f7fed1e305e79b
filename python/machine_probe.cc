// What a benchmark must know about the machine it runs on, beyond the CPU model: how far apart
// two CPUs are. On a cloud VM the hypervisor may place (and move, every few seconds) the vCPUs on
// cores that share an L3 or on cores in different core complexes; a layer-by-layer parallel
// model, whose threads read each other's activations at every layer, then runs up to 1.7x
// slower (issue P7: ResNet-50 80% at 2 threads, 12.8 ms at a 50 ns round trip, 21.5 ms at
// 330 ns), while a GEMM-bound benchmark barely notices. Benchmarks record this probe with
// every timing so a slow round can be told from a slow engine.
#include "machine_probe.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

namespace spe_probe {
namespace {

bool pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  return pthread_setaffinity_np(pthread_self(), sizeof s, &s) == 0;
}

struct alignas(64) Line {
  std::atomic<int64_t> v{0};
};

}  // namespace

double core_to_core_round_trip_ns(int cpu_a, int cpu_b, int64_t iters) {
  if (iters < 1 || iters > 100000000) throw std::invalid_argument("iters must be 1..1e8");
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
    throw std::runtime_error("sched_getaffinity failed");
  for (int c : {cpu_a, cpu_b})
    if (c < 0 || c >= CPU_SETSIZE || !CPU_ISSET(c, &allowed))
      throw std::invalid_argument("CPU " + std::to_string(c) + " is not one this process may run on");
  if (cpu_a == cpu_b) throw std::invalid_argument("give two different CPUs");
  Line line;
  std::atomic<bool> pinned{true};
  // The pong thread answers each odd value with the next even one; the caller times the trips.
  std::thread pong([&] {
    if (!pin(cpu_b)) pinned = false;
    for (int64_t i = 0; i < iters; ++i) {
      while (line.v.load(std::memory_order_acquire) != 2 * i + 1) {
        if (line.v.load(std::memory_order_relaxed) < 0) return;
      }
      line.v.store(2 * i + 2, std::memory_order_release);
    }
  });
  cpu_set_t old;
  sched_getaffinity(0, sizeof old, &old);
  if (!pin(cpu_a)) pinned = false;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iters && pinned; ++i) {
    line.v.store(2 * i + 1, std::memory_order_release);
    while (line.v.load(std::memory_order_acquire) != 2 * i + 2) {
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  if (!pinned) line.v.store(-1);
  pong.join();
  sched_setaffinity(0, sizeof old, &old);
  if (!pinned) throw std::runtime_error("could not pin the probe's threads");
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / double(iters);
}

}  // namespace spe_probe
