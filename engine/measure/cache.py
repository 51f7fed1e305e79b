"""Where measured costs live on disk, and the one call that fills a table for a model.

    table = profile_costs(HostProfiler(weights), specs, default_space())
    # -> $ENGINE_CACHE_DIR/costs/<target>.json (default ~/.cache/engine/costs/...), measured
    #    only where the table has nothing yet; a second run measures nothing

A table file is per profiler target ("host/<cpu>/<isa>/<threads>t/<kernels build id>",
"rpc/<key>/<target>/<kernels build id>": a rebuilt kernel library starts a new table), and
inside the file every entry is keyed by that target too, so a table copied from another machine
never answers for this one. Candidates the profiler cannot run are filtered out before asking
(mapping.ensure_costs re-asks for anything missing, so a left-out candidate would otherwise be
re-tried on every run).
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Callable, Optional, Union

from mapping import CandidateSpace, CostTable, ensure_costs

from ..progress import callback as progress_callback


@functools.lru_cache(maxsize=1)
def kernels_build_id() -> str:
    """A short id of the kernels this process runs: the engine version and a hash of the
    compiled kernel module. Profiler targets carry it, so a rebuilt kernel library (new code,
    new timings) never reads the costs measured with the old one."""
    from .._version import __version__
    from ..runtime.native import lib
    _kernels = lib()
    h = hashlib.sha256(__version__.encode())
    try:
        with open(_kernels.__file__, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, AttributeError, TypeError):
        pass                                  # no file to read: the version alone
    return f"k{h.hexdigest()[:10]}"


def cache_dir() -> Path:
    """$ENGINE_CACHE_DIR, else ~/.cache/engine."""
    env = os.environ.get("ENGINE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "engine"


def sanitise(target: str) -> str:
    """A file-name-safe form of a target name (letters, digits, '.', '-', '_')."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", target).strip("._")
    return s or "target"


def default_cost_path(target: str) -> Path:
    """cache_dir()/costs/<sanitised target>.json"""
    return cache_dir() / "costs" / f"{sanitise(target)}.json"


def open_costs(target: str, path: Optional[os.PathLike] = None) -> CostTable:
    """The cost table for `target` (at `path`, default default_cost_path(target))."""
    return CostTable.open(path if path is not None else default_cost_path(target))


def runnable_candidates(profiler, specs: list, space: Union[CandidateSpace, dict]) -> dict:
    """layer name -> the candidates of `space` (DENSE first) that apply to the layer and that
    `profiler` can run (profiler.why_not, when it has one)."""
    out = {}
    for spec in specs:
        listed = space.get(spec.name, []) if isinstance(space, dict) else space.for_layer(spec)
        check = getattr(profiler, "why_not", None)
        out[spec.name] = [c for c in listed if check is None or check(spec, c) is None]
    return out


def profile_costs(profiler, specs: list, space: Union[CandidateSpace, dict],
                  table: Optional[CostTable] = None,
                  progress: Union[bool, Callable, None] = None) -> tuple:
    """Measure what the table lacks for `specs` x `space` on `profiler`; returns
    (table, candidates per layer, measurements taken). table: default open_costs(target).
    progress: a callable(done, total, shape_key), False for none, None/True for a stderr line
    (shown only on a terminal)."""
    if table is None:
        table = open_costs(profiler.target)
    cands = runnable_candidates(profiler, specs, space)
    if progress is None or progress is True:
        progress = progress_callback(f"profiling {profiler.target}", unit="shapes")
    elif progress is False:
        progress = None
    taken = ensure_costs(table, profiler, specs, cands, progress)
    return table, cands, taken
