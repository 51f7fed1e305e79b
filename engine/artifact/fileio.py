"""Bounded, non-blocking reads of an artifact's files.

A loader must not hang or exhaust memory on what it is handed: a FIFO named manifest.json would
block a plain open() forever, a symlink to /dev/zero never ends, a 300 MB manifest should be
refused from its size alone. Every file is opened O_NONBLOCK, must be a regular file (fstat), and
is read no further than its limit (a file growing after the stat is caught too).
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..errors import ArtifactError

_CHUNK = 1 << 20


def _open_regular(path: Path, what: str) -> tuple:
    """(fd, st) of a regular file; ArtifactError naming `path` otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing: {what}") from None
    except OSError as e:
        raise ArtifactError(f"cannot read {path}: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ArtifactError(f"{path} is {kind}; an artifact holds regular files only")
    return fd, st


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (checked before reading)."""
    fd, st = _open_regular(path, what)
    try:
        if st.st_size > limit:
            raise ArtifactError(f"{path} is {st.st_size} bytes, more than the {limit} bytes a "
                                f"{path.name} may have: not an artifact's {path.name}, refused "
                                f"without reading it")
        parts = list(_chunks(fd, limit))
        total = sum(len(c) for c in parts)
        if total > limit:
            raise ArtifactError(f"{path} grew past {limit} bytes while being read; refused")
        return b"".join(parts)
    finally:
        os.close(fd)


def _chunks(fd: int, limit: int):
    """The file's bytes in chunks, at most limit + 1 of them: one byte past the limit is enough
    to tell that a file is too large, without reading the rest."""
    total = 0
    while total <= limit:
        chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
        if not chunk:
            return
        total += len(chunk)
        yield chunk


def file_digest(path: Path, expected_size: int, what: str) -> tuple:
    """(size, sha256 hex) of a regular file, reading at most expected_size + 1 bytes: a file
    larger than the manifest says is reported as such, never hashed to the end."""
    fd, st = _open_regular(path, what)
    try:
        if st.st_size != expected_size:
            return st.st_size, None
        h, total = hashlib.sha256(), 0
        for chunk in _chunks(fd, expected_size):
            h.update(chunk)
            total += len(chunk)
        return total, (h.hexdigest() if total == expected_size else None)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """sha256 of a file this process wrote (save side)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
