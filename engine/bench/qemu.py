"""Run an arm64 artifact on this x86 machine: the C++ embedding example (examples/cpp
run_artifact) cross-compiled for aarch64, under qemu-aarch64 with the aarch64 TVM runtime, on
any number of inputs of any dtype, its outputs split back by the manifest. For checking that
arm64 artifacts compute what the model computes (timings under qemu mean nothing).

    runner = arm64_runner()                       # built once into .cache/examples-arm64
    outs = run_arm64(runner, "art-arm64", [ids, mask])   # numpy arrays, the manifest's order

Needs aarch64-linux-gnu-g++, qemu-aarch64 and cmake (scripts/install.sh installs them);
a missing tool is a ConfigError naming its Debian package.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
AARCH64_RUNTIME = REPO / ".cache" / "aarch64-runtime"
QEMU_SYSROOT = "/usr/aarch64-linux-gnu"
_TOOLS = (("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu"), ("qemu-aarch64", "qemu-user"),
          ("cmake", "cmake"))


def _require_tools() -> None:
    for tool, package in _TOOLS:
        if shutil.which(tool) is None:
            raise ConfigError(f"{tool} not found: install the Debian package {package} "
                              f"(scripts/install.sh does)")


def arm64_runner(build_dir: Path = REPO / ".cache" / "examples-arm64") -> Path:
    """examples/cpp/run_artifact built for aarch64 (once; later calls reuse the build)."""
    _require_tools()
    if not (AARCH64_RUNTIME / "lib" / "libtvm_runtime.so").is_file():
        _run(["bash", str(REPO / "scripts" / "fetch_aarch64_runtime.sh")], "fetching the "
             "aarch64 TVM runtime")
    exe = Path(build_dir) / "run_artifact"
    if not exe.is_file():
        _run(["cmake", "-S", str(REPO / "examples" / "cpp"), "-B", str(build_dir),
              "-DCMAKE_BUILD_TYPE=Release",
              f"-DCMAKE_TOOLCHAIN_FILE={REPO / 'kernels' / 'cmake' / 'aarch64-linux-gnu.cmake'}"],
             "configuring the aarch64 runner")
        _run(["cmake", "--build", str(build_dir), "-j2", "--target", "run_artifact"],
             "building the aarch64 runner")
    return exe


def _run(cmd: list, what: str, timeout: float = 1800) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise ConfigError(f"{what} failed ({r.returncode}): {(r.stderr or r.stdout)[-2000:]}")
    return r.stdout


def run_arm64(runner: Path, artifact: Path, inputs: list, timeout: float = 1800) -> list:
    """The artifact's outputs (numpy arrays, the manifest's order and shapes) for `inputs`
    (numpy arrays or tensors, one per manifest input), run by `runner` under qemu-aarch64."""
    artifact = Path(artifact)
    manifest = json.loads((artifact / "manifest.json").read_text())
    if len(inputs) != len(manifest["inputs"]):
        raise ConfigError(f"{artifact.name} takes {len(manifest['inputs'])} inputs, got "
                          f"{len(inputs)}")
    with tempfile.TemporaryDirectory(prefix="engine_qemu_") as tmp:
        args = []
        for i, (x, spec) in enumerate(zip(inputs, manifest["inputs"])):
            a = np.ascontiguousarray(x.numpy() if hasattr(x, "numpy") else x)
            want = np.dtype(spec["dtype"] if spec["dtype"] != "bool" else np.bool_)
            if a.dtype != want or list(a.shape) != list(spec["shape"]):
                raise ConfigError(f"input {i} {spec['name']!r}: {a.dtype}{list(a.shape)}, the "
                                  f"artifact takes {spec['dtype']}{spec['shape']}")
            path = Path(tmp) / f"in{i}.bin"
            a.astype(a.dtype.newbyteorder("<")).tofile(path)
            args += ["--input", str(path)]
        out = Path(tmp) / "out.bin"
        _run(["qemu-aarch64", "-L", QEMU_SYSROOT, "-E",
              f"LD_LIBRARY_PATH={AARCH64_RUNTIME / 'lib'}", str(runner), str(artifact),
              *args, "--output", str(out)], f"running {artifact.name} under qemu", timeout)
        raw = out.read_bytes()
    outs, offset = [], 0
    for spec in manifest["outputs"]:
        dt = np.dtype(spec["dtype"] if spec["dtype"] != "bool" else np.bool_).newbyteorder("<")
        n = int(np.prod(spec["shape"])) * dt.itemsize
        outs.append(np.frombuffer(raw[offset:offset + n], dtype=dt).reshape(spec["shape"]))
        offset += n
    if offset != len(raw):
        raise ConfigError(f"{artifact.name}: the runner wrote {len(raw)} bytes of output, the "
                          f"manifest's outputs take {offset}")
    return outs
