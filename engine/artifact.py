"""Artifacts: the directory a mobile app embeds, written and loaded here.

    path = save_artifact("out/resnet18-arm64", compiled, get_target("arm64"),
                         inputs=[("x", (1, 3, 32, 32), "float32")],
                         outputs=[("logits", (1, 10), "float32")], plan=opt.plan)
    art = load_artifact("out/resnet18-host")     # only where the target matches this machine
    y = art(x)                                   # numpy in -> numpy out, torch in -> torch out

Layout (format version 1):

    <dir>/model.so       the compiled Relax VM module for the target (cross-compiled when the
                         target is not this machine)
    <dir>/plan.json      the per-layer plan (when one is given)
    <dir>/manifest.json  format, engine / tvm / tvm_ffi versions, target (name, arch, llvm dict,
                         required CPU features), input / output names, shapes, dtypes, the plan,
                         created_at, build host, and sha256 + size of every other file

Writing is atomic: everything is built in a hidden temp dir next to the destination, fsynced, then
renamed into place; an existing artifact is swapped out only once the new one is complete
(renameat2(RENAME_EXCHANGE) where the kernel has it), so the destination always holds either the
old or the new artifact, never a mix or a half-written one.

Loading refuses, with ArtifactError naming the problem: a missing manifest or file, an unknown
format, a file whose size (truncated) or sha256 (tampered) differs from the manifest, a target
whose arch / OS / CPU features this machine does not have, and (at call time) inputs of the wrong
count, shape or dtype. Off-host artifacts run through the C++ runner in examples/cpp.

The C++ side (examples/cpp/run_artifact.cc) reads the same manifest; its deterministic input is
`deterministic_input` below.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import inspect
import json
import os
import platform
import secrets
import shutil
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from . import __version__
from .errors import ArtifactError
from .targets import get_target
from .targets.registry import Target

FORMAT = "engine-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODULE = "model.so"
PLAN_FILE = "plan.json"
ENTRY = "main"
EXAMPLES_HINT = "examples/README.md (C++ runner examples/cpp/run_artifact.cc)"

_ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}
# LLVM feature -> /proc/cpuinfo flag (Linux). Features not listed are not checked.
_CPUINFO_FLAG = {
    "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "bmi": "bmi1", "bmi2": "bmi2",
    "sse4.1": "sse4_1", "sse4.2": "sse4_2", "avx512f": "avx512f", "avx512bw": "avx512bw",
    "avx512vl": "avx512vl", "avx512dq": "avx512dq", "avx512cd": "avx512cd",
    "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16", "avxvnni": "avx_vnni",
    "neon": "asimd", "dotprod": "asimddp", "fullfp16": "asimdhp", "i8mm": "i8mm",
    "sve": "sve", "bf16": "bf16",
}
# For `mcpu: native` targets the code uses whatever the build machine has; these are the flags
# recorded at save time and checked at load time.
_NATIVE_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "avx512f",
                 "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni", "avx512_bf16",
                 "avx512_fp16", "avx_vnni", "asimd", "asimddp", "asimdhp", "i8mm", "sve")


# ------------------------------------------------------------------------------------------------
# Specs


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
            shape = tuple(int(d) for d in shape)
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{what} must be (name, shape, dtype), got {obj!r}") from None
        if any(d < 0 for d in shape):
            raise ArtifactError(f"{what} {name!r}: shape {shape} must be static and non-negative")
        return cls(str(name), shape, _dtype_str(dtype))

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def _dtype_str(dtype: Any) -> str:
    text = str(dtype)
    if text.startswith("torch."):
        text = text[len("torch."):]
    try:
        return np.dtype(text).name
    except TypeError:
        if text in ("bfloat16",):
            return text
        raise ArtifactError(f"unknown dtype {dtype!r}") from None


def deterministic_input(shape: Sequence[int], dtype: str = "float32") -> np.ndarray:
    """The input examples/cpp/run_artifact.cc generates without --input:
    x[i] = ((i * 37 + 11) % 256) / 128 - 1 (floats), ((i * 37 + 11) % 256) % 7 (integers)."""
    n = int(np.prod(shape, dtype=np.int64))
    k = (np.arange(n, dtype=np.int64) * 37 + 11) % 256
    dt = np.dtype(dtype)
    vals = (k.astype(dt) / dt.type(128) - dt.type(1)) if dt.kind == "f" else (k % 7).astype(dt)
    return vals.reshape(tuple(shape))


# ------------------------------------------------------------------------------------------------
# Targets and toolchains


def _norm_arch(arch: str) -> str:
    return _ARCH_ALIASES.get(arch.lower(), arch.lower())


def host_arch() -> str:
    return _norm_arch(platform.machine())


def _host_is_android() -> bool:
    return hasattr(sys, "getandroidapilevel") or "ANDROID_ROOT" in os.environ


def _as_target(target: Union[Target, str, None]) -> Target:
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        return get_target(target)
    raise ArtifactError(f"target must be an engine Target or a target name, got {target!r}")


def cross_compiler(target: Union[Target, str]) -> Optional[str]:
    """The C++ compiler that links model.so for `target` (None: TVM's default host compiler).
    Raises ArtifactError naming the compiler and the package that provides it when missing."""
    t = _as_target(target)
    if t.cross_compiler is None:
        if _norm_arch(t.arch) != host_arch():
            raise ArtifactError(f"target {t.name!r} is {t.arch} but names no cross compiler in the "
                                f"target registry, and this machine is {host_arch()}")
        return None
    found = shutil.which(t.cross_compiler)
    if found is None and "android" in str(t.llvm.get("mtriple", "")):
        found = _ndk_clang(t)
    if found is None:
        pkg = t.cross_package or "a cross toolchain"
        how = (f"install it: sudo apt-get install {t.cross_package}"
               if t.cross_package and " " not in t.cross_package else f"install {pkg}")
        raise ArtifactError(f"exporting for target {t.name!r} needs the cross compiler "
                            f"{t.cross_compiler!r}, which is not on PATH; {how}")
    return found


def _ndk_clang(t: Target) -> Optional[str]:
    """aarch64-linux-android<API>-clang++ from $ANDROID_NDK_HOME (API: $ANDROID_API or the
    lowest >= 24 the NDK has)."""
    ndk = os.environ.get("ANDROID_NDK_HOME") or os.environ.get("ANDROID_NDK_ROOT")
    if not ndk:
        return None
    bins = sorted(Path(ndk).glob("toolchains/llvm/prebuilt/*/bin"))
    want = int(os.environ.get("ANDROID_API", "24"))
    cands = []
    for b in bins:
        for p in b.glob("aarch64-linux-android*-clang++"):
            api = p.name[len("aarch64-linux-android"):-len("-clang++")]
            if api.isdigit() and int(api) >= want:
                cands.append((int(api), str(p)))
    return min(cands)[1] if cands else None


def _cpu_flags() -> Optional[set]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags: set = set()
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(val.split())
    return flags or None


def _required_cpu_flags(t: Target) -> list:
    """CPU flags (as /proc/cpuinfo spells them) the compiled code may use."""
    if t.llvm.get("mcpu") == "native":
        have = _cpu_flags() or set()
        return sorted(f for f in _NATIVE_FLAGS if f in have)
    out = set()
    for feat in t.llvm.get("mattr", []) or []:
        if isinstance(feat, str) and feat.startswith("+"):
            flag = _CPUINFO_FLAG.get(feat[1:])
            if flag:
                out.add(flag)
    return sorted(out)


def _target_dict(t: Target) -> dict:
    return {"name": t.name, "arch": _norm_arch(t.arch), "llvm": dict(t.llvm),
            "os": "android" if "android" in str(t.llvm.get("mtriple", "")) else "linux",
            "isa": t.isa, "cross_compiler": t.cross_compiler,
            "required_cpu_flags": _required_cpu_flags(t), "description": t.description}


# ------------------------------------------------------------------------------------------------
# Saving


def save_artifact(directory: Union[str, os.PathLike], executable_or_compiled: Any,
                  target: Union[Target, str, None] = None,
                  inputs: Optional[Iterable] = None, outputs: Optional[Iterable] = None,
                  plan: Any = None, extra: Optional[dict] = None, *,
                  overwrite: bool = True) -> Path:
    """Write an artifact directory atomically; returns its absolute path.

    executable_or_compiled: a tvm.runtime.Executable (exported here with the target's cross
        compiler) or any object with `export_library(path[, cc=...])` (engine.codegen's
        CompiledModel, which then owns the export and gets `cc=` when it accepts it; its
        `target`, `inputs`, `outputs` attributes fill in arguments left as None).
    target: engine Target or its registry name. inputs / outputs: (name, shape, dtype) each.
    plan: a mapping.Plan (or its dict), stored in the manifest and as plan.json.
    extra: JSON-serialisable dict stored under "extra" in the manifest.
    overwrite: replace an existing artifact at `directory` (only once the new one is complete).
    """
    obj = executable_or_compiled
    target = _as_target(target if target is not None else getattr(obj, "target", None))
    ins = _specs(inputs if inputs is not None else getattr(obj, "inputs", None), "input")
    outs = _specs(outputs if outputs is not None else getattr(obj, "outputs", None), "output")
    plan_dict = _plan_dict(plan)
    if extra is not None:
        if not isinstance(extra, dict):
            raise ArtifactError(f"extra must be a dict, got {type(extra).__name__}")
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"extra is not JSON-serialisable: {e}") from None

    dest = Path(directory).expanduser().absolute()
    if dest.exists() or dest.is_symlink():
        if not overwrite:
            raise ArtifactError(f"{dest} exists (pass overwrite=True to replace it)")
        if not dest.is_dir() or dest.is_symlink():
            raise ArtifactError(f"refusing to replace {dest}: it is not an artifact directory")
        if any(dest.iterdir()) and not (dest / MANIFEST).is_file():
            raise ArtifactError(f"refusing to replace {dest}: it exists and is not an artifact "
                                f"(no {MANIFEST}); choose another directory")
    cc = cross_compiler(target)          # fail before any work if the toolchain is missing
    dest.parent.mkdir(parents=True, exist_ok=True)

    tmp = _sibling(dest, "partial")
    try:
        _export(obj, tmp / MODULE, cc)
        if plan_dict is not None:
            _write_text(tmp / PLAN_FILE, json.dumps(plan_dict, indent=2) + "\n")
        manifest = _manifest(target, cc, ins, outs, plan_dict, extra, _file_table(tmp))
        _write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        _fsync_tree(tmp)
        _install(tmp, dest)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (ArtifactError, KeyboardInterrupt, SystemExit)):
            raise
        raise ArtifactError(f"could not write artifact {dest}: {type(e).__name__}: {e}; "
                            f"nothing was written there") from e
    return dest


def _sibling(dest: Path, kind: str, create: bool = True) -> Path:
    """A fresh hidden directory next to dest (same filesystem, so renames are atomic), created
    with the default mode (umask applies; tempfile.mkdtemp would make it 0700)."""
    for _ in range(100):
        p = dest.parent / f".{dest.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"
        if create:
            try:
                p.mkdir()
            except FileExistsError:
                continue
            return p
        if not p.exists():
            return p
    raise ArtifactError(f"could not create a temporary directory next to {dest}")


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
    from .codegen import tvm_runtime

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


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_table(root: Path) -> dict:
    table = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            table[p.relative_to(root).as_posix()] = {"sha256": _sha256(p), "size": p.stat().st_size}
    return table


def _manifest(t: Target, cc, ins, outs, plan_dict, extra, files) -> dict:
    from .codegen.tvm_runtime import versions

    v = versions()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "engine_version": __version__,
        "tvm_version": v["tvm"],
        "tvm_ffi_version": v["tvm_ffi"],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": _target_dict(t),
        "module": MODULE,
        "entry": ENTRY,
        "runtime": {"libraries": ["libtvm_runtime.so", "libtvm_ffi.so"],
                    "calls": ["vm_load_executable", "vm_initialization", ENTRY]},
        "inputs": [s.to_dict() for s in ins],
        "outputs": [s.to_dict() for s in outs],
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
        old = _sibling(dest, "old", create=False)
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


# ------------------------------------------------------------------------------------------------
# Loading


def read_manifest(directory: Union[str, os.PathLike]) -> dict:
    """manifest.json of an artifact, with its format and required fields checked."""
    root = Path(directory)
    if not root.is_dir():
        raise ArtifactError(f"{root} is not an artifact directory (it does not exist or is a file)")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{root} has no {MANIFEST}: not an artifact, or an incomplete copy "
                            f"(artifacts are written by save_artifact / OptimizedModel.save)")
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{mpath} is not valid JSON ({e}): the manifest is damaged") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ArtifactError(f"{mpath}: unknown manifest format {m.get('format') if isinstance(m, dict) else m!r} "
                            f"(expected {FORMAT!r})")
    ver = m.get("format_version")
    if ver != FORMAT_VERSION:
        newer = isinstance(ver, int) and ver > FORMAT_VERSION
        raise ArtifactError(f"{mpath}: unknown artifact format version {ver!r}; this engine "
                            f"({__version__}) reads version {FORMAT_VERSION}"
                            + ("; upgrade the engine" if newer else ""))
    for key in ("target", "module", "inputs", "outputs", "files"):
        if key not in m:
            raise ArtifactError(f"{mpath}: required field {key!r} is missing")
    for key in ("name", "arch", "llvm"):
        if not isinstance(m["target"], dict) or key not in m["target"]:
            raise ArtifactError(f"{mpath}: field 'target.{key}' is missing")
    if not isinstance(m["files"], dict):
        raise ArtifactError(f"{mpath}: field 'files' must map file names to sha256 and size")
    return m


def verify_artifact(directory: Union[str, os.PathLike]) -> dict:
    """Check every file against manifest.json (presence, size, sha256); return the manifest.
    Does not check the target against this machine (see load_artifact)."""
    root = Path(directory)
    m = read_manifest(root)
    module = m["module"]
    if module not in m["files"]:
        raise ArtifactError(f"{root / MANIFEST} lists no sha256 for the module {module!r}: "
                            f"the manifest was edited")
    for name, entry in m["files"].items():
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise ArtifactError(f"{root / MANIFEST}: file entry {name!r} points outside the artifact")
        if not isinstance(entry, dict) or "sha256" not in entry or "size" not in entry:
            raise ArtifactError(f"{root / MANIFEST}: file entry {name!r} needs sha256 and size")
        p = root / rel
        if not p.is_file():
            raise ArtifactError(f"{p} is missing: the artifact is incomplete (manifest.json lists it)")
        size = p.stat().st_size
        if size != entry["size"]:
            kind = "truncated" if size < entry["size"] else "larger than written"
            raise ArtifactError(f"{p} is {kind}: {size} bytes, manifest.json says "
                                f"{entry['size']}; copy the artifact again")
        got = _sha256(p)
        if got != entry["sha256"]:
            raise ArtifactError(f"{p} does not match manifest.json: sha256 {got} != "
                                f"{entry['sha256']}; the artifact was modified (tampered or "
                                f"corrupted) after it was written")
    return m


def check_runnable_here(manifest: dict) -> None:
    """Refuse an artifact this machine cannot run: arch, OS (Android vs glibc), CPU features."""
    t = manifest["target"]
    arch, here = _norm_arch(str(t["arch"])), host_arch()
    name = t.get("name", "?")
    if arch != here:
        raise ArtifactError(
            f"artifact target {name!r} is {arch} but this machine is {here}: it must be run on an "
            f"{arch} device (or under qemu-{arch} with the {arch} TVM runtime), through the C++ "
            f"runner, see {EXAMPLES_HINT}")
    is_android = t.get("os") == "android" or "android" in str(t["llvm"].get("mtriple", ""))
    if is_android != _host_is_android():
        where = "an Android app" if is_android else "Linux (glibc)"
        raise ArtifactError(f"artifact target {name!r} was linked for {where}, not for this "
                            f"system; see {EXAMPLES_HINT}")
    need = t.get("required_cpu_flags") or []
    have = _cpu_flags()
    if need and have is not None:
        missing = [f for f in need if f not in have]
        if missing:
            raise ArtifactError(f"artifact target {name!r} uses CPU features this CPU lacks: "
                                f"{missing}; re-export for a target without them (e.g. "
                                f"'x86_64' instead of 'x86_64-avx512' or 'host')")


def load_artifact(directory: Union[str, os.PathLike], *, verify: bool = True) -> "LoadedArtifact":
    """Check and load an artifact written by save_artifact; returns a callable LoadedArtifact.
    verify=False skips the sha256 pass (sizes and presence are still checked)."""
    root = Path(directory).expanduser().absolute()
    if verify:
        m = verify_artifact(root)
    else:
        m = read_manifest(root)
        if not (root / m["module"]).is_file():
            raise ArtifactError(f"{root / m['module']} is missing")
    check_runnable_here(m)
    return LoadedArtifact(root, m)


class LoadedArtifact:
    """An artifact loaded through the TVM runtime + the Relax VM on the CPU
    (engine/codegen/tvm_runtime.py).

    art(x) / art(x0, x1) / art(x=...) with numpy arrays or CPU torch tensors of exactly the
    manifest's shapes and dtypes; returns the outputs (one value, or a tuple) as numpy arrays, or
    as torch tensors when any input was a torch tensor. Calls are serialised (one VM)."""

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self.inputs = [TensorSpec.of(s, "input") for s in manifest["inputs"]]
        self.outputs = [TensorSpec.of(s, "output") for s in manifest["outputs"]]
        self.target = manifest["target"]
        self._lock = threading.Lock()
        from .codegen.tvm_runtime import VMFunction

        module_path = self.path / manifest["module"]
        try:
            self._fn = VMFunction(str(module_path), manifest.get("entry", ENTRY))
            self._main = self._fn.main
        except Exception as e:  # noqa: BLE001  (TVM raises plain RuntimeError / TVMError)
            raise ArtifactError(f"the TVM runtime could not load {module_path}: "
                                f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e

    @property
    def plan(self):
        """The mapping.Plan the artifact was built with, or None."""
        d = self.manifest.get("plan")
        if d is None:
            return None
        from mapping import Plan
        return Plan.from_dict(d)

    @property
    def extra(self) -> dict:
        return self.manifest.get("extra") or {}

    def __call__(self, *args, **kwargs):
        arrays, want_torch = self._bind(args, kwargs)
        with self._lock:
            try:
                result = self._main(*arrays)
            except Exception as e:  # noqa: BLE001
                raise ArtifactError(f"running {self.path.name} failed: {type(e).__name__}: "
                                    f"{str(e).strip()[:500]}") from e
            outs = [t.numpy() for t in _flatten(result)]   # copies: the VM reuses its buffers
        if len(outs) != len(self.outputs):
            raise ArtifactError(f"{self.path.name} returned {len(outs)} outputs, the manifest "
                                f"lists {len(self.outputs)}")
        if want_torch:
            import torch
            outs = [torch.from_numpy(o) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _bind(self, args, kwargs):
        specs = self.inputs
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
                shape, dtype = tuple(a.shape), _dtype_str(a.dtype)
            else:
                a = np.asarray(a)
                shape, dtype = tuple(a.shape), a.dtype.name
            if shape != s.shape or dtype != s.dtype:
                raise ArtifactError(f"input {i} {s.name!r} is {dtype}{list(shape)}, but the "
                                    f"artifact was compiled for {s.dtype}{list(s.shape)} (shapes "
                                    f"are static: re-export for another shape)")
            if want_torch and type(a).__module__.startswith("torch"):
                a = a.detach().contiguous()
            arrays.append(self._fn.to_device(a))
        return arrays, want_torch

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}:{s.dtype}{list(s.shape)}" for s in self.inputs)
        return (f"LoadedArtifact({str(self.path)!r}, target={self.target.get('name')!r}, "
                f"inputs=[{ins}])")


def _flatten(v) -> list:
    if hasattr(v, "numpy"):
        return [v]
    if isinstance(v, (list, tuple)) or type(v).__name__ == "Array":
        return [t for item in v for t in _flatten(item)]
    raise ArtifactError(f"the model returned a {type(v).__name__}, expected tensors")
