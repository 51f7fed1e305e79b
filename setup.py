"""Builds engine._kernels through CMake (CMAKE_ARGS passes through, e.g. a toolchain file).

    pip install --no-build-isolation -e .
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: CMakeExtension) -> None:
        out = Path(self.get_ext_fullpath(ext.name)).resolve()
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = "Debug" if self.debug else "Release"
        args = [
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out.parent}",
            "-DSPE_BUILD_PYTHON=ON",
        ]
        args += [a for a in os.environ.get("CMAKE_ARGS", "").split() if a]
        try:
            import pybind11
            args.append(f"-Dpybind11_DIR={pybind11.get_cmake_dir()}")
        except ImportError:
            pass
        gen = ["-G", "Ninja"] if _has("ninja") else []
        subprocess.run(["cmake", str(ROOT), *gen, *args], cwd=build_dir, check=True)
        jobs = str(os.cpu_count() or 2)
        subprocess.run(["cmake", "--build", ".", "--target", "_kernels", "-j", jobs],
                       cwd=build_dir, check=True)


def _has(tool: str) -> bool:
    from shutil import which
    return which(tool) is not None


setup(
    name="engine",
    version="0.1.0",
    description="Compiler-integrated structured pruning engine for mobile inference",
    packages=find_packages(include=["engine", "engine.*", "mapping", "mapping.*"]),
    package_data={"engine": ["bench/shapes/*.txt", "_kernels.pyi", "py.typed"]},
    ext_modules=[CMakeExtension("engine._kernels")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.10",
    install_requires=["torch==2.13.0", "numpy", "scipy", "tqdm", "cryptography"],
    extras_require={
        "tvm": ["apache-tvm==0.27.0.post1"],
        "bench": ["pytest-benchmark", "onnxruntime", "onnx"],
        # `bench peers` only (the dense runtimes the engine is compared with); install with
        # torch pinned as a constraint, or pip may replace torch: see README, "Against other
        # runtimes"
        "peers": ["onnxruntime", "onnx", "openvino", "executorch==1.5.1"],
        "test": ["pytest", "pytest-benchmark", "scikit-learn", "transformers"],
    },
    entry_points={"console_scripts": ["engine=engine.__main__:main"]},
)
