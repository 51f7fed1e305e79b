"""Failures inside the native kernels reach Python as exceptions with the kernel's message
(issue P5.5): an allocation failure is a MemoryError (it used to be a std::bad_alloc escaping
the C API: terminate, exit 134), a geometry too large for the kernels' int32 offsets a
ValueError naming it (it used to allocate garbage or compute wrong offsets), and the process
survives both. Each scenario runs in a subprocess: on the code before the fix it aborts or
tries to allocate tens of GB, which must not take the test run (or the machine) down.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

PRELUDE = textwrap.dedent("""
    import resource
    import numpy as np
    from engine import _kernels as K
    from engine.runtime.packing import pack

    def sparse(o, c, k, s=(1, 1), p=(0, 0)):
        w = np.random.default_rng(0).standard_normal((o, c, *k)).astype(np.float32)
        pk = pack(w, 1)
        return K.SparseConv(o, c, k, s, p, (1, 1), pk.group_row0, pk.group_rows, pk.group_ptr,
                            pk.entry_col, pk.values, None, "none", "auto")

    def raises(exc, text, f, *args):
        try:
            f(*args)
        except exc as e:
            assert text in str(e), (exc.__name__, str(e))
            return str(e)
        raise AssertionError(f"no {exc.__name__} ({text})")
""")

# Inputs are reserved before the address-space limit (np.zeros: untouched pages), so what
# fails is what the kernels allocate: the phase planes of an 8x8 stride-8 conv on 8192^2 (256
# MB), a depthwise layer's row buffers for 256 MB rows, a max pool's row (outputs small).
OUT_OF_MEMORY = PRELUDE + textwrap.dedent("""
    K.set_num_threads(2)
    big = sparse(1, 1, (8, 8), (8, 8))
    x = np.zeros((1, 1, 8192, 8192), np.float32)
    small = np.ones((1, 1, 8, 8), np.float32)
    want = big.run(small)
    # stride 64 along the rows: a small output, row buffers as wide as the input's rows
    dw = K.DepthwiseConv(2, (3, 3), (1, 64), (1, 1), (1, 1), np.ones((2, 1, 3, 3), np.float32))
    wide = np.zeros((1, 2, 1, 1 << 26), np.float32)
    rows = np.zeros((1, 8, 1, 1 << 26), np.float32)
    dw.run(np.ones((1, 2, 4, 130), np.float32))
    vm = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (vm + (160 << 20), vm + (160 << 20)))
    try:
        bytearray(256 << 20)
        print("skip: RLIMIT_AS not enforced")
        raise SystemExit(0)
    except MemoryError:
        pass
    print(raises(MemoryError, "out of memory", big.run, x))
    assert np.array_equal(big.run(small), want)        # the layer still works
    print(raises(MemoryError, "out of memory", dw.run, wide))
    print(raises(MemoryError, "out of memory", K.max_pool2d, rows, (1, 64), (1, 64), (0, 0)))
    print("ok")
""")


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)


def test_allocation_failures_are_memory_errors():
    proc = _run(OUT_OF_MEMORY)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    out = proc.stdout.strip().splitlines()
    if out and out[0].startswith("skip"):
        import pytest
        pytest.skip(out[0])
    assert out[-1] == "ok", proc.stdout
    assert "spe_sparse_conv_run: out of memory" in out[0]
    assert "spe_depthwise_conv_run: out of memory" in out[1]
    assert "spe_max_pool2d: out of memory" in out[2]


# Inputs whose phase planes (or, 1x1, the input itself) would exceed 2^31 floats, checked on
# empty batches (a zero-size array may have any dimensions); every one a ValueError naming the
# size, never an allocation.
HUGE = PRELUDE + textwrap.dedent("""
    conv = sparse(4, 4, (3, 3), p=(1, 1))
    for h, w in [(65536, 65536), (2**31 - 1, 3), (1, 2**31 - 1), (46341, 11586)]:
        print(raises(ValueError, "too large", conv.run, np.zeros((0, 4, h, w), np.float32)))
    direct = sparse(4, 2, (1, 1))
    print(raises(ValueError, "too large", direct.run, np.zeros((0, 2, 46341, 23171), np.float32)))
    print(raises(ValueError, "exceeds 2^31", conv.run, np.zeros((0, 4, 2**31, 3), np.float32)))
    padded = sparse(2, 1, (1, 1), p=(2**30, 2**30))
    print(raises(ValueError, "too large", padded.run, np.zeros((1, 1, 1, 1), np.float32)))
    dw = K.DepthwiseConv(2, (3, 3), (1, 1), (1, 1), (1, 1), np.ones((2, 1, 3, 3), np.float32))
    print(raises(ValueError, "too large", dw.run, np.zeros((0, 2, 1, 1 << 28), np.float32)))
    assert conv.run(np.ones((1, 4, 5, 5), np.float32)).shape == (1, 4, 5, 5)  # still usable
    print("ok")
""")


def test_huge_geometries_are_value_errors():
    proc = _run(HUGE)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    out = proc.stdout.strip().splitlines()
    assert out[-1] == "ok" and len(out) == 9, proc.stdout
    assert all("input" in line or "exceeds" in line for line in out[:-1]), proc.stdout


ABSURD_THREADS = PRELUDE + textwrap.dedent("""
    K.set_num_threads(10**6)  # clamped: a typo must not start a million threads
    assert 1 <= K.get_num_threads() <= 1024, K.get_num_threads()
    print(K.get_num_threads())
    conv = sparse(8, 4, (3, 3), p=(1, 1))
    assert conv.run(np.ones((1, 4, 6, 6), np.float32)).shape == (1, 8, 6, 6)
    print("ok")
""")


def test_absurd_thread_counts_are_clamped():
    proc = _run(ABSURD_THREADS)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert proc.stdout.strip().endswith("ok")
