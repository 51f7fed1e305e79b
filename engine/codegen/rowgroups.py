"""Row groups: the weight layout the generated kernels read (pure numpy, no tvm).

Output rows are grouped `rows` at a time; a group holds the GEMM columns (c*kh*kw + k) that are
non-zero in any of its rows, and per column `rows` consecutive weights (entry-major). This is
engine.runtime.packing's format with every group padded to the same height (the last group's
missing rows are zero and never stored), so value e*rows + r belongs to entry e, row r.

Three builders: `from_packed` (a pruned layer, packed by engine.runtime.packing.pack),
`dense` (every column, any height) and `grouped` (grouped / depthwise convs: each output row
only reads its own group's channels).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..runtime.packing import PackedWeight, pack


@dataclass
class RowGroups:
    """A (O, C*kh*kw) weight as equal-height row groups with per-group column lists."""

    out_channels: int
    cols_total: int          # C * kh * kw (the dense GEMM width)
    rows: int                # group height R
    ptr: np.ndarray          # int32 [G+1], entries of group g: ptr[g]..ptr[g+1]
    cols: np.ndarray         # int32 [E]
    values: np.ndarray       # float32 [E * R], entry-major, zero rows where a group is short
    kind: str = "sparse"     # "sparse" | "dense" | "grouped": how it was built (for names/logs)

    @property
    def n_groups(self) -> int:
        return len(self.ptr) - 1

    @property
    def last_rows(self) -> int:
        """Rows of the last group (== rows unless out_channels % rows != 0)."""
        return self.out_channels - (self.n_groups - 1) * self.rows

    @property
    def entries(self) -> int:
        return int(self.ptr[-1])

    @property
    def uniform(self) -> bool:
        """Every group has the same column list (dense layers): one shared column table."""
        if self.kind == "dense":
            return True
        per = np.diff(self.ptr)
        if per.size == 0 or np.any(per != per[0]):
            return False
        k = int(per[0])
        return bool(np.all(self.cols.reshape(self.n_groups, k) == self.cols[:k]))

    @property
    def stored(self) -> int:
        """Weights the kernel multiplies (padding rows of a short last group excluded)."""
        per = np.diff(self.ptr).astype(np.int64)
        heights = np.full(self.n_groups, self.rows, np.int64)
        heights[-1] = self.last_rows
        return int((per * heights).sum())

    @property
    def density(self) -> float:
        total = self.out_channels * self.cols_total
        return self.stored / total if total else 0.0

    def to_dense(self) -> np.ndarray:
        """(O, C*kh*kw) weight rebuilt from the groups (tests, references)."""
        out = np.zeros((self.n_groups * self.rows, self.cols_total), np.float32)
        vals = self.values.reshape(-1, self.rows)
        for g in range(self.n_groups):
            b, e = int(self.ptr[g]), int(self.ptr[g + 1])
            out[g * self.rows:(g + 1) * self.rows, self.cols[b:e]] = vals[b:e].T
        return out[:self.out_channels]

    @classmethod
    def from_packed(cls, p: PackedWeight) -> "RowGroups":
        """From engine.runtime.packing.pack's output (groups of equal height but the last)."""
        n_groups = len(p.group_row0)
        if n_groups == 0:
            raise ValueError("a layer with no output rows")
        rows = int(p.group_rows[0])
        vals = []
        start = 0
        for g in range(n_groups):
            n, r0 = int(p.group_rows[g]), int(p.group_row0[g])
            if r0 != g * rows or (n != rows and g != n_groups - 1):
                raise ValueError("packed groups must have equal heights (but the last)")
            e = int(p.group_ptr[g + 1] - p.group_ptr[g])
            v = p.values[start:start + e * n].reshape(e, n)
            start += e * n
            if n < rows:
                v = np.concatenate([v, np.zeros((e, rows - n), np.float32)], axis=1)
            vals.append(v.reshape(-1))
        kh, kw = p.kernel
        return cls(p.out_channels, p.in_channels * kh * kw, rows,
                   p.group_ptr.astype(np.int32), p.entry_col.astype(np.int32),
                   np.concatenate(vals).astype(np.float32) if vals else np.zeros(0, np.float32))

    @classmethod
    def sparse(cls, weight: np.ndarray, rows: int) -> "RowGroups":
        """Pack a masked weight (O, C[, kh, kw]) with engine.runtime.packing (rows <= 8)."""
        return cls.from_packed(pack(np.asarray(weight, np.float32), rows))

    @classmethod
    def dense(cls, weight: np.ndarray, rows: int) -> "RowGroups":
        """Every column of every group (a layer kept dense); any group height."""
        w = np.asarray(weight, np.float32)
        o = w.shape[0]
        w2 = w.reshape(o, -1)
        k = w2.shape[1]
        n_groups = -(-o // rows)
        pad = np.zeros((n_groups * rows, k), np.float32)
        pad[:o] = w2
        vals = pad.reshape(n_groups, rows, k).transpose(0, 2, 1).reshape(-1)
        ptr = (np.arange(n_groups + 1, dtype=np.int64) * k).astype(np.int32)
        cols = np.tile(np.arange(k, dtype=np.int32), n_groups)
        return cls(o, k, rows, ptr, cols, np.ascontiguousarray(vals), "dense")

    @classmethod
    def grouped(cls, weight: np.ndarray, groups: int, rows: int = 1) -> "RowGroups":
        """A grouped conv weight (O, C/groups, kh, kw): row o reads channels of group
        o // (O/groups) only. `rows` must divide O/groups; zero taps are skipped."""
        w = np.asarray(weight, np.float32)
        o, cg = w.shape[0], w.shape[1]
        taps = int(np.prod(w.shape[2:])) if w.ndim > 2 else 1
        og = o // groups
        if og * groups != o or og % rows:
            raise ValueError(f"rows {rows} must divide the {og} output channels per group")
        w3 = w.reshape(o, cg * taps)
        ptr, cols, vals = [0], [], []
        for g0 in range(0, o, rows):
            blk = w3[g0:g0 + rows]
            nz = np.flatnonzero(np.any(blk != 0, axis=0))
            base = (g0 // og) * cg * taps
            cols.append((nz + base).astype(np.int32))
            vals.append(np.ascontiguousarray(blk[:, nz].T).reshape(-1))
            ptr.append(ptr[-1] + nz.size)
        return cls(o, cg * groups * taps, rows, np.array(ptr, np.int32), np.concatenate(cols),
                   np.concatenate(vals).astype(np.float32), "grouped")
