"""The randomized geometry fuzz of every kernel family, built with AddressSanitizer and UBSan.

kernels/tests/fuzz.cc draws sparse conv / linear (every ISA, group heights 1..8 and mixed),
depthwise and max-pool geometries from a fixed seed and checks each against the plain-loop
references of kernels/tests/test_support.h, and that invalid geometries and calls return an
error. CMake's SPE_SANITIZE option compiles the kernels and the fuzz with
-fsanitize=address,undefined -fno-sanitize-recover=all, so an out-of-bounds access, a signed
overflow or any other undefined behaviour aborts the run with the case's replay command.

The kernel test runner (kernel_tests.cc, --quick) runs under the same build.

The build lives in build/fuzz-sanitize (git-ignored) and is reused while up to date (CMake and
ninja rebuild only what changed); a lock keeps two test runs from building it at once. The
kernels compile at -O1 there (CMakeLists.txt: at -O3 the instrumented templates took gcc over
6 minutes a file): about 3 minutes to build from scratch on 2 cores, then 35 s for the 12,000
cases and 30 s for the runner.
"""
from __future__ import annotations

import fcntl
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "fuzz-sanitize"
SEED = 20250917
CASES = 12000
MIN_CASES = 10000
SUMMARY = re.compile(r"fuzz: (\d+) cases, (\d+) failed, ([\d.]+) s, seed (\d+)")


def _run(cmd, timeout) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sanitized_fuzz() -> Path:
    if not shutil.which("cmake"):
        pytest.fail("cmake not found: it builds the kernels (scripts/install.sh installs it)")
    BUILD.mkdir(parents=True, exist_ok=True)
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    with open(BUILD.parent / "fuzz-sanitize.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        conf = _run(["cmake", "-S", ROOT, "-B", BUILD, *gen, "-DCMAKE_BUILD_TYPE=Release",
                     "-DSPE_BUILD_PYTHON=OFF", "-DSPE_BUILD_TESTS=ON", "-DSPE_SANITIZE=ON"],
                    timeout=120)
        assert conf.returncode == 0, conf.stdout[-3000:] + conf.stderr[-3000:]
        build = _run(["cmake", "--build", BUILD, "--target", "spe_kernel_fuzz", "spe_kernel_tests",
                      "-j", "2"], timeout=900)
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return BUILD / "spe_kernel_fuzz"


def test_fuzz_under_address_and_undefined_sanitizers(sanitized_fuzz):
    cmd = [sanitized_fuzz, "--seed", SEED, "--cases", CASES, "--time-limit", 240]
    proc = _run(cmd, timeout=600)
    if proc.returncode != 0 and "fuzz seed" not in proc.stdout and shutil.which("setarch"):
        # ASan died before the first case: on kernels with many bits of mmap randomisation its
        # shadow memory may not fit; without address randomisation it does.
        proc = _run(["setarch", platform.machine(), "-R", *cmd], timeout=600)
    lines = proc.stdout.strip().splitlines()
    failures = "\n".join(l for l in lines if l.startswith("FAIL"))
    # a sanitizer report or a crash names the case on stderr, then aborts
    assert proc.returncode == 0, (f"exit {proc.returncode}\n{failures}\n"
                                  f"{proc.stderr[-6000:]}")
    m = SUMMARY.search(proc.stdout)
    assert m, proc.stdout[-2000:]
    cases, failed = int(m.group(1)), int(m.group(2))
    assert failed == 0, failures
    assert int(m.group(4)) == SEED
    assert cases >= MIN_CASES, (f"only {cases} cases in the time limit ({m.group(3)} s): "
                                "the fuzz got too slow for CI")
    for family in ("sparse_conv", "linear", "depthwise", "max_pool", "dense_conv"):
        assert re.search(rf"{family} \d+", proc.stdout), f"family {family} did not run"


def test_kernel_runner_under_sanitizers(sanitized_fuzz):
    """The runner's sweeps and robustness checks (threads, fork while busy) under ASan/UBSan
    too (its memory-limit check skips itself there: ASan reserves terabytes of shadow)."""
    proc = _run([sanitized_fuzz.parent / "spe_kernel_tests", "--quick"], timeout=600)
    last = proc.stdout.strip().splitlines()[-1:] or [""]
    failures = "\n".join(l for l in proc.stdout.splitlines() if l.startswith("FAIL"))
    assert proc.returncode == 0 and re.fullmatch(r"\d+ passed, 0 failed", last[0]), (
        f"exit {proc.returncode}\n{failures}\n{proc.stderr[-6000:]}")


def test_fuzz_rejects_unknown_options(sanitized_fuzz):
    proc = _run([sanitized_fuzz, "--no-such-flag"], timeout=60)
    assert proc.returncode == 2 and "usage" in proc.stderr
