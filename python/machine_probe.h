// A machine probe for benchmarks (see machine_probe.cc); not part of the kernels' C API.
#ifndef SPE_PYTHON_MACHINE_PROBE_H_
#define SPE_PYTHON_MACHINE_PROBE_H_
#include <cstdint>

namespace spe_probe {
// Nanoseconds per round trip of one cache line between two threads pinned to cpu_a and
// cpu_b (best of one run of `iters` trips; the caller takes a min over runs). Throws
// std::invalid_argument for CPUs this process may not run on.
double core_to_core_round_trip_ns(int cpu_a, int cpu_b, int64_t iters);
}  // namespace spe_probe
#endif
