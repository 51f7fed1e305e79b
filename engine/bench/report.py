"""What the kernel microbenchmarks (kernels.py, depthwise.py) print and record: plain-text
tables, geometric means, the run environment, and the kernels they run as the library lists
them (engine._kernels.list_kernels(): one line per kernel in kernels/src/<family>/<family>_list.h,
named tile then `__` then ISA), so a benchmark speaks the names of plans and logs."""
from __future__ import annotations

import math
import os
import platform
import time
from typing import Iterable, Optional, Sequence

import torch

from ..runtime.native import lib


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]],
                 left: Iterable[int] = (0, -1), footer: Optional[Sequence[str]] = None) -> str:
    """Columns padded to their widest cell, the `left` ones (indices) left-aligned and the rest
    right-aligned; a rule under the header and, if given, above the footer row."""
    body = [list(r) for r in rows]
    table = [list(header)] + body + ([list(footer)] if footer else [])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lefts = {i % len(header) for i in left}

    def line(r):
        return "  ".join(c.ljust(w) if i in lefts else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(table[0]), rule] + [line(r) for r in body]
    return "\n".join(out + ([rule, line(footer)] if footer else []))


def geomean(xs: Sequence[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def environment() -> dict:
    """Where and under what load the numbers were taken (load average: a busy box skews them)."""
    k = lib()
    env = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.machine(),
           "processor": platform.processor(), "cpus": os.cpu_count(), "torch": torch.__version__,
           "best_isa": k.best_isa(), "available_isas": list(k.available_isas())}
    if hasattr(os, "getloadavg"):
        env["loadavg"] = list(os.getloadavg())
    return env


def split_values(values: Optional[list[str]]) -> list[str]:
    """Repeatable, comma-separated command-line values as one list."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def listed_kernels(family: str, names: Sequence[str]) -> list[dict]:
    """The listed kernels of `family` ("f32_spmm", "f32_dwconv") that `names` select, in list
    order: kernel names, or "all" for every one this CPU runs. ValueError names an unknown
    kernel or one this CPU cannot run, with the choices."""
    listed = [k for k in lib().list_kernels() if k["family"] == family]
    runnable = [k for k in listed if k["available"]]
    if "all" in names:
        return runnable
    by_name = {k["name"]: k for k in listed}
    for n in names:
        if n not in by_name:
            raise ValueError(f"unknown {family} kernel {n!r}; listed: "
                             f"{', '.join(by_name) or 'none'}")
        if not by_name[n]["available"]:
            runs = ", ".join(k["name"] for k in runnable)
            raise ValueError(f"kernel {n!r} needs ISA {by_name[n]['isa']}, which this CPU or "
                             f"build cannot run; runnable: {runs}")
    return [k for k in listed if k["name"] in names]
