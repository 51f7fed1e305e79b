"""Fixtures for artifact tests (helpers in artifact_helpers.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from artifact_helpers import (AARCH64_TOOLCHAIN, Case, TinyNet, cmake_build, ensure_aarch64_runtime,
                              randomize_bn, require_arm64_toolchain, require_tool)


@pytest.fixture(scope="session")
def tiny_case() -> Case:
    torch.manual_seed(0)
    model = randomize_bn(TinyNet())
    return Case("tiny", model, torch.randn(1, 3, 8, 8))


@pytest.fixture(scope="session")
def mobilenet_case() -> Case:
    from engine import zoo
    torch.manual_seed(0)
    model = randomize_bn(zoo.get("mobilenetv2_cifar"))
    return Case("mobilenetv2_cifar", model, torch.randn(zoo.input_shape("mobilenetv2_cifar")))


@pytest.fixture(scope="session")
def resnet_case() -> Case:
    from engine import zoo
    torch.manual_seed(1)
    model = randomize_bn(zoo.get("resnet18_cifar"), seed=1)
    return Case("resnet18_cifar", model, torch.randn(zoo.input_shape("resnet18_cifar")))


@pytest.fixture(scope="session")
def tiny_artifact(tiny_case, tmp_path_factory) -> Path:
    """A saved host artifact of TinyNet; tests copy it before damaging it."""
    from engine.artifact import save_artifact
    from mapping import Choice, Plan
    plan = Plan("host", [Choice("conv", "block", (4, 1), 0.5, "native", reason="test"),
                         Choice("fc", reason="dense")], {"engine": "test"})
    d = tmp_path_factory.mktemp("tiny") / "artifact"
    return save_artifact(d, tiny_case.executable("host"), "host", tiny_case.inputs,
                         tiny_case.outputs, plan=plan, extra={"model": "TinyNet"})


@pytest.fixture
def tiny_copy(tiny_artifact, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(tiny_artifact, dst)
    return dst


@pytest.fixture(scope="session")
def host_runner(tmp_path_factory) -> Path:
    require_tool("cmake", "cmake")
    return cmake_build(tmp_path_factory.mktemp("examples-host"))


@pytest.fixture(scope="session")
def arm64_runner(tmp_path_factory) -> Path:
    require_arm64_toolchain()
    ensure_aarch64_runtime()
    return cmake_build(tmp_path_factory.mktemp("examples-arm64"),
                       f"-DCMAKE_TOOLCHAIN_FILE={AARCH64_TOOLCHAIN}")


@pytest.fixture(scope="session")
def crypto_check(host_runner) -> Path:
    """examples/cpp/crypto_check, built with the host runner (the runner's SHA-2 / Ed25519)."""
    exe = host_runner.parent / "crypto_check"
    assert exe.is_file()
    return exe


@pytest.fixture(scope="session")
def marker_so(tmp_path_factory) -> Path:
    """A shared library whose constructor writes $ENGINE_TEST_MARKER when it is loaded."""
    from artifact_helpers import build_marker_so
    return build_marker_so(tmp_path_factory.mktemp("marker"))


@pytest.fixture(scope="session")
def release_key():
    from artifact_helpers import new_key
    return new_key()
