"""The candidate space: every per-layer choice a mapper may make, as one explicit list.

A Candidate is (scheme, block, sparsity, backend[, options][, bits]); DENSE is the "leave this
layer alone" choice (fp32, unpruned), always allowed. bits=8 runs the layer on the int8 kernels
(weights int8 per output channel, activations uint8 per tensor), pruned or not. `CandidateSpace.for_layer(spec)` filters the list for one layer
with explicit applicability rules (each rejection has a reason, see `why_not`), so the mappers,
the profiler and the report all see the same candidates under the same names:

    block4x1@0.80/native     block-punched 4x1 blocks, 80% of the weights pruned, C++ kernel
    pattern@0.80/tir         3x3 pattern + connectivity pruning, generated TIR kernel
    nm2:4@0.50/native        N:M (2 of every 4 input channels kept)
    dense                    unpruned, on the fastest dense backend measured
    dense+int8               unpruned, on the int8 kernels
    block4x4@0.80/native+int8  4x4 blocks at 80%, on the int8 block-sparse kernels
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Optional

from .layer import LayerSpec
from .unique import repeated

DENSE_KEY = "dense"
SCHEMES = ("dense", "block", "unstructured", "pattern", "nm", "rgp", "regroup")
# schemes whose masks are blocks of (rows, cols): the candidate carries the block
BLOCKED = ("block", "rgp", "regroup")
BACKENDS = ("native", "tir")
BITS = (32, 8)
INT8_SUFFIX = "+int8"
# the ops the int8 kernels fuse into their store (engine.quant.lower_int8)
INT8_ACTS = ("", "none", "relu", "relu6")


@dataclass(frozen=True)
class Candidate:
    """One way to run one layer."""

    scheme: str = "dense"
    block: Optional[tuple] = None     # (rows, cols) for the BLOCKED schemes; None otherwise
    sparsity: float = 0.0             # fraction of the layer's weights pruned
    backend: str = "native"           # sparse kernel family: "native" (C++) or "tir"
    options: tuple = ()               # scheme options as sorted (name, value) pairs
    bits: int = 32                    # 32: fp32 kernels; 8: the int8 kernels

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r}; known: {SCHEMES}")
        if isinstance(self.bits, bool) or self.bits not in BITS:
            raise ValueError(f"bits must be one of {BITS}, got {self.bits!r}")
        if self.bits == 8 and self.backend != "native":
            raise ValueError(f"int8 runs on the native kernels only, got backend "
                             f"{self.backend!r}")
        if self.scheme == "dense":
            object.__setattr__(self, "sparsity", 0.0)
            object.__setattr__(self, "block", None)
            return
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; known: {BACKENDS}")
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"{self.scheme}: sparsity must be in (0, 1), got {self.sparsity}")
        if self.scheme in BLOCKED:
            if self.block is None or len(self.block) != 2 or min(self.block) < 1:
                raise ValueError(f"{self.scheme} scheme needs block=(rows, cols) >= 1, got "
                                 f"{self.block}")
            object.__setattr__(self, "block", (int(self.block[0]), int(self.block[1])))
        object.__setattr__(self, "options", tuple(sorted(dict(self.options).items())))

    @property
    def is_dense(self) -> bool:
        """DENSE itself: unpruned and fp32 (the baseline every other candidate is measured
        against)."""
        return self.scheme == "dense" and self.bits == 32

    @property
    def pruned(self) -> bool:
        """Whether the candidate prunes weights (dense+int8 does not)."""
        return self.scheme != "dense"

    @property
    def is_int8(self) -> bool:
        return self.bits == 8

    def with_bits(self, bits: int) -> "Candidate":
        """The same scheme, block and sparsity on the kernels of `bits`."""
        return Candidate(self.scheme, self.block, self.sparsity, self.backend, self.options,
                         bits)

    @cached_property
    def key(self) -> str:
        """The candidate's name in cost tables, plans and logs (cached: the search mappers
        look it up millions of times; the fields are frozen, so it cannot go stale)."""
        tail = INT8_SUFFIX if self.bits == 8 else ""
        if self.scheme == "dense":
            return DENSE_KEY + tail
        opts = dict(self.options)
        if self.scheme in BLOCKED:
            head = f"{self.scheme}{self.block[0]}x{self.block[1]}"
        elif self.scheme == "nm":
            head = f"nm{opts.get('n', 2)}:{opts.get('m', 4)}"
        else:
            head = self.scheme
        return f"{head}@{self.sparsity:.2f}/{self.backend}{tail}"

    @classmethod
    def from_key(cls, key: str) -> "Candidate":
        """Inverse of `key`."""
        if isinstance(key, str) and key.endswith(INT8_SUFFIX):
            return cls.from_key(key[:-len(INT8_SUFFIX)]).with_bits(8)
        if key == DENSE_KEY:
            return DENSE
        try:
            head, rest = key.split("@")
            sp, backend = rest.split("/")
            sparsity = float(sp)
            for scheme in BLOCKED:
                if head.startswith(scheme):
                    r, c = head[len(scheme):].split("x")
                    return cls(scheme, (int(r), int(c)), sparsity, backend)
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
    if cand.is_int8:
        why = why_not_int8(spec)
        if why is not None:
            return why
    if cand.scheme == "dense":
        return None
    if spec.is_grouped:
        return f"grouped conv (groups={spec.groups}): no sparse kernel, kept dense"
    rows, cols = spec.gemm_shape
    if cand.scheme == "pattern":
        if spec.op != "conv2d" or spec.kernel != (3, 3):
            return "pattern pruning needs a 3x3 conv"
    if cand.scheme in BLOCKED:
        br, bc = cand.block
        if br > rows:
            return f"block rows {br} > output channels {rows}"
        # int8 blocks are whole column quads: 1-3 input channels are one quad a tap
        if bc > (4 * -(-spec.in_channels // 4) if cand.is_int8 else spec.in_channels):
            return f"block cols {bc} > input channels {spec.in_channels}"
    if cand.scheme == "nm":
        m = dict(cand.options).get("m", 4)
        if spec.in_channels % m:
            return f"N:M needs M={m} to divide the input channels {spec.in_channels}"
    return None


def why_not_int8(spec: LayerSpec) -> Optional[str]:
    """None if the int8 kernels run `spec`, else why not."""
    if spec.op not in ("conv2d", "linear"):
        return f"int8: no int8 kernel for op {spec.op!r}"
    if spec.is_grouped and not (spec.is_depthwise and spec.out_channels == spec.in_channels):
        return f"int8: grouped conv (groups={spec.groups}) has no int8 kernel"
    act = spec.epilogue.replace("+residual", "").replace("residual", "")
    if act not in INT8_ACTS:
        return f"int8: epilogue {spec.epilogue!r} is not fused by the int8 kernels"
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
# int8: blocks of whole column quads (4 input channels at one tap: the dot-product unit)
DEFAULT_INT8_BLOCKS = ((4, 4), (8, 4))


def default_space(blocks=DEFAULT_BLOCKS, sparsities=DEFAULT_SPARSITIES,
                  backends=("native",), pattern: bool = True, bits=(32,),
                  int8_blocks=DEFAULT_INT8_BLOCKS) -> CandidateSpace:
    """Block-punched at every (block, sparsity) and, for 3x3 convs, pattern pruning, on each
    backend. Unstructured is block (1, 1) (the same mask and kernel). bits=(32, 8) adds the
    int8 candidates: dense+int8 and `int8_blocks` at every sparsity, on the native kernels."""
    bad = [b for b in bits if isinstance(b, bool) or b not in BITS]
    if bad or not bits:
        raise ValueError(f"bits must be a non-empty subset of {BITS}, got {bits!r}")
    cands = []
    if 32 in bits:
        for backend in backends:
            for blk in blocks:
                for s in sparsities:
                    cands.append(Candidate("block", tuple(blk), float(s), backend))
            if pattern:
                for s in sparsities:
                    cands.append(Candidate("pattern", None, float(s), backend))
    if 8 in bits:
        cands.append(DENSE.with_bits(8))
        for blk in int8_blocks:
            for s in sparsities:
                cands.append(Candidate("block", tuple(blk), float(s), "native", bits=8))
    return CandidateSpace(cands)
