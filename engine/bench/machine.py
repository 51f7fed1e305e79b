"""The state of the machine a benchmark runs on, recorded beside every timing.

On a shared cloud VM two things move under a benchmark: the load of other tenants, and where
the hypervisor has put the vCPUs. The second is invisible to the guest (no steal time, same
CPU model) yet decides how fast a layer-by-layer parallel model runs: at 2 threads each layer
reads activations the other thread wrote, and a cache line travels 6x farther when the two
vCPUs sit in different core complexes. Measured here (issue P7, AMD EPYC, 2 vCPUs): the same
ResNet-50 80% artifact ran 12.8 ms while the core-to-core round trip was 50 ns and 21.5 ms
while it was 330 ns, flipping every few seconds, within one process or between processes;
torch's sgemm scaled 1.9x from 1 to 2 threads in both states. So a timing without this probe
cannot say whether the engine or the machine was slow.
"""
from __future__ import annotations

import os


def core_to_core_ns(runs: int = 20, trips: int = 1000) -> float | None:
    """Cache-line round trip (ns) between the first two CPUs this process may use: the min
    over `runs` runs of `trips` trips (a preempted run only counts as slower). None on a
    single-CPU machine or without the kernels."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    from ..runtime.native import lib
    k = lib()
    return min(k.core_to_core_ns(cpus[0], cpus[1], trips) for _ in range(runs))
