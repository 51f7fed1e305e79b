"""Where a save may write (engine.artifact.check_save_destination, save_artifact, opt.save):
never the current directory, its ancestors, home or /; a non-empty directory that is no
artifact, or an artifact holding the user's own files, only with overwrite=True; errors name the
destination, never the hidden work directory; work directories of killed saves are cleaned."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import engine
from engine import artifact as art
from engine.artifact import save_artifact
from engine.errors import ArtifactError

# Behaviour tests reach the new helpers through `art.` at call time, so that on an engine without
# them they fail on behaviour (the fail-before check of the regression tests), not on import.


def _writer():
    """The module that owns the save steps (engine.artifact.writer; the whole module before)."""
    import importlib
    try:
        return importlib.import_module("engine.artifact.writer")
    except ImportError:
        return art


def _save(case, dest, **kw):
    return save_artifact(dest, case.executable("host"), "host", case.inputs, case.outputs, **kw)


def _tree(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A working directory holding the user's files, made the cwd."""
    d = tmp_path / "work" / "project"
    d.mkdir(parents=True)
    (d / "notes.txt").write_text("mine")
    monkeypatch.chdir(d)
    return d


@pytest.mark.parametrize("where, why", [
    (".", "the current directory"),
    ("..", "an ancestor of the current directory"),
    ("../..", "an ancestor of the current directory"),
    ("/", "the filesystem root"),
])
@pytest.mark.parametrize("overwrite", [False, True])
def test_never_cwd_ancestors_or_root(user_dir, where, why, overwrite):
    before = _tree(user_dir.parent)
    with pytest.raises(ArtifactError, match=rf"refusing to save an artifact to {where}: it is {why}"):
        art.check_save_destination(where, overwrite=overwrite)
    assert _tree(user_dir.parent) == before


def test_never_home(tmp_path, monkeypatch):
    home = tmp_path / "home" / "me"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for overwrite in (False, True):
        with pytest.raises(ArtifactError, match="it is your home directory"):
            art.check_save_destination("~", overwrite=overwrite)
        with pytest.raises(ArtifactError, match="an ancestor of your home directory"):
            art.check_save_destination(home.parent, overwrite=overwrite)


