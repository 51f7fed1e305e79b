"""Progress output of long runs, in one place: tqdm bars and log lines on stderr.

    bar = Bar("[train gradual] epoch 1/10", len(batches), enabled=cfg.progress)
    for ...:
        bar.step(f"loss {loss:.4f}")          # redrawn in place, at most 10 times a second
    bar.close("loss 0.1234 sparsity 0.800")   # one summary line, also where no bar is drawn
    note("  s=0.80: gradual 0.9712 ...")      # a log line that does not tear a live bar

A bar is drawn only on a terminal (live=None), so logs and CI output get one line per bar (its
summary) instead of hundreds of carriage returns; live=True draws it on any stream.
`callback(label, unit)` adapts a Bar to the progress(done, total, what) callbacks of
mapping.ensure_costs (engine.measure's profiling progress).

This module sits at the bottom of the layer order (like errors.py): it imports only tqdm.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

from tqdm import tqdm

WIDTH = 24          # characters of the bar itself


class _Tqdm(tqdm):
    """tqdm with one more bar_format field, {info}: free text after the counts (tqdm's own
    {postfix} prepends ", ")."""

    info = ""

    @property
    def format_dict(self):
        d = super().format_dict
        d["info"] = self.info
        return d


def _is_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class Bar:
    """A progress bar over `total` steps; nothing at all is written when `enabled` is false.
    unit: said after the counts; eta: elapsed and estimated remaining time; every: the least
    seconds between two redraws (the last step is always drawn)."""

    def __init__(self, label: str, total: int, enabled: bool = True, *, unit: str = "",
                 eta: bool = False, live: Optional[bool] = None,
                 stream: Optional[TextIO] = None, every: float = 0.1):
        self.label, self.total, self.enabled = label, total, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.t0 = time.perf_counter()
        self.live = enabled and (_is_terminal(self.stream) if live is None else live)
        self._bar = None
        if self.live:
            fmt = ("{desc} [{bar:%d}] {n_fmt}/{total_fmt}" % WIDTH + (f" {unit}" if unit else "")
                   + (", {elapsed}<{remaining}" if eta else "") + " {info}")
            self._bar = _Tqdm(total=total, desc=label, file=self.stream, bar_format=fmt,
                              ascii=".#", mininterval=every, leave=False, dynamic_ncols=False)

    def step(self, info: str = "", n: int = 1) -> None:
        """Advance by `n`; `info` is shown after the counts."""
        self.update_to(self.done + n, info)

    def update_to(self, done: int, info: str = "") -> None:
        """Set the count to `done` (for callbacks that report totals, not increments)."""
        delta, self.done = done - self.done, done
        if self._bar is None:
            return
        self._bar.info = info
        self._bar.update(delta)
        if self.done >= self.total:
            self._bar.refresh()      # the last step is always drawn, however soon it came

    def close(self, summary: Optional[str] = None) -> None:
        """End the bar. With a `summary`: the bar is replaced by one line "label summary (time)"
        (written on any stream); without: the bar's last state stays on screen."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.leave = summary is None
            self._bar.close()
        if summary is not None:
            took = time.perf_counter() - self.t0
            self.stream.write(("\r" if self.live else "") + f"{self.label} {summary} "
                              f"({took:.1f} s)" + ("\033[K" if self.live else "") + "\n")
        self.stream.flush()


def note(line: str, enabled: bool = True, stream: Optional[TextIO] = None) -> None:
    """One log line on stderr, written above any live bar instead of through it."""
    if enabled:
        out = stream if stream is not None else sys.stderr
        tqdm.write(line, file=out)
        out.flush()


def callback(label: str, unit: str = "", enabled: Optional[bool] = None,
             stream: Optional[TextIO] = None) -> Callable[[int, int, str], None]:
    """progress(done, total, what) drawing one Bar: enabled=None draws it only on a terminal,
    True on any stream; the line is left in place when done reaches total."""
    state: dict = {}

    def progress(done: int, total: int, what: str = "") -> None:
        bar = state.get("bar")
        if bar is None or bar.total != total:
            # every report drawn: they come seconds apart (one per measured shape)
            bar = state["bar"] = Bar(label, total, enabled is not False, unit=unit, eta=True,
                                     live=enabled, stream=stream, every=0.0)
        bar.update_to(done, what)
        if done >= total:
            bar.close()
            state.pop("bar")
    return progress
