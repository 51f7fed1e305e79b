"""engine.codegen.native_bridge's machine-wide cache: a checkout whose kernel sources match a
cached build takes the object without building (a fresh worktree's first opt.save() used to
spend 2+ minutes building every kernel), and any change to a source or CMakeLists.txt moves the
key, so a stale object is never used."""
import shutil

import pytest

from engine.codegen import native_bridge as nb


@pytest.fixture()
def checkout(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    shutil.copytree(nb.ROOT / "kernels", root / "kernels")
    shutil.copy(nb.ROOT / "CMakeLists.txt", root / "CMakeLists.txt")
    monkeypatch.setattr(nb, "ROOT", root)
    monkeypatch.setenv("ENGINE_CACHE_DIR", str(tmp_path / "cache"))
    return root


def test_key_follows_sources(checkout):
    a = nb.shared_object_path("x86_64", None)
    assert a.parent == checkout.parent / "cache" / "bridge"
    assert nb.shared_object_path("x86_64", None) == a              # stable
    assert nb.shared_object_path("aarch64", None) != a             # per architecture
    src = next((checkout / "kernels").rglob("*.cc"))
    src.write_text(src.read_text() + "\n// changed\n")
    assert nb.shared_object_path("x86_64", None) != a
    (checkout / "CMakeLists.txt").write_text("# other\n")
    assert len({a, nb.shared_object_path("x86_64", None)}) == 2


def test_cached_object_used_without_building(checkout, monkeypatch):
    def no_build(*a, **k):
        raise AssertionError("built although the cache holds these sources' object")

    monkeypatch.setattr(nb, "_run", no_build)
    shared = nb.shared_object_path("x86_64", None)
    shared.write_bytes(b"object")
    assert nb.bridge_object("x86_64") == shared


def test_publish_is_atomic_copy(tmp_path):
    built, shared = tmp_path / "b.o", tmp_path / "cache" / "s.o"
    shared.parent.mkdir()
    built.write_bytes(b"123")
    nb._publish(built, shared)
    assert shared.read_bytes() == b"123" and not list(shared.parent.glob("*.tmp"))
