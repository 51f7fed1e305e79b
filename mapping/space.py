"""The candidate space: every per-layer choice a mapper may make, as one explicit list.

A Candidate is (scheme, block, sparsity, backend[, options]); DENSE is the "leave this layer
alone" choice, always allowed. `CandidateSpace.for_layer(spec)` filters the list for one layer
with explicit applicability rules (each rejection has a reason, see `why_not`), so the mappers,
the profiler and the report all see the same candidates under the same names:

    block4x1@0.80/native     block-punched 4x1 blocks, 80% of the weights pruned, C++ kernel
    pattern@0.80/tir         3x3 pattern + connectivity pruning, generated TIR kernel
    nm2:4@0.50/native        N:M (2 of every 4 input channels kept)
    dense                    unpruned, on the fastest dense backend measured
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Optional

from .layer import LayerSpec
from .unique import repeated

DENSE_KEY = "dense"
SCHEMES = ("dense", "block", "unstructured", "pattern", "nm")
BACKENDS = ("native", "tir")


@dataclass(frozen=True)
class Candidate:
    """One way to run one layer."""

    scheme: str = "dense"
    block: Optional[tuple] = None     # (rows, cols) for "block"; None otherwise
    sparsity: float = 0.0             # fraction of the layer's weights pruned
    backend: str = "native"           # sparse kernel family: "native" (C++) or "tir"
    options: tuple = ()               # scheme options as sorted (name, value) pairs

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r}; known: {SCHEMES}")
        if self.scheme == "dense":
            object.__setattr__(self, "sparsity", 0.0)
            object.__setattr__(self, "block", None)
            return
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; known: {BACKENDS}")
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"{self.scheme}: sparsity must be in (0, 1), got {self.sparsity}")
        if self.scheme == "block":
            if self.block is None or len(self.block) != 2 or min(self.block) < 1:
                raise ValueError(f"block scheme needs block=(rows, cols) >= 1, got {self.block}")
            object.__setattr__(self, "block", (int(self.block[0]), int(self.block[1])))
        object.__setattr__(self, "options", tuple(sorted(dict(self.options).items())))

    @property
    def is_dense(self) -> bool:
        return self.scheme == "dense"

    @cached_property
    def key(self) -> str:
        """The candidate's name in cost tables, plans and logs (cached: the search mappers
        look it up millions of times; the fields are frozen, so it cannot go stale)."""
        if self.is_dense:
            return DENSE_KEY
        opts = dict(self.options)
        if self.scheme == "block":
            head = f"block{self.block[0]}x{self.block[1]}"
        elif self.scheme == "nm":
            head = f"nm{opts.get('n', 2)}:{opts.get('m', 4)}"
        else:
            head = self.scheme
        return f"{head}@{self.sparsity:.2f}/{self.backend}"

    @classmethod
    def from_key(cls, key: str) -> "Candidate":
        """Inverse of `key`."""
        if key == DENSE_KEY:
            return DENSE
        try:
            head, rest = key.split("@")
            sp, backend = rest.split("/")
            sparsity = float(sp)
            if head.startswith("block"):
                r, c = head[5:].split("x")
                return cls("block", (int(r), int(c)), sparsity, backend)
            if head.startswith("nm"):
                n, m = head[2:].split(":")
                return cls("nm", None, sparsity, backend, (("m", int(m)), ("n", int(n))))
            return cls(head, None, sparsity, backend)
        except (ValueError, IndexError) as e:
            raise ValueError(f"not a candidate key: {key!r} ({e})") from None

    @property
    def block_elems(self) -> int:
        """Weights pruned or kept together (1 for unstructured; 4 for a 3x3 pattern entry is
        not a block: patterns count as 1)."""
        return self.block[0] * self.block[1] if self.block else 1


DENSE = Candidate()


def why_not(spec: LayerSpec, cand: Candidate) -> Optional[str]:
    """None if `cand` applies to `spec`, else the reason it does not (the applicability rules)."""
    if cand.is_dense:
        return None
    if spec.is_grouped:
        return f"grouped conv (groups={spec.groups}): no sparse kernel, kept dense"
    rows, cols = spec.gemm_shape
    if cand.scheme == "pattern":
        if spec.op != "conv2d" or spec.kernel != (3, 3):
            return "pattern pruning needs a 3x3 conv"
    if cand.scheme == "block":
        br, bc = cand.block
        if br > rows:
            return f"block rows {br} > output channels {rows}"
        if bc > spec.in_channels:
            return f"block cols {bc} > input channels {spec.in_channels}"
    if cand.scheme == "nm":
        m = dict(cand.options).get("m", 4)
        if spec.in_channels % m:
            return f"N:M needs M={m} to divide the input channels {spec.in_channels}"
    return None


@dataclass
class CandidateSpace:
    """The explicit list of candidates (DENSE is implied and always first per layer)."""

    candidates: list = field(default_factory=list)

    def __post_init__(self):
        dup = repeated(c.key for c in self.candidates)
        if dup:
            raise ValueError(f"candidate space lists {dup} more than once")
        self.candidates = [c for c in self.candidates if not c.is_dense]

    def __iter__(self):
        return iter(self.candidates)

    def __len__(self) -> int:
        return len(self.candidates)

    def for_layer(self, spec: LayerSpec) -> list:
        """DENSE, then every candidate that applies to `spec`, in list order."""
        return [DENSE] + [c for c in self.candidates if why_not(spec, c) is None]

    def keys(self) -> list:
        return [c.key for c in self.candidates]

    def to_list(self) -> list:
        return self.keys()

    @classmethod
    def from_keys(cls, keys: Iterable[str]) -> "CandidateSpace":
        return cls([Candidate.from_key(k) for k in keys])


DEFAULT_BLOCKS = ((1, 1), (2, 1), (4, 1), (8, 1), (16, 1), (4, 4), (8, 4))
DEFAULT_SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.9)


def default_space(blocks=DEFAULT_BLOCKS, sparsities=DEFAULT_SPARSITIES,
                  backends=("native",), pattern: bool = True) -> CandidateSpace:
    """Block-punched at every (block, sparsity) and, for 3x3 convs, pattern pruning, on each
    backend. Unstructured is block (1, 1) (the same mask and kernel)."""
    cands = []
    for backend in backends:
        for blk in blocks:
            for s in sparsities:
                cands.append(Candidate("block", tuple(blk), float(s), backend))
        if pattern:
            for s in sparsities:
                cands.append(Candidate("pattern", None, float(s), backend))
    return CandidateSpace(cands)
