"""One thread pool per compiled model, sized by one knob (issue P7.5).

An artifact whose layers run partly as generated TIR (on TVM's workers) and partly as the
engine's C++ kernels linked into model.so used to start a second pool, the kernels' own: two
sets of idle workers spinning for their next job on the same cores, and a model that ran 1.6x
slower in some processes than in others. Now the bridge installs TVM's pool as the kernels'
parallel runtime when model.so loads, so:
  - a process that loads and runs such an artifact starts no kernel worker thread (they are
    named "spe-worker"; the host runtime, which has no TVM pool, still starts them);
  - `engine.load(dir, threads=n)` sizes every layer's threads: the kernels report TVM's count;
  - the results are those of the optimized model at every thread count.
Each scenario runs in a fresh subprocess (the pools are per process).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("tvm")

BUILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    import torch
    from torch import nn
    torch.set_num_threads(1)
    import engine

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 32, 3, padding=1)
            self.c2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.dw = nn.Conv2d(64, 64, 3, padding=1, groups=64)
            self.c3 = nn.Conv2d(64, 64, 1)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            for c in (self.c1, self.c2, self.dw, self.c3):
                x = torch.relu(c(x))
            return self.fc(x.mean((2, 3)))

    torch.manual_seed(0)
    x = torch.randn(1, 3, 40, 40)
    opt = engine.optimize(Net().eval(), (x,), sparsity=0.6, measure=False, progress=False,
                          backends="native", threads=2)
    assert sum(c.backend == "native" and c.scheme != "dense" for c in opt.plan.choices) >= 3
    opt.save(sys.argv[1], overwrite=True)
    np.save(sys.argv[1] + ".x.npy", x.numpy())
    np.save(sys.argv[1] + ".y.npy", opt(x).detach().numpy())
    names = [open(f"/proc/self/task/{t}/comm").read().strip()
             for t in os.listdir("/proc/self/task")]
    print(names.count("spe-worker"))
""")

RUN = textwrap.dedent("""
    import os, sys
    import numpy as np
    import engine
    d = sys.argv[1]
    x, want = np.load(d + ".x.npy"), np.load(d + ".y.npy")
    rows = []
    for threads in (2, 1, 2):   # lowered and raised again within the pool's size
        art = engine.load(d, threads=threads)
        import tvm
        kernels_threads = int(tvm.get_global_func("spe.v1.num_threads")())
        for _ in range(20):
            y = art(x)
        names = [open(f"/proc/self/task/{t}/comm").read().strip()
                 for t in os.listdir("/proc/self/task")]
        rows.append(f"{threads},{art.threads},{kernels_threads},{names.count('spe-worker')},"
                    f"{float(np.abs(y - want).max())}")
    print(" ".join(rows))
""")


def _python(script: str, *args) -> str:
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(artifact dir, kernel workers the host runtime started while optimizing and running)."""
    d = tmp_path_factory.mktemp("one-pool") / "art"
    return d, int(_python(BUILD, d))


def test_host_runtime_keeps_its_own_workers(built):
    # the host runtime has no TVM pool: the kernels' own pool serves it (one worker beside
    # the caller at threads=2), and the artifact check below would see such workers by name
    assert built[1] == 1


def test_artifact_kernels_run_on_tvm_pool(built):
    import os
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs (TVM's pool cannot grow past the CPUs)")
    for row in _python(RUN, built[0]).split():
        threads, tvm_threads, kernel_threads, spe_workers, err = row.split(",")
        assert int(tvm_threads) == int(threads), row
        assert int(kernel_threads) == int(threads), f"kernels ignore the count load set: {row}"
        assert int(spe_workers) == 0, f"the kernels started their own pool beside TVM's: {row}"
        assert float(err) < 1e-4, row


def test_load_refuses_bad_thread_counts(built):
    import engine
    from engine.errors import ConfigError
    for bad in (0, -1, 2.0, True, "2", 10 ** 6):
        with pytest.raises(ConfigError, match="threads must be an int from 1 to 1024"):
            engine.load(built[0], threads=bad)
