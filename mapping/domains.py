"""Domain changes: what a mix of fp32 and int8 layers costs besides the layers themselves.

Between two int8 layers a tensor stays uint8 (the int8 kernels' NCHW4 layout); where a float
tensor enters an int8 layer it is quantized once, and where an int8 tensor meets anything that
runs fp32 (an fp32 layer, the model's output, an op with no int8 form) it is dequantized once.
So a plan's latency is the sum of its layers' measured latencies plus one conversion per tensor
whose producer and consumers sit in different domains:

    t = Tensor("layer1.0.conv1:in", producer="conv1", consumers=("layer1.0.conv1", None),
               quantize_us=21.0, dequantize_us=30.0)
    conv = Conversions([t, ...])
    conv.cost({"conv1": 8, "layer1.0.conv1": 8})    # 30.0: the None consumer is fp32

producer None is a float value (the model's input, an op without an int8 form); a None consumer
is a float consumer. The engine (engine.measure.domains) finds the tensors between a model's
layers and measures both conversions per tensor shape. With no int8 candidate in a plan the
cost is 0, so fp32-only problems are unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Tensor:
    """One value between layers, at the size it is converted at."""

    name: str
    producer: Optional[str]          # layer name, or None: a float value
    consumers: tuple                 # layer names; None: a float consumer
    quantize_us: float               # fp32 -> uint8 of this tensor
    dequantize_us: float             # uint8 -> fp32

    def __post_init__(self):
        object.__setattr__(self, "consumers", tuple(self.consumers))
        if not self.consumers:
            raise ValueError(f"tensor {self.name!r} has no consumer")
        for v in (self.quantize_us, self.dequantize_us):
            if not v >= 0:
                raise ValueError(f"tensor {self.name!r}: conversion costs must be >= 0, "
                                 f"got {self.quantize_us}, {self.dequantize_us}")

    def cost(self, bits) -> float:
        """The conversion this tensor needs given bits(layer) (32 or 8) for its ends."""
        src = bits(self.producer) if self.producer is not None else 32
        dst = {bits(c) if c is not None else 32 for c in self.consumers}
        if src == 32 and 8 in dst:
            return self.quantize_us
        if src == 8 and 32 in dst:
            return self.dequantize_us
        return 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "producer": self.producer, "consumers": list(self.consumers),
                "quantize_us": self.quantize_us, "dequantize_us": self.dequantize_us}


class Conversions:
    """The tensors between a problem's layers (see the module doc)."""

    def __init__(self, tensors: Iterable[Tensor] = ()):
        self.tensors = list(tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def layers(self) -> set:
        """Every layer a tensor names."""
        out = set()
        for t in self.tensors:
            out.update(c for c in (t.producer,) + t.consumers if c is not None)
        return out

    def cost(self, bits_of: dict) -> float:
        """Microseconds of conversions for bits_of: layer -> 32 or 8 (missing: 32)."""
        return float(sum(t.cost(lambda n: bits_of.get(n, 32)) for t in self.tensors))

    def touching(self, layer: str) -> list:
        """The tensors `layer` produces or consumes."""
        if not hasattr(self, "_touch"):
            self._touch: dict = {}
            for t in self.tensors:
                for n in {t.producer, *t.consumers} - {None}:
                    self._touch.setdefault(n, []).append(t)
        return self._touch.get(layer, [])

    def flip_delta(self, bits_of: dict, layer: str, bits: int) -> float:
        """How the conversions' cost changes if `layer` runs at `bits` instead of
        bits_of[layer] (the other layers as in bits_of; missing: 32)."""
        after = dict(bits_of)
        after[layer] = bits
        return float(sum(t.cost(lambda n: after.get(n, 32)) - t.cost(lambda n: bits_of.get(n, 32))
                         for t in self.touching(layer)))

    def cost_of(self, assignment: dict) -> float:
        """cost() of an assignment {layer: Candidate}."""
        return self.cost({n: c.bits for n, c in assignment.items()})

    def breakdown(self, assignment: dict) -> list:
        """(tensor name, "quantize" / "dequantize", us) per conversion the assignment needs."""
        bits = {n: c.bits for n, c in assignment.items()}
        out = []
        for t in self.tensors:
            us = t.cost(lambda n: bits.get(n, 32))
            if us > 0:
                src = bits.get(t.producer, 32) if t.producer is not None else 32
                out.append((t.name, "quantize" if src == 32 else "dequantize", us))
        return out

    def to_list(self) -> list:
        return [t.to_dict() for t in self.tensors]

    def indexed(self, names: list) -> "IndexedConversions":
        return IndexedConversions(self, names)


class IndexedConversions:
    """cost() over layer indices as numpy arrays: the search mappers evaluate it per genome."""

    def __init__(self, conv: Conversions, names: list):
        import numpy as np    # the search mappers' dependency; the rest of mapping is plain
        index = {n: i for i, n in enumerate(names)}
        fp32 = len(names)            # the index of "a float end" (never int8)

        def at(n):
            # a layer outside the problem stays as it is: fp32
            return index.get(n, fp32) if n is not None else fp32
        T = len(conv.tensors)
        self.producer = np.array([at(t.producer) for t in conv.tensors], dtype=np.int64)
        edges = [(k, at(c)) for k, t in enumerate(conv.tensors) for c in t.consumers]
        self.edge_tensor = np.array([e[0] for e in edges], dtype=np.int64)
        self.edge_layer = np.array([e[1] for e in edges], dtype=np.int64)
        self.q = np.array([t.quantize_us for t in conv.tensors], dtype=np.float64)
        self.dq = np.array([t.dequantize_us for t in conv.tensors], dtype=np.float64)
        self.T, self.n = T, len(names)

    def cost(self, is8: np.ndarray) -> float:
        """is8: bool per layer (in `names` order)."""
        import numpy as np
        if self.T == 0:
            return 0.0
        ext = np.append(np.asarray(is8, dtype=bool), False)
        src = ext[self.producer]
        differs = ext[self.edge_layer] != src[self.edge_tensor]
        need = np.bincount(self.edge_tensor, weights=differs, minlength=self.T) > 0
        return float(np.where(src, self.dq, self.q)[need].sum())
