"""Plan: one Choice per layer (scheme, block, sparsity, backend, measured latency, reason).

A plan is plain data: it round-trips through JSON, can be edited by hand and passed back to
`engine.optimize(plan=...)`, and every choice says why it was made.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from .unique import repeated

PLAN_FORMAT = 1

DENSE = "dense"


@dataclass
class Choice:
    """What happens to one layer."""

    layer: str
    scheme: str = DENSE                  # "dense", "block", "unstructured", "pattern", ...
    block: Optional[tuple] = None        # (rows, cols) for block schemes
    sparsity: float = 0.0                # fraction of the layer's weights pruned
    backend: str = "torch"               # "torch" (dense), "native" (C++ kernels), later "tir"
    kernel: str = ""                     # e.g. f32_spmm_4x96__avx512
    latency_us: Optional[float] = None   # measured latency of this choice
    dense_latency_us: Optional[float] = None
    reason: str = ""
    options: dict = field(default_factory=dict)  # scheme-specific options (n, m, library ...)
    bits: int = 32                       # 32: fp32 kernels; 8: the int8 kernels

    @property
    def pruned(self) -> bool:
        return self.scheme != DENSE and self.sparsity > 0.0

    @property
    def int8(self) -> bool:
        return self.bits == 8

    @property
    def speedup(self) -> Optional[float]:
        if self.latency_us and self.dense_latency_us:
            return self.dense_latency_us / self.latency_us
        return None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block"] = list(self.block) if self.block is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Choice":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)} in plan choice for "
                             f"layer {d.get('layer')!r}")
        d = dict(d)
        if d.get("block") is not None:
            d["block"] = tuple(int(v) for v in d["block"])
        if d.get("bits", 32) not in (32, 8):
            raise ValueError(f"plan choice for layer {d.get('layer')!r}: bits must be 32 or 8, "
                             f"got {d.get('bits')!r}")
        return cls(**d)


@dataclass
class Plan:
    """The per-layer choices for one model on one target."""

    target: str
    choices: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        dup = repeated(c.layer for c in self.choices)
        if dup:
            raise ValueError(f"plan lists layer(s) more than once: {dup}")

    def __getitem__(self, layer: str) -> Choice:
        for c in self.choices:
            if c.layer == layer:
                return c
        raise KeyError(f"layer {layer!r} is not in the plan")

    def __contains__(self, layer: str) -> bool:
        return any(c.layer == layer for c in self.choices)

    def __iter__(self):
        return iter(self.choices)

    def __len__(self) -> int:
        return len(self.choices)

    @property
    def pruned(self) -> list:
        return [c for c in self.choices if c.pruned]

    @property
    def int8(self) -> list:
        """The choices that run on the int8 kernels."""
        return [c for c in self.choices if c.int8]

    @property
    def other_layers(self) -> list:
        """The model's weight layers the choices do not cover (embeddings, recurrent layers,
        attention projections, ...: meta["other_layers"], written by engine.optimize), each a
        dict {"layer", "kind", "weight_shape", "weights", "params", "reason"}: left dense."""
        return list(self.meta.get("other_layers", []))

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "target": self.target, "meta": self.meta,
                "choices": [c.to_dict() for c in self.choices]}

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        if d.get("format") != PLAN_FORMAT:
            raise ValueError(f"unsupported plan format {d.get('format')!r} "
                             f"(this version reads {PLAN_FORMAT})")
        return cls(d["target"], [Choice.from_dict(c) for c in d["choices"]], d.get("meta", {}))

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        return cls.from_dict(json.loads(text))

    def save(self, path) -> None:
        """Write atomically (temp file + rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> "Plan":
        return cls.from_json(Path(path).read_text())

    def table(self) -> str:
        """A per-layer text table: scheme, block, sparsity, kernel, layer speedup, reason."""
        head = f"{'layer':<28} {'scheme':<12} {'bits':>4} {'block':<6} {'sparsity':>8} " \
               f"{'kernel':<24} " \
               f"{'dense us':>9} {'ours us':>9} {'speedup':>7}  reason"
        lines = [head, "-" * len(head)]
        for c in self.choices:
            blk = "x".join(map(str, c.block)) if c.block else "-"
            dl = f"{c.dense_latency_us:9.1f}" if c.dense_latency_us else f"{'-':>9}"
            ol = f"{c.latency_us:9.1f}" if c.latency_us else f"{'-':>9}"
            sp = f"{c.speedup:6.2f}x" if c.speedup else f"{'-':>7}"
            lines.append(f"{c.layer:<28} {c.scheme:<12} {c.bits:>4} {blk:<6} {c.sparsity:8.3f} "
                         f"{(c.kernel or c.backend):<24} {dl} {ol} {sp}  {c.reason}")
        return "\n".join(lines + _other_table(self.other_layers))


def _other_table(others: list) -> list:
    """The other weight layers (Plan.other_layers) as table lines, or none."""
    if not others:
        return []
    kw = max([20] + [len(o.get("kind", "")) for o in others])
    head = f"{'other weight layer':<28} {'kind':<{kw}} {'weight shape':<20} {'params':>10}  reason"
    lines = ["", f"{len(others)} other weight layer(s), left dense (counted in the model's "
                 f"sparsity):", head, "-" * len(head)]
    for o in others:
        shape = "x".join(map(str, o.get("weight_shape", []))) or "-"
        if len(o.get("weights", {})) > 1:
            shape += f" (+{len(o['weights']) - 1})"
        lines.append(f"{o['layer']:<28} {o.get('kind', ''):<{kw}} {shape:<20} "
                     f"{o.get('params', 0):>10}  {o.get('reason', '')}")
    return lines
