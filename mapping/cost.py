"""Cost table: measured latencies keyed by (target, layer shape, candidate), cached on disk.

    table = CostTable.open(".cache/costs/host.json")     # empty if the file does not exist
    measured = ensure_costs(table, profiler, specs, candidates_per_layer, progress=print)
    table.latency("host", spec.shape_key, "block4x1@0.80/native")   # microseconds

Measurement itself is injected: a `Profiler` (engine.profile: the local host, a device over TVM
RPC, ...) measures the candidates of one layer shape; `ensure_costs` asks it only for what the
table is missing, one distinct shape at a time, and saves after each shape, so an interrupted
run keeps what it measured and a second run measures nothing new. The "dense" entry of a shape
is the fastest dense backend the profiler measured (its kernel field says which).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Protocol

from .layer import LayerSpec
from .space import DENSE_KEY, Candidate

COST_FORMAT = 1


@dataclass
class Measurement:
    """One measured latency."""

    us: float                 # median latency, microseconds
    spread: float = 0.0       # relative spread of the samples ((p75 - p25) / median)
    runs: int = 0             # timed calls behind the median
    kernel: str = ""          # the kernel that ran (e.g. f32_spmm_4x96__avx512, torch)
    source: str = ""          # where: "host", "rpc://host:port/key", "table"
    when: float = 0.0         # unix time of the measurement

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


class Profiler(Protocol):
    """Measures candidates of one layer shape on one target (engine.profile implements it)."""

    target: str               # cost-table target name, e.g. "host:avx512:2t" or "rpc:pixel7"

    def measure(self, spec: LayerSpec, candidates: list) -> dict:
        """candidate key -> Measurement for DENSE (if listed) and every candidate; a candidate
        the profiler cannot run is left out (the mapper then never picks it)."""


class CostTable:
    """{target: {shape_key: {candidate_key: Measurement}}}, optionally backed by a JSON file."""

    def __init__(self, path: Optional[os.PathLike] = None):
        self.path = Path(path) if path is not None else None
        self._data: dict = {}

    # -- persistence ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: os.PathLike) -> "CostTable":
        """The table stored at `path`, or an empty one that will be saved there."""
        t = cls(path)
        p = Path(path)
        if p.exists():
            try:
                d = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"cost table {p} is unreadable ({e}); delete it to re-measure"
                                 ) from None
            t._load_dict(d, str(p))
        return t

    def _load_dict(self, d: dict, where: str) -> None:
        if d.get("format") != COST_FORMAT:
            raise ValueError(f"cost table {where}: unsupported format {d.get('format')!r} "
                             f"(this version reads {COST_FORMAT})")
        for target, shapes in d.get("targets", {}).items():
            for shape, cands in shapes.items():
                for key, m in cands.items():
                    self.put(target, shape, key, Measurement.from_dict(m))

    def to_dict(self) -> dict:
        return {"format": COST_FORMAT,
                "targets": {t: {s: {k: asdict(m) for k, m in c.items()} for s, c in sh.items()}
                            for t, sh in self._data.items()}}

    def save(self, path: Optional[os.PathLike] = None) -> None:
        """Write atomically (temp file in the same directory + rename)."""
        p = Path(path) if path is not None else self.path
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f, indent=1, sort_keys=True)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def from_dict(cls, d: dict) -> "CostTable":
        t = cls()
        t._load_dict(d, "<dict>")
        return t

    # -- access --------------------------------------------------------------------------------
    def put(self, target: str, shape_key: str, cand_key: str, m: Measurement) -> None:
        if not (m.us > 0):
            raise ValueError(f"{target} {shape_key} {cand_key}: latency must be > 0, got {m.us}")
        self._data.setdefault(target, {}).setdefault(shape_key, {})[cand_key] = m

    def get(self, target: str, shape_key: str, cand_key: str) -> Optional[Measurement]:
        return self._data.get(target, {}).get(shape_key, {}).get(cand_key)

    def latency(self, target: str, shape_key: str, cand_key: str) -> Optional[float]:
        """Microseconds, or None if not measured."""
        m = self.get(target, shape_key, cand_key)
        return None if m is None else m.us

    def dense(self, target: str, shape_key: str) -> Optional[float]:
        return self.latency(target, shape_key, DENSE_KEY)

    def entries(self, target: str, shape_key: str) -> dict:
        """candidate key -> Measurement for one shape (a copy)."""
        return dict(self._data.get(target, {}).get(shape_key, {}))

    def targets(self) -> list:
        return sorted(self._data)

    def missing(self, target: str, spec: LayerSpec, candidates: Iterable[Candidate]) -> list:
        """The candidates (DENSE included) not yet measured for spec's shape on target."""
        have = self._data.get(target, {}).get(spec.shape_key, {})
        return [c for c in candidates if c.key not in have]

    def __len__(self) -> int:
        return sum(len(c) for sh in self._data.values() for c in sh.values())


def ensure_costs(table: CostTable, profiler: Profiler, specs: list, candidates: dict,
                 progress: Optional[Callable[[int, int, str], None]] = None) -> int:
    """Measure what `table` lacks for every distinct shape in `specs`; returns how many
    measurements were taken (0 on a warm table).

    candidates: layer name -> list of Candidate (as CandidateSpace.for_layer gives; DENSE is
    always measured). progress(done, total, shape_key) is called after each shape.
    """
    todo: dict = {}        # shape_key -> (spec, {key: Candidate})
    for spec in specs:
        cands = [c for c in candidates.get(spec.name, []) if not c.is_dense]
        need = table.missing(profiler.target, spec, [Candidate()] + cands)
        if need:
            _, have = todo.setdefault(spec.shape_key, (spec, {}))
            for c in need:
                have.setdefault(c.key, c)
    taken = 0
    total = len(todo)
    for i, (shape, (spec, need)) in enumerate(todo.items()):
        got = profiler.measure(spec, list(need.values()))
        now = time.time()
        for key, m in got.items():
            if key not in need:
                continue
            if not m.when:
                m.when = now
            table.put(profiler.target, shape, key, m)
            taken += 1
        table.save()
        if progress is not None:
            progress(i + 1, total, shape)
    return taken
