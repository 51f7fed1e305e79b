"""Checks of command-line values, run before any work: argparse types for single flags (a bad
value is one line naming the flag, never a traceback) and destination probes for the files and
directories a run writes at its end (an unwritable --save must not be found out after a minute of
optimizing)."""
from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
from pathlib import Path

from .errors import ConfigError


class Parser(argparse.ArgumentParser):
    """A usage error is one line naming the flag (argparse prints the whole usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _type(fn, what: str):
    """An argparse type: fn(text) or ArgumentTypeError("must be <what>, got '<text>'")."""
    def parse(text: str):
        try:
            v = fn(text)
        except (ValueError, TypeError, OverflowError):
            v = None
        if v is None:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v
    parse.__name__ = what      # argparse names the type in some messages
    return parse


def _real(text: str, lo: float, hi: float, lo_open: bool, hi_open: bool):
    v = float(text)
    if not math.isfinite(v) or (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
        return None
    return v


def real(lo: float = -math.inf, hi: float = math.inf, lo_open=False, hi_open=False, what=""):
    return _type(lambda t: _real(t, lo, hi, lo_open, hi_open), what or "a number")


THREADS_MAX = 256   # more is a typo, and would ask the OS for that many threads


def integer(lo: int, hi: int):
    return _type(lambda t: (lambda v: v if lo <= v <= hi else None)(int(t, 10)),
                 f"an integer in [{lo}, {hi}]")


def _shape(text: str):
    dims = tuple(int(v, 10) for v in text.split(","))
    return dims if dims and all(d >= 1 for d in dims) and len(dims) <= 8 else None


threads = integer(1, THREADS_MAX)
seconds = real(0.0, 3600.0, lo_open=True, what="seconds in (0, 3600]")

shape = _type(_shape, "comma-separated positive integers, e.g. 1,3,224,224")


def _min_proxy(text: str):
    if text in ("reference", "none"):
        return None if text == "none" else "reference"
    return _real(text, -math.inf, math.inf, False, False)


def _block(text: str):
    m = re.fullmatch(r"\s*(\d{1,4})\s*[xX]\s*(\d{1,4})\s*", text)
    return (int(m.group(1)), int(m.group(2))) if m and int(m.group(1)) >= 1 and \
        int(m.group(2)) >= 1 else None


block = _type(_block, "ROWSxCOLS with integers >= 1, e.g. 4x1")

min_proxy = _type(_min_proxy, "'reference', 'none' or a number")

_RPC = re.compile(r"rpc://[^:/\s]+:\d{1,5}(/[^/\s]+)?")
device = _type(lambda t: t if t == "artifact" or _RPC.fullmatch(t) else None,
               "artifact or rpc://HOST:PORT[/KEY]")


def _backends(text: str):
    names = tuple(text.split(","))
    if text == "auto":
        return text
    return names if names and all(n in ("native", "tir") for n in names) else None


backends = _type(_backends, "auto, native, tir or native,tir")


def _probe_dir(flag: str, d: Path) -> None:
    """d exists, is a directory, and a file can be created in it (tried, then removed): access()
    says yes to root on read-only or virtual file systems."""
    if not d.exists():
        raise ConfigError(f"{flag}: directory {str(d)!r} does not exist")
    if not d.is_dir():
        raise ConfigError(f"{flag}: {str(d)!r} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=d, prefix=".engine-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"{flag}: cannot write in {str(d)!r} ({e.strerror or e})") from None


def writable_file(flag: str, path: str) -> None:
    """`path` can be written as a file at the end of the run."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag}: {path!r} is a directory, expected a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{flag}: {path!r} exists and is not writable")
    _probe_dir(flag, p.parent if str(p.parent) else Path("."))


def writable_dir(flag: str, path: str) -> None:
    """`path` can be created (or is) a directory the run writes files into."""
    p = Path(path)
    if p.exists():
        _probe_dir(flag, p)
        return
    parent = p.parent
    while not parent.exists() and parent != parent.parent:   # created with parents=True
        parent = parent.parent
    _probe_dir(flag, parent)


def names(known: tuple):
    """A comma list of distinct names out of `known`, as a tuple."""
    def parse(text: str):
        got = tuple(t.strip() for t in text.split(","))
        return got if got and set(got) <= set(known) and len(set(got)) == len(got) else None
    return _type(parse, f"a comma list of distinct names out of {', '.join(known)}")


def _thread_list(text: str):
    vals = tuple(int(t, 10) for t in text.split(","))
    return vals if vals and all(1 <= v <= THREADS_MAX for v in vals) else None


thread_list = _type(_thread_list, f"comma-separated integers in [1, {THREADS_MAX}], e.g. 1,2")
