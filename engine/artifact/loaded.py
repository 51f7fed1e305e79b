"""LoadedArtifact: a checked artifact's model.so, loaded by the TVM runtime and callable.

Only reader.load_artifact creates one, after every check that can run before the module is
loaded. Then, before any call, the number of inputs the module's entry takes is compared with the
manifest. What the VM only reveals by running is checked on the first call and every call after
(cheap: shapes only): an input shape the module refuses is reported as the manifest's fault, and
the shapes and dtypes the module really returns must be the manifest's output specs, so an edited
output shape is refused instead of silently believed.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from ..graph.outputs import rebuild
from .fork import track
from .layout import ENTRY, MANIFEST
from .specs import TensorSpec, dtype_str

# How the Relax VM reports an argument that fails its declared type: the ErrorContext of param i,
# with the declared type as annotation=R.Tensor((1, 3, 8, 8), dtype="float32").
_PARAM_MISMATCH = re.compile(r"ErrorContext\(fn=\w+, loc=param\[(\d+)\]")
_ANNOTATION = re.compile(r"annotation=(R\.Tensor\(\([^)]*\)(?:, dtype=\"\w+\")?\))")


class LoadedArtifact:
    """An artifact loaded through the TVM runtime + the Relax VM on the CPU
    (engine/codegen/tvm_runtime.py).

    art(x) / art(x0, x1) / art(input_ids=..., attention_mask=...) with numpy arrays or CPU
    torch tensors of exactly the manifest's shapes and dtypes (int64 ids, bool masks, ...;
    names are the model's forward() parameters); returns the outputs as numpy arrays, or as
    torch tensors when any input was a torch tensor: in the model's own structure when the
    manifest records one ("structure": tuples, lists, dicts; a ModelOutput or dataclass as an
    engine.graph.outputs.Outputs dict that also answers out.name and out[i]), else one value
    or a flat tuple in the order of the manifest's "outputs". Calls are serialised (one VM).
    signed_by: the id of the trusted key whose signature was verified at load, or None (loaded
    without trusted_keys)."""

    def __init__(self, path: Path, manifest: dict, signed_by=None):
        self.path = Path(path)
        self.manifest = manifest
        self.signed_by = signed_by
        self.inputs = [TensorSpec.of(s, "input") for s in manifest["inputs"]]
        self.outputs = [TensorSpec.of(s, "output") for s in manifest["outputs"]]
        self._out_sigs = [(s.dtype, tuple(s.shape)) for s in self.outputs]
        self.target = manifest["target"]
        # the model's output structure (engine.graph.outputs), None: one output, or a tuple
        self.structure = manifest.get("structure")
        self._lock = threading.Lock()
        self._forked_mid_call = False  # set in a forked child if a call never returned (fork.py)
        self._single_out = None       # after a first call with one output: is it in an Array
        self._last = None             # (torch input, its view key, its arrays): see __call__
        self._stage: dict = {}        # input index -> (tvm tensor, numpy view of it)
        self.tuner = None             # a ThreadTuner with threads="auto" (tune_threads)
        from ..codegen.tvm_runtime import VMFunction

        module_path = self.path / manifest["module"]
        try:
            self._fn = VMFunction(str(module_path), manifest.get("entry", ENTRY))
            self._main = self._fn.main
        except Exception as e:  # noqa: BLE001  (TVM raises plain RuntimeError / TVMError)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ArtifactError(f"the TVM runtime could not load {module_path}: "
                                f"{type(e).__name__}: {first}") from e
        self._check_arity(module_path)
        track(self)             # os.fork() waits for a call in flight (fork.py)

    def _check_arity(self, module_path) -> None:
        """Before any call: the module's entry takes as many inputs as the manifest lists (the
        VM records parameter count and names; shapes and dtypes it checks on the first call)."""
        params = self._fn.params()
        if params is not None and len(params) != len(self.inputs):
            raise ArtifactError(f"{module_path}: its function {self._fn.entry!r} takes "
                                f"{len(params)} input(s) {params}, but field 'inputs' of "
                                f"{MANIFEST} lists {len(self.inputs)} "
                                f"{[s.name for s in self.inputs]}: the manifest does not describe "
                                f"this module (edited, or mixed up with another artifact's)")

    def tune_threads(self) -> None:
        """From now on each call runs on the thread count that measures fastest now (see
        thread_tuner.py): from 1 up to every thread of the process's TVM pool."""
        import os
        from ..codegen import set_num_threads
        from .thread_tuner import ThreadTuner, candidates_for
        most = set_num_threads(max(1, len(os.sched_getaffinity(0))))
        self.tuner = ThreadTuner(candidates_for(most), set_num_threads)

    @property
    def threads(self) -> int:
        """Threads the model's layers run on now (the process's TVM pool, which the engine's
        kernels in the module share)."""
        from ..codegen import get_num_threads
        return get_num_threads()

    @property
    def plan(self):
        """The mapping.Plan the artifact was built with, or None."""
        d = self.manifest.get("plan")
        if d is None:
            return None
        from mapping import Plan
        return Plan.from_dict(d)       # parses: reader checked it at load time

    @property
    def extra(self) -> dict:
        return self.manifest.get("extra") or {}

    # Every Python operation after a run is slow: the run has just streamed the model's weights
    # and activations through the caches, so the interpreter's own code and objects come back
    # from DRAM (MobileNetV2 at 1 thread: 227 us of wrapper per call, 11 us for a len()). So
    # the call does as little as it can: output shapes are checked on the first call only (the
    # module is static and the manifest fixes the input shapes, so every later call returns
    # the same), a single output is taken without the general flattening, and the same torch
    # tensor passed again reuses its zero-copy view (kept, with the tensor, until another
    # input comes). An input the VM cannot view in place (not 64-byte aligned, as np.load's
    # arrays mostly are, or not contiguous) is copied into a staging buffer kept per input,
    # not into a new tensor each call (MobileNetV2's 600 KB input: 330 -> 106 us).
    def __call__(self, *args, **kwargs):
        with self._lock:     # the staging buffers are written here: the whole call is serial
            if self._forked_mid_call:
                raise ArtifactError(f"{self.path}: this process was forked while another thread "
                                    f"of its parent was inside a call of this artifact that did "
                                    f"not return within engine.artifact.fork.FORK_WAIT_S; its "
                                    f"VM is unusable here: engine.load() it again in this process")
            last = self._last
            if len(args) == 1 and not kwargs and last is not None and args[0] is last[0] and \
                    last[1] == _view_key(args[0]):
                arrays, want_torch = last[2], True
            else:
                arrays, want_torch = self._bind(args, kwargs)
            try:
                if self.tuner is None:
                    result = self._main(*arrays)
                else:
                    result = self.tuner.run(lambda: self._main(*arrays))
            except Exception as e:  # noqa: BLE001
                raise self._call_error(e) from e
            if self._single_out is not None:  # copies: the VM reuses its buffers
                outs = [_copy_out(result[0] if self._single_out else result)]
            else:
                outs = [_copy_out(t) for t in _flatten(result)]
                self._check_outputs(outs)   # raises, or every later call returns the same
                if len(outs) == 1:
                    self._single_out = not hasattr(result, "numpy")
        if want_torch:
            import torch
            outs = [torch.from_numpy(o) for o in outs]
        if self.structure is not None:
            return rebuild(self.structure, outs)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _call_error(self, e: Exception) -> ArtifactError:
        """The VM's refusal of an input the manifest promised it takes (match_cast on param i)
        is the manifest's fault, said so; anything else is reported as a failed run."""
        text = str(e).strip()
        m = _PARAM_MISMATCH.search(text)
        if m and int(m.group(1)) < len(self.inputs):
            i = int(m.group(1))
            s = self.inputs[i]
            a = _ANNOTATION.search(text)
            want = a.group(1) if a else "another shape or dtype"
            return ArtifactError(f"input {i} {s.name!r}: {self.path / self.manifest['module']} "
                                 f"expects {want}, but field 'inputs[{i}]' of {MANIFEST} says "
                                 f"{s.describe()}: the manifest does not describe this module "
                                 f"(edited, or mixed up with another artifact's)")
        return ArtifactError(f"running {self.path.name} failed: {type(e).__name__}: {text[:500]}")

    def _check_outputs(self, outs) -> None:
        # the common case in one comparison, without formatting (a call of a small model
        # spent 3 us here)
        if [(o.dtype.name, o.shape) for o in outs] == self._out_sigs:
            return
        if len(outs) != len(self.outputs):
            raise ArtifactError(f"{self.path / self.manifest['module']} returned {len(outs)} "
                                f"output(s), but field 'outputs' of {MANIFEST} lists "
                                f"{len(self.outputs)}: the manifest does not describe this module "
                                f"(edited, or mixed up with another artifact's)")
        for i, (o, s) in enumerate(zip(outs, self.outputs)):
            got = f"{o.dtype.name}{list(o.shape)}"
            if got != s.describe():
                raise ArtifactError(f"output {i} {s.name!r} of {self.path / self.manifest['module']} "
                                    f"is {got}, but field 'outputs[{i}]' of {MANIFEST} says "
                                    f"{s.describe()}: the manifest does not describe this module "
                                    f"(edited, or mixed up with another artifact's)")

    def _bind(self, args, kwargs):
        specs = self.inputs
        if len(args) < len(specs) and any(_is_container(a) for a in args):
            args = [t for a in args for t in _input_leaves(a)]   # a KV cache: its tensors
        if kwargs:
            names = [s.name for s in specs]
            unknown = sorted(set(kwargs) - set(names))
            if unknown:
                raise ArtifactError(f"unknown input name(s) {unknown}; the artifact's inputs: {names}")
            args = list(args) + [kwargs[n] for n in names[len(args):] if n in kwargs]
        if len(args) != len(specs):
            raise ArtifactError(f"the artifact takes {len(specs)} input(s) "
                                f"{[(s.name, s.shape, s.dtype) for s in specs]}, got {len(args)}")
        arrays, want_torch = [], False
        for i, (a, s) in enumerate(zip(args, specs)):
            if type(a).__module__.startswith("torch"):
                want_torch = True
                if a.device.type != "cpu":
                    raise ArtifactError(f"input {i} {s.name!r} is on {a.device}; pass a CPU tensor")
                shape, dtype = tuple(a.shape), _dtype_name(a.dtype)
            else:
                a = np.asarray(a)
                shape, dtype = tuple(a.shape), a.dtype.name
            if shape != s.shape or dtype != s.dtype:
                raise ArtifactError(f"input {i} {s.name!r} is {dtype}{list(shape)}, but the "
                                    f"artifact was compiled for {s.dtype}{list(s.shape)} (shapes "
                                    f"are static: re-export for another shape)")
            if want_torch and type(a).__module__.startswith("torch"):
                a = a.detach().contiguous()
            arrays.append(self._device_input(i, a))
        last = None
        if len(args) == 1 and want_torch and not kwargs:
            t = args[0]
            # viewed without a copy (contiguous, 64-byte aligned): reusable while unchanged
            if t.is_contiguous() and t.data_ptr() % 64 == 0:
                last = (t, _view_key(t), arrays)
        self._last = last
        return arrays, want_torch

    def _device_input(self, i: int, a):
        """Input i for the VM: a zero-copy view where the VM takes one (contiguous, 64-byte
        aligned), else a copy in input i's staging buffer (rewritten by the next call: only
        within the call lock)."""
        if type(a).__module__.startswith("torch"):
            if a.data_ptr() % 64 == 0:
                return self._fn.to_device(a)
            a = a.numpy()
        elif a.flags["C_CONTIGUOUS"] and a.flags["WRITEABLE"] and a.ctypes.data % 64 == 0 \
                and a.dtype.isnative:   # DLPack refuses read-only arrays: those are staged
            return self._fn.to_device(a)
        stage = self._stage.get(i)
        if stage is None:
            stage = self._stage[i] = self._fn.empty_like(a)
        np.copyto(stage[1], a, casting="no")
        return stage[0]

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}:{s.dtype}{list(s.shape)}" for s in self.inputs)
        return (f"LoadedArtifact({str(self.path)!r}, target={self.target.get('name')!r}, "
                f"inputs=[{ins}])")


