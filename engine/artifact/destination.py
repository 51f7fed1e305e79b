"""Where an artifact may be written, and the hidden work directories next to it.

check_save_destination(path, overwrite=False) decides, without writing anything, whether saving
to `path` is allowed; save_artifact calls it first and again just before the final rename.
  - never: the filesystem root, the current directory or any of its ancestors, the home
    directory or any of its ancestors (a save replaces the whole destination directory), a
    symlink, an existing non-directory;
  - a missing directory, an empty one, or an artifact holding only its own files (manifest.json,
    manifest.sig and what the manifest lists): replaced;
  - an artifact that also holds other files, or a non-empty directory that is no artifact:
    refused unless overwrite=True (everything in it is then deleted).
The parent must exist and be writable or be creatable.

Work directories are `.NAME.partial-PID-RAND-HOST` (and `.NAME.old-...` during a swap without
renameat2). A save killed midway leaves one behind; the next save to the same destination
removes those whose writer process is gone (same host) or that are older than a day.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import List, Optional, Union

from ..errors import ArtifactError
from .layout import FORMAT, MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE

STALE_AGE_S = 24 * 3600
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _protected() -> dict:
    """realpath -> why it may never be replaced."""
    out = {}
    for base, why in ((Path.home(), "your home directory"), (Path.cwd(), "the current directory")):
        real = Path(os.path.realpath(base))
        out.setdefault(str(real), why)
        for anc in real.parents:
            out.setdefault(str(anc), f"an ancestor of {why}")
    out[os.path.realpath(os.sep)] = "the filesystem root"
    return out


def _listed_files(dest: Path) -> Optional[set]:
    """The files an artifact at `dest` consists of, or None when dest holds no artifact of ours
    (lenient: a manifest this engine cannot fully load is still recognised by its format)."""
    mpath = dest / MANIFEST
    try:
        if not mpath.is_file() or mpath.stat().st_size > MAX_MANIFEST_BYTES:
            return None
        m = json.loads(mpath.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("files"), dict):
        return None
    return {str(k) for k in m["files"]} | {MANIFEST, SIGNATURE}


def _foreign_files(dest: Path, listed: set, limit: int = 5) -> List[str]:
    """Up to `limit` files / links under dest that the artifact does not list."""
    found = []
    for dirpath, dirnames, filenames in os.walk(dest):
        rel_dir = Path(dirpath).relative_to(dest)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = (rel_dir / name).as_posix()
            if rel not in listed:
                found.append(rel)
                if len(found) >= limit:
                    return found
    return found


def _nearest_existing(p: Path) -> Path:
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def check_save_destination(path: Union[str, os.PathLike], overwrite: bool = False) -> Path:
    """The absolute destination for an artifact at `path`, or an ArtifactError saying why it
    may not be written there (see the module docstring). Writes nothing."""
    if not isinstance(overwrite, bool):
        raise ArtifactError(f"overwrite must be True or False, got {overwrite!r}")
    try:
        dest = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    except TypeError:
        raise ArtifactError(f"the artifact destination must be a path, got "
                            f"{type(path).__name__}") from None
    real = os.path.realpath(dest)
    why = _protected().get(real)
    if why is not None or not dest.name:
        raise ArtifactError(f"refusing to save an artifact to {path}: it is "
                            f"{why or 'the filesystem root'} ({real}), and saving replaces the "
                            f"whole directory; give a new subdirectory, e.g. "
                            f"{os.path.join(os.fspath(path), 'artifact')}")
    if dest.is_symlink():
        raise ArtifactError(f"refusing to save an artifact to {dest}: it is a symlink (to "
                            f"{os.readlink(dest)}); give the real directory")
    if dest.exists():
        if not dest.is_dir():
            raise ArtifactError(f"refusing to save an artifact to {dest}: it exists and is not a "
                                f"directory")
        _check_existing_dir(dest, overwrite)
    anc = _nearest_existing(dest.parent)
    if not anc.is_dir():
        raise ArtifactError(f"cannot save an artifact to {dest}: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ArtifactError(f"cannot save an artifact to {dest}: permission denied (no write "
                            f"access to {anc})")
    return dest


def _check_existing_dir(dest: Path, overwrite: bool) -> None:
    try:
        empty = next(os.scandir(dest), None) is None
    except OSError as e:
        raise ArtifactError(f"cannot save an artifact to {dest}: cannot list it "
                            f"({e.strerror})") from None
    if empty or overwrite:
        return
    listed = _listed_files(dest)
    if listed is None:
        raise ArtifactError(f"refusing to save an artifact to {dest}: it exists and is not an "
                            f"artifact (no {MANIFEST} of one), and saving would delete "
                            f"everything in it; choose another directory, or pass "
                            f"overwrite=True to replace it")
    foreign = _foreign_files(dest, listed)
    if foreign:
        raise ArtifactError(f"refusing to replace the artifact {dest}: it also holds files that "
                            f"are not part of it ({', '.join(foreign)}), which saving would "
                            f"delete; move them away, or pass overwrite=True")


# ---- work directories ------------------------------------------------------------------------

def _work_re(name: str):
    return re.compile(rf"\.{re.escape(name)}\.(partial|old)-(\d+)-[0-9a-f]{{8}}(?:-([0-9a-f]{{8}}))?")


def work_dir(dest: Path, kind: str, create: bool = True) -> Path:
    """A fresh hidden directory next to dest (same filesystem, so renames are atomic), created
    with the default mode (umask applies; tempfile.mkdtemp would make it 0700)."""
    for _ in range(100):
        p = dest.parent / f".{dest.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}-{_HOST_TAG}"
        if create:
            try:
                p.mkdir()
            except FileExistsError:
                continue
            return p
        if not os.path.lexists(p):
            return p
    raise ArtifactError(f"could not create a work directory next to {dest}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True                     # someone else's live process (or not a pid at all)
    return True


def clean_stale_work_dirs(dest: Path, now: Optional[float] = None) -> List[Path]:
    """Remove `.NAME.partial-*` / `.NAME.old-*` left next to dest by saves that died: the
    writer's pid is gone (this host; older names carry no host tag and count as this host), or
    older than STALE_AGE_S. Returns what was removed; never raises."""
    pattern, now = _work_re(dest.name), time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    for e in entries:
        m = pattern.fullmatch(e.name)
        if m is None:
            continue
        try:
            if not e.is_dir(follow_symlinks=False):
                continue
            age = now - e.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        here = m.group(3) in (None, _HOST_TAG)
        if (here and not _pid_alive(int(m.group(2)))) or age > STALE_AGE_S:
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(Path(e.path))
    return removed
