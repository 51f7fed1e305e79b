"""Tensor specs (name, static shape, dtype) of an artifact's inputs and outputs, and the
deterministic input the C++ runner generates."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ArtifactError
from .layout import DTYPES, MAX_DIM, MAX_ELEMENTS, MAX_RANK


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, static shape, dtype string ("float32", ...)."""

    name: str
    shape: tuple
    dtype: str = "float32"

    @classmethod
    def of(cls, obj: Any, what: str = "spec") -> "TensorSpec":
        """From a TensorSpec, a (name, shape, dtype) tuple or a {"name","shape","dtype"} dict."""
        if isinstance(obj, TensorSpec):
            return obj
        try:
            if isinstance(obj, dict):
                name, shape, dtype = obj["name"], obj["shape"], obj.get("dtype", "float32")
            else:
                name, shape, dtype = obj
            if isinstance(shape, (str, bytes)):
                raise TypeError(shape)
            dims = []
            for d in shape:
                # a float dim (4.7) or a bool is a caller's bug, not something to truncate
                if isinstance(d, bool) or int(d) != d:
                    raise ValueError(d)
                dims.append(int(d))
            shape = tuple(dims)
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{what} must be (name, shape, dtype), got {obj!r}") from None
        if not isinstance(name, str) or not name:
            raise ArtifactError(f"{what} name must be a non-empty string, got {name!r}")
        if any(d < 0 or d > MAX_DIM for d in shape):
            raise ArtifactError(f"{what} {name!r}: shape {shape} must be static, each dim in "
                                f"[0, {MAX_DIM}]")
        if len(shape) > MAX_RANK:
            raise ArtifactError(f"{what} {name!r}: rank {len(shape)} is more than {MAX_RANK}")
        if _numel(shape) > MAX_ELEMENTS:
            raise ArtifactError(f"{what} {name!r}: shape {shape} has more than {MAX_ELEMENTS} "
                                f"elements")
        return cls(name, shape, dtype_str(dtype))

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @property
    def nbytes(self) -> int:
        return _numel(self.shape) * np.dtype(self.dtype).itemsize

    def describe(self) -> str:
        return f"{self.dtype}{list(self.shape)}"


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def dtype_str(dtype: Any) -> str:
    """numpy's name of a dtype (torch.float32, np.float32, "float32" -> "float32")."""
    text = str(dtype)
    if text.startswith("torch."):
        text = text[len("torch."):]
    if text == "bfloat16":
        return text
    try:
        name = np.dtype(text).name
    except TypeError:
        raise ArtifactError(f"unknown dtype {dtype!r}") from None
    if name not in DTYPES:
        raise ArtifactError(f"dtype {dtype!r} is not one an artifact can declare: {list(DTYPES)}")
    return name


def deterministic_input(shape: Sequence[int], dtype: str = "float32") -> np.ndarray:
    """The input examples/cpp/run_artifact.cc generates without --input:
    x[i] = ((i * 37 + 11) % 256) / 128 - 1 (floats), ((i * 37 + 11) % 256) % 7 (integers;
    bool: that != 0)."""
    n = int(np.prod(shape, dtype=np.int64))
    k = (np.arange(n, dtype=np.int64) * 37 + 11) % 256
    dt = np.dtype(dtype)
    if dt.kind == "f":
        vals = (k.astype(dt) / dt.type(128) - dt.type(1))
    else:
        vals = (k % 7).astype(dt)       # bool: k % 7 != 0
    return vals.reshape(tuple(shape))
