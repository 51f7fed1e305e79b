"""A one-line progress bar on stderr for long profiling runs (no tqdm here).

    progress = ProgressLine("profiling host/...")      # off when stderr is not a terminal
    ensure_costs(table, profiler, specs, candidates, progress=progress)

It matches mapping.ensure_costs' progress(done, total, shape_key) callback: the line is
redrawn in place with elapsed time and an estimate of what is left, and ends with a newline
when the last shape is done.
"""
from __future__ import annotations

import shutil
import sys
import time
from typing import Optional, TextIO


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class ProgressLine:
    """Callable progress(done, total, what). enabled=None: on iff `stream` is a terminal."""

    def __init__(self, label: str = "profiling", stream: Optional[TextIO] = None,
                 enabled: Optional[bool] = None, width: int = 24):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.width = width
        self.start = time.monotonic()

    def __call__(self, done: int, total: int, what: str = "") -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        frac = done / total if total else 1.0
        fill = int(round(frac * self.width))
        left = f", ~{_clock(elapsed / done * (total - done))} left" if 0 < done < total else ""
        line = (f"{self.label} [{'#' * fill}{'.' * (self.width - fill)}] {done}/{total} shapes, "
                f"{_clock(elapsed)}{left}  {what}")
        cols = shutil.get_terminal_size((100, 20)).columns
        self.stream.write("\r" + line[:max(20, cols - 1)].ljust(max(20, cols - 1)))
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