def test_opt_save_dot_deletes_nothing(user_dir):
    """The issue's case: opt.save(".") in a project directory. Refused before compiling."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 4))
    opt = engine.optimize(model, (torch.randn(1, 3, 8, 8),), measure=False, progress=False)
    before = _tree(user_dir)
    compiled = []
    opt.compile = lambda *a, **k: compiled.append(a) or pytest.fail("compiled before refusing")
    for kw in ({}, {"overwrite": True}):
        with pytest.raises(ArtifactError, match=r"refusing to save an artifact to \.: it is the "
                                                r"current directory"):
            opt.save(".", **kw)
    assert not compiled
    assert _tree(user_dir) == before and sorted(os.listdir(user_dir)) == ["notes.txt"]


def test_non_artifact_dir_needs_overwrite(tiny_case, tmp_path):
    d = tmp_path / "photos"
    (d / "2024").mkdir(parents=True)
    (d / "2024" / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(ArtifactError, match=rf"refusing to save an artifact to {d}: it exists and "
                                            rf"is not an artifact.*overwrite=True"):
        _save(tiny_case, d)
    assert (d / "2024" / "cat.jpg").read_bytes() == b"meow"
    _save(tiny_case, d, overwrite=True)                    # asked for: replaced
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json", "model.so"]


def test_artifact_with_user_files_needs_overwrite(tiny_case, tiny_copy):
    (tiny_copy / "README.md").write_text("how I made this")
    (tiny_copy / "inputs").mkdir()
    (tiny_copy / "inputs" / "x.npy").write_bytes(b"data")
    before = _tree(tiny_copy)
    with pytest.raises(ArtifactError, match=r"refusing to replace the artifact .*copy: it also "
                                            r"holds files that are not part of it "
                                            r"\((README\.md, inputs/x\.npy|inputs/x\.npy, README\.md)\)"):
        _save(tiny_case, tiny_copy)
    assert _tree(tiny_copy) == before
    # an artifact holding only its own files is replaced without asking
    (tiny_copy / "README.md").unlink()
    (tiny_copy / "inputs" / "x.npy").unlink()
    (tiny_copy / "inputs").rmdir()
    _save(tiny_case, tiny_copy, extra={"v": 2})
    assert "plan.json" not in os.listdir(tiny_copy)


def test_check_writes_nothing(tmp_path):
    dest = tmp_path / "a" / "b" / "artifact"
    assert art.check_save_destination(dest) == dest
    assert list(tmp_path.iterdir()) == []
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ArtifactError, match=rf"cannot save an artifact to {f}/sub: {f} is not a "
                                            rf"directory"):
        art.check_save_destination(f / "sub")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ArtifactError, match="it is a symlink"):
        art.check_save_destination(link)
    with pytest.raises(ArtifactError, match="overwrite must be True or False"):
        art.check_save_destination(tmp_path / "x", overwrite="yes")


@pytest.mark.parametrize("exc", [
    PermissionError(errno.EACCES, "Permission denied"),
    FileExistsError(errno.EEXIST, "File exists"),
])
def test_errors_name_the_destination_not_the_work_dir(tiny_case, tmp_path, monkeypatch, exc):
    """An OSError about a file in the hidden work directory is reported against the
    destination (the user never named .artifact.partial-...), and nothing is left behind."""
    def failing_export(obj, path, cc):
        raise type(exc)(exc.errno, exc.strerror, str(path))   # names the work dir's model.so
    monkeypatch.setattr(_writer(), "_export", failing_export)
    dest = tmp_path / "out" / "artifact"
    with pytest.raises(ArtifactError) as ei:
        _save(tiny_case, dest)
    msg = str(ei.value)
    assert f"could not write artifact {dest}" in msg and exc.strerror in msg
    assert f"{dest}/model.so" in msg and ".partial" not in msg
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []


def test_unwritable_parent_named(tiny_case, tmp_path, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access",                  # root ignores modes: simulate the check
                        lambda p, mode: False if Path(p) == parent else real_access(p, mode))
    with pytest.raises(ArtifactError, match=rf"cannot save an artifact to {parent}/a: permission "
                                            rf"denied \(no write access to {parent}\)"):
        _save(tiny_case, parent / "a")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_work_dirs_are_cleaned(tiny_case, tmp_path):
    dest = tmp_path / "artifact"
    tag = art.destination._HOST_TAG                     # names end in the writer's host tag
    dead = tmp_path / f".artifact.partial-{_dead_pid()}-0123abcd-{tag}"     # killed save
    legacy = tmp_path / f".artifact.partial-{_dead_pid()}-4567abcd"        # older engine's name
    live = tmp_path / f".artifact.partial-{os.getpid()}-89abcdef-{tag}"    # a save under way
    old = tmp_path / f".artifact.old-{os.getpid()}-deadbeef-{tag}"         # live pid, 2 days old
    other_host = tmp_path / f".artifact.partial-{_dead_pid()}-00000000-ffffffff"
    other_name = tmp_path / f".other.partial-{_dead_pid()}-11111111-{tag}"
    for d in (dead, legacy, live, old, other_host, other_name):
        d.mkdir()
        (d / "model.so").write_bytes(b"half")
    two_days = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days, two_days))
    _save(tiny_case, dest)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["artifact", live.name, other_host.name, other_name.name])
    # a day later anything of this name goes, whatever host or pid wrote it
    removed = art.clean_stale_work_dirs(dest, now=time.time() + 3 * 24 * 3600)
    assert sorted(p.name for p in removed) == sorted([live.name, other_host.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["artifact", other_name.name])
