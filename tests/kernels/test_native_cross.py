"""The C++ kernels tested without Python in the loop, natively and as aarch64 under qemu.

Builds kernels/tests/kernel_tests.cc (CMake target spe_kernel_tests: the public C API and the
kernel lists, no Python) twice:
for the host, where it checks scalar / avx2 / avx512 as the CPU allows, and cross-compiled with
kernels/cmake/aarch64-linux-gnu.cmake, run under qemu-aarch64, where it checks scalar and NEON.
Each run compares every ISA variant, and every kernel the lists name for it, with plain-loop
reference convolutions (the block-sparse SpMM kernels and the direct depthwise kernels; every
asymmetric kernel / stride / padding / dilation combination up to 3) and ends with the line
`N passed, M failed`. The randomized
geometry fuzz (kernels/tests/fuzz.cc) runs under qemu too, on the NEON kernels. The aarch64
half is skipped only when the cross compiler or qemu is missing (scripts/install.sh installs
both). Under qemu the runner gets --no-fork: qemu-user cannot fork a multi-threaded guest
reliably (the host run covers the fork and memory-limit checks).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLCHAIN = ROOT / "kernels" / "cmake" / "aarch64-linux-gnu.cmake"
SYSROOT = "/usr/aarch64-linux-gnu"
QEMU = ["qemu-aarch64", "-L", SYSROOT]
SUMMARY = re.compile(r"(\d+) passed, (\d+) failed")
CASE_COUNTS = re.compile(r"(\d+) conv \+ (\d+) depthwise cases per ISA, (\d+) listed-kernel cases")
ELF_MACHINE_AARCH64 = 183

# Tools the aarch64 half needs -> the Debian package that provides each.
CROSS_TOOLS = {"aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu", "qemu-aarch64": "qemu-user"}


def _need(tool: str) -> None:
    if not shutil.which(tool):
        pytest.skip(f"{tool} not found: install the Debian package {CROSS_TOOLS[tool]} "
                    "(scripts/install.sh does)")


def _run(cmd, timeout, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kw)


def _build(build_dir: Path, *cmake_args: str) -> str:
    """Configures and builds spe_kernel_tests into build_dir (-j2); returns the compile log."""
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    conf = _run(["cmake", "-S", ROOT, "-B", build_dir, *gen, "-DCMAKE_BUILD_TYPE=Release",
                 "-DSPE_BUILD_PYTHON=OFF", "-DSPE_BUILD_TESTS=ON", *cmake_args], timeout=120)
    assert conf.returncode == 0, conf.stdout[-3000:] + conf.stderr[-3000:]
    build = _run(["cmake", "--build", build_dir, "--target", "spe_kernel_tests", "spe_kernel_fuzz",
                  "-j", "2"], timeout=300)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return build.stdout + build.stderr


def _check_output(proc: subprocess.CompletedProcess) -> tuple[list[str], int]:
    """Asserts a clean run (exit 0, last line `N passed, 0 failed`); returns (ISAs tested, N)."""
    out = proc.stdout
    lines = out.strip().splitlines()
    assert lines, proc.stderr[-2000:]
    m = SUMMARY.fullmatch(lines[-1])
    assert m, f"last line is not the summary: {lines[-1]!r}\n{proc.stderr[-2000:]}"
    passed, failed = int(m.group(1)), int(m.group(2))
    failures = "\n".join(l for l in lines if l.startswith("FAIL"))[:4000]
    assert failed == 0 and proc.returncode == 0, f"exit {proc.returncode}\n{failures}"
    isa_line = next(l for l in lines if l.startswith("isas tested:"))
    isas = isa_line.split(":", 1)[1].split("(")[0].split()
    counts = CASE_COUNTS.search(out)
    assert counts and int(counts.group(1)) >= 150 and int(counts.group(2)) >= 100, \
        "the runner did not report both sweeps (SpMM conv and depthwise)"
    # the per-kernel sweeps: at least the tile cases of 8 spmm and 5 depthwise kernels per ISA
    assert int(counts.group(3)) >= (8 * 4 + 5 * 4) * len(isas), counts.group(0)
    return isas, passed


@pytest.fixture(scope="module")
def host_runner(tmp_path_factory) -> Path:
    if not shutil.which("cmake"):
        pytest.fail("cmake not found: it builds the kernels (pip install cmake, or apt cmake)")
    build_dir = tmp_path_factory.mktemp("spe-native-host")
    _build(build_dir)
    return build_dir / "spe_kernel_tests"


@pytest.fixture(scope="module")
def arm64_build(tmp_path_factory) -> tuple[Path, str]:
    _need("aarch64-linux-gnu-g++")
    build_dir = tmp_path_factory.mktemp("spe-native-arm64")
    log = _build(build_dir, f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}")
    return build_dir, log


def test_host_runner_checks_every_available_isa(host_runner):
    isas, passed = _check_output(_run([host_runner], timeout=300))
    assert "scalar" in isas
    from engine import _kernels as K  # the Python build must agree on what this CPU runs
    assert sorted(isas) == sorted(K.available_isas())
    assert passed >= 200 * len(isas)


def test_runner_rejects_unknown_options(host_runner):
    proc = _run([host_runner, "--no-such-flag"], timeout=60)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_cross_build_is_aarch64_and_warning_free(arm64_build):
    build_dir, log = arm64_build
    exe = build_dir / "spe_kernel_tests"
    header = exe.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64
    # -Wall -Wextra over kernels/src and the runner: no warnings, no x86 intrinsics leaking in
    warnings = [l for l in log.splitlines() if "warning:" in l]
    assert warnings == [], "\n".join(warnings[:20])


def test_neon_matches_reference_under_qemu(arm64_build):
    _need("qemu-aarch64")
    build_dir, _ = arm64_build
    proc = _run([*QEMU, build_dir / "spe_kernel_tests", "--no-fork"], timeout=300)
    isas, passed = _check_output(proc)
    assert isas == ["scalar", "neon"], isas  # neon really ran, next to the reference
    assert passed >= 200 * len(isas)


def test_neon_fuzz_under_qemu(arm64_build):
    """Random geometries (asymmetric strides, tiny images, every group height) on NEON."""
    _need("qemu-aarch64")
    build_dir, _ = arm64_build
    proc = _run([*QEMU, build_dir / "spe_kernel_fuzz", "--isa", "neon", "--seed", "7",
                 "--cases", "1500"], timeout=300)
    failures = "\n".join(l for l in proc.stdout.splitlines() if l.startswith("FAIL"))
    assert proc.returncode == 0, f"exit {proc.returncode}\n{failures}\n{proc.stderr[-2000:]}"
    assert "isas neon" in proc.stdout
    assert re.search(r"fuzz: 1500 cases, 0 failed", proc.stdout), proc.stdout[-1000:]


def test_ctest_runs_through_the_toolchain_emulator(arm64_build):
    """The toolchain file hands qemu to CMake, so `ctest` in a cross build runs the runner."""
    _need("qemu-aarch64")
    build_dir, _ = arm64_build
    proc = _run(["ctest", "--test-dir", build_dir, "--output-on-failure"], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "100% tests passed" in proc.stdout
