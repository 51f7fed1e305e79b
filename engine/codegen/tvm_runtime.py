"""The TVM runtime calls the rest of the engine needs (artifacts), kept behind engine/codegen:
through its adapter _tvm.py."""
from __future__ import annotations

import numpy as np

from ._tvm import relax, tvm, tvm_ffi


def versions() -> dict:
    return {"tvm": tvm.__version__, "tvm_ffi": getattr(tvm_ffi, "__version__", "unknown")}


def is_executable(obj) -> bool:
    return isinstance(obj, tvm.runtime.Executable)


def export_executable(executable, path: str, cc=None) -> None:
    executable.export_library(path, **({"cc": cc} if cc else {}))


class VMFunction:
    """A loaded module's Relax VM entry, called with numpy arrays or torch CPU tensors."""

    def __init__(self, module_path: str, entry: str = "main"):
        self._tvm = tvm
        self.lib = tvm.runtime.load_module(module_path)
        self.vm = relax.VirtualMachine(self.lib, tvm.cpu())
        self.main = self.vm[entry]
        self.entry = entry

    def params(self):
        """The entry function's parameter names (None where this VM cannot tell): lets a loader
        compare them with a manifest before running anything."""
        try:
            n = int(self.vm._get_function_arity(self.entry))
            return [str(self.vm._get_function_param_name(self.entry, i)) for i in range(n)]
        except Exception:  # noqa: BLE001  (older / other VMs lack these introspection calls)
            return None

    def to_device(self, a):
        """A tvm tensor for a numpy array or a contiguous torch CPU tensor (zero copy when the
        data is 64-byte aligned, as tvm requires)."""
        if type(a).__module__.startswith("torch"):
            if a.data_ptr() % 64 == 0:
                return self._tvm.runtime.from_dlpack(a)
            a = a.numpy()
        return self._tvm.runtime.tensor(np.ascontiguousarray(a))

    def empty_like(self, a: np.ndarray):
        """A tvm tensor of a's shape and dtype (64-byte aligned) and a numpy view of it."""
        t = self._tvm.runtime.empty(a.shape, str(a.dtype))
        return t, np.from_dlpack(t)

    def __call__(self, *arrays):
        return self.main(*arrays)