_DTYPE_NAMES: dict = {}   # torch dtype -> name: dtype_str parses text, 2.5 us a call


def _dtype_name(dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        try:
            name = dtype_str(dtype)
        except ArtifactError:
            name = str(dtype).replace("torch.", "")
        _DTYPE_NAMES[dtype] = name
    return name


def _view_key(t) -> tuple:
    """What a zero-copy view of torch tensor t depends on: its memory and layout."""
    return t.data_ptr(), t.shape, t.stride(), t.dtype


def _copy_out(t) -> np.ndarray:
    """A numpy copy of a VM output: through DLPack (1.6 us for a 50 KB tensor, where the
    tensor's own numpy() took 8.5 us); numpy() where DLPack is refused."""
    try:
        return np.from_dlpack(t).copy()
    except (TypeError, RuntimeError, BufferError):
        return t.numpy()


def _flatten(v) -> list:
    if hasattr(v, "numpy"):
        return [v]
    if isinstance(v, (list, tuple)) or type(v).__name__ == "Array":
        return [t for item in v for t in _flatten(item)]
    raise ArtifactError(f"the model returned a {type(v).__name__}, expected tensors")


def _is_container(a) -> bool:
    return isinstance(a, (list, tuple, dict)) or (
        type(a).__module__.startswith("transformers.") and type(a).__name__.endswith("Cache"))


def _input_leaves(a) -> list:
    """An input's tensors in the order the artifact takes them: a tensor / array itself; a
    list, tuple or dict (the cache an artifact returned, as key_cache / value_cache) its
    items in order; a transformers DynamicCache its keys, then its values (as
    engine.graph.containers flattens it)."""
    if isinstance(a, dict):
        return [t for v in a.values() for t in _input_leaves(v)]
    if isinstance(a, (list, tuple)):
        return [t for v in a for t in _input_leaves(v)]
    if _is_container(a):
        from ..graph.containers import tensors
        return list(tensors(a))
    return [a]

