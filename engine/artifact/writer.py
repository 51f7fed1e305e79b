"""save_artifact: write an artifact directory atomically (and signed, when given a key).

Everything is built in a hidden work directory next to the destination, fsynced, then renamed
into place; an existing artifact is swapped out only once the new one is complete
(renameat2(RENAME_EXCHANGE) where the kernel has it), so the destination always holds either the
old or the new artifact, never a mix or a half-written one. Which destinations may be replaced
is destination.check_save_destination's call. Every error is an ArtifactError naming the
destination (never the work directory); nothing is left behind.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import inspect
import json
import os
import platform
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from .._version import __version__
from ..errors import ArtifactError
from ..targets.registry import Target
from .destination import check_save_destination, clean_stale_work_dirs, work_dir
from .fileio import sha256_file
from .host import as_target, cross_compiler, host_arch, target_dict
from .layout import (ENTRY, FORMAT, FORMAT_VERSION, MANIFEST, MAX_MANIFEST_BYTES, MODULE,
                     PLAN_FILE, SIGNATURE)
from .specs import TensorSpec


def save_artifact(directory: Union[str, os.PathLike], executable_or_compiled: Any,
                  target: Union[Target, str, None] = None,
                  inputs: Optional[Iterable] = None, outputs: Optional[Iterable] = None,
                  plan: Any = None, extra: Optional[dict] = None, *,
                  overwrite: bool = False, signing_key: Any = None,
                  structure: Optional[dict] = None) -> Path:
    """Write an artifact directory atomically; returns its absolute path.

    executable_or_compiled: a tvm.runtime.Executable (exported here with the target's cross
        compiler) or any object with `export_library(path[, cc=...])` (engine.codegen's
        CompiledModel, which then owns the export and gets `cc=` when it accepts it; its
        `target`, `inputs`, `outputs` attributes fill in arguments left as None).
    target: engine Target or its registry name. inputs / outputs: (name, shape, dtype) each.
    plan: a mapping.Plan (or its dict), stored in the manifest and as plan.json.
    extra: JSON-serialisable dict stored under "extra" in the manifest.
    overwrite: also replace a non-empty directory that is not an artifact, or an artifact
        holding other files (they are deleted); see check_save_destination.
    signing_key: an Ed25519 private key (object, 32 raw bytes or key file path): writes
        manifest.sig, which engine.load(dir, trusted_keys=[...]) and the C++ runner check.
    structure: the model's output structure (engine.graph.outputs.flatten_outputs' JSON, its
        tensors numbered in the order of `outputs`): engine.load(...)(...) returns it rebuilt
        (tuples, lists, dicts; ModelOutputs as engine.graph.outputs.Outputs). None (default):
        one output alone, several as a flat tuple. Without Python (examples/cpp), outputs are
        the flat list `outputs` in that order, each named by its path in the structure.
    """
    obj = executable_or_compiled
    target = as_target(target if target is not None else getattr(obj, "target", None))
    ins = _specs(inputs if inputs is not None else getattr(obj, "inputs", None), "input")
    outs = _specs(outputs if outputs is not None else getattr(obj, "outputs", None), "output")
    plan_dict = _plan_dict(plan)
    _check_extra(extra)
    if structure is not None:
        from ..graph.outputs import check_structure
        try:
            check_structure(structure, len(outs))
        except ValueError as e:
            raise ArtifactError(f"structure does not describe the {len(outs)} outputs: {e}"
                                ) from None
    key = None
    if signing_key is not None:
        from .signing import load_signing_key
        key = load_signing_key(signing_key)

    dest = check_save_destination(directory, overwrite)
    cc = cross_compiler(target)          # fail before any work if the toolchain is missing
    describe = functools.partial(_manifest, target, cc, ins, outs, plan_dict, extra, structure)
    tmp = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_work_dirs(dest)
        tmp = work_dir(dest, "partial")
        _write_contents(tmp, obj, cc, plan_dict, describe, key)
        _fsync_tree(tmp)
        check_save_destination(dest, overwrite)     # again: the export may have taken minutes
        _install(tmp, dest)
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _raise_for(e, tmp, dest)
    return dest


def _check_extra(extra) -> None:
    if extra is not None:
        if not isinstance(extra, dict):
            raise ArtifactError(f"extra must be a dict, got {type(extra).__name__}")
        try:
            json.dumps(extra, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"extra is not JSON-serialisable: {e}") from None


def _write_contents(tmp: Path, obj, cc, plan_dict, describe, key) -> None:
    """Into `tmp`: the module, plan.json, manifest.json (describe(file table)) and, with a
    signing key, manifest.sig."""
    _export(obj, tmp / MODULE, cc)
    if plan_dict is not None:
        _write_bytes(tmp / PLAN_FILE, _json_bytes(plan_dict))
    manifest = _json_bytes(describe(_file_table(tmp)))
    if len(manifest) > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"the manifest would be {len(manifest)} bytes, more than the "
                            f"{MAX_MANIFEST_BYTES} a loader accepts: the plan or extra is "
                            f"too large")
    _write_bytes(tmp / MANIFEST, manifest)
    if key is not None:
        from .signing import sign_manifest
        _write_bytes(tmp / SIGNATURE, sign_manifest(key, manifest))


def _raise_for(e: BaseException, tmp: Optional[Path], dest: Path) -> None:
    """Re-raise a failed save as an ArtifactError naming the destination, never the work
    directory (interrupts pass through as they are)."""
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        raise e
    text = str(e) if tmp is None else str(e).replace(str(tmp), str(dest))
    if isinstance(e, ArtifactError):
        if text == str(e):
            raise e
        raise ArtifactError(text) from e.__cause__
    raise ArtifactError(f"could not write artifact {dest}: {type(e).__name__}: {text}; "
                        f"nothing was written there") from e


def _specs(items, what: str) -> list:
    if items is None:
        raise ArtifactError(f"save_artifact needs the model's {what}s as (name, shape, dtype)")
    specs = [TensorSpec.of(s, what) for s in items]
    if not specs:
        raise ArtifactError(f"the model must have at least one {what}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ArtifactError(f"{what} names must be unique, got {names}")
    return specs


def _plan_dict(plan) -> Optional[dict]:
    if plan is None:
        return None
    if hasattr(plan, "to_dict"):
        return plan.to_dict()
    if isinstance(plan, dict):
        return plan
    raise ArtifactError(f"plan must be a mapping.Plan or its dict, got {type(plan).__name__}")


def _export(obj, path: Path, cc: Optional[str]) -> None:
    from ..codegen import tvm_runtime

    if tvm_runtime.is_executable(obj):
        tvm_runtime.export_executable(obj, str(path), cc)
    elif callable(getattr(obj, "export_library", None)):
        # engine.codegen's CompiledModel owns its export (it may link extra objects); it gets
        # the resolved cross compiler when its export_library takes `cc` (or **kwargs).
        fn = obj.export_library
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        takes_cc = "cc" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        fn(str(path), **({"cc": cc} if cc and takes_cc else {}))
    else:
        raise ArtifactError(f"cannot export a {type(obj).__name__}: expected a tvm relax "
                            f"Executable or an object with export_library(path)")
    if not path.is_file() or path.stat().st_size == 0:
        raise ArtifactError(f"export_library wrote no {path.name}")


def _json_bytes(obj) -> bytes:
    try:
        return (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"the manifest or plan is not JSON-serialisable: {e}") from None


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _file_table(root: Path) -> dict:
    table = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            table[p.relative_to(root).as_posix()] = {"sha256": sha256_file(p),
                                                     "size": p.stat().st_size}
    return table


def _manifest(t: Target, cc, ins, outs, plan_dict, extra, structure, files) -> dict:
    from ..codegen.tvm_runtime import versions

    v = versions()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "engine_version": __version__,
        "tvm_version": v["tvm"],
        "tvm_ffi_version": v["tvm_ffi"],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": target_dict(t),
        "module": MODULE,
        "entry": ENTRY,
        "runtime": {"libraries": ["libtvm_runtime.so", "libtvm_ffi.so"],
                    "calls": ["vm_load_executable", "vm_initialization", ENTRY]},
        "inputs": [s.to_dict() for s in ins],
        "outputs": [s.to_dict() for s in outs],
        **({"structure": structure} if structure is not None else {}),
        "plan": plan_dict,
        "plan_file": PLAN_FILE if plan_dict is not None else None,
        "build": {"host_arch": host_arch(), "compiler": cc or "host default (tvm cc)",
                  "python": platform.python_version()},
        "extra": extra or {},
        "files": files,
    }


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in [*(p for p in root.rglob("*") if p.is_dir()), root]:
        _fsync_dir(d)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _install(tmp: Path, dest: Path) -> None:
    """Move the finished `tmp` to `dest`; an existing `dest` is replaced only now."""
    if not dest.exists():
        os.rename(tmp, dest)
    elif _exchange(tmp, dest):          # atomic swap: dest is never missing
        shutil.rmtree(tmp, ignore_errors=True)   # tmp now holds the old artifact
    else:
        old = work_dir(dest, "old", create=False)
        os.rename(dest, old)
        try:
            os.rename(tmp, dest)
        except BaseException:
            os.rename(old, dest)
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(dest.parent)


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(a, b, RENAME_EXCHANGE); False where the libc / kernel / fs lacks it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(err)}")
