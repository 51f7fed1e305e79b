"""Reading an artifact: the manifest (schema-checked), the signature, the files' checksums.

Order in load_artifact (each step refuses with an ArtifactError naming the file / field / key,
and nothing of the artifact is dlopened before the last one):
  1. manifest.json: a regular file within the size limit, read once into memory;
  2. with trusted_keys: manifest.sig verified against those exact bytes (schema.py, signing.py);
  3. the manifest parsed and validated from the same bytes (schema.py);
  4. every listed file: a regular file of the listed size and sha256 (read at most size + 1
     bytes); plan.json must hold the manifest's plan;
  5. the target runnable on this machine (host.py);
  6. only then model.so is loaded by the TVM runtime (loaded.py); each call's outputs are
     checked against the manifest's output specs.
Without trusted_keys a signature is not checked, signed or not: steps 1, 3-6 only.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ..errors import ArtifactError, ConfigError
from .fileio import file_digest, read_limited
from .host import check_runnable_here
from .layout import MANIFEST, MAX_MANIFEST_BYTES
from .schema import parse_json, parse_manifest

if TYPE_CHECKING:
    from .loaded import LoadedArtifact


def _root(directory) -> Path:
    try:
        root = Path(os.path.abspath(os.path.expanduser(os.fspath(directory))))
    except TypeError:
        raise ArtifactError(f"an artifact is a directory path, got "
                            f"{type(directory).__name__}") from None
    if not root.exists():
        raise ArtifactError(f"{root} is not an artifact directory (it does not exist)")
    if not root.is_dir():
        raise ArtifactError(f"{root} is not an artifact directory (it is a file)")
    return root


def _manifest_bytes(root: Path) -> bytes:
    mpath = root / MANIFEST
    if not os.path.lexists(mpath):
        raise ArtifactError(f"{root} has no {MANIFEST}: not an artifact, or an incomplete copy "
                            f"(artifacts are written by save_artifact / OptimizedModel.save)")
    return read_limited(mpath, MAX_MANIFEST_BYTES, "the manifest is missing")


def read_manifest(directory: Union[str, os.PathLike]) -> dict:
    """manifest.json of an artifact, validated against the schema (schema.py)."""
    root = _root(directory)
    return parse_manifest(_manifest_bytes(root), root / MANIFEST)


def verify_artifact(directory: Union[str, os.PathLike], trusted_keys: Any = None) -> dict:
    """Check the signature (when trusted_keys are given), the manifest's schema and every file
    against it (presence, size, sha256); return the manifest. Does not check the target
    against this machine (see load_artifact)."""
    return _verified(_root(directory), trusted_keys)[0]


def _verified(root: Path, trusted_keys: Any) -> tuple:
    """(manifest, id of the key that signed it or None): steps 1-4 of the module docstring."""
    data = _manifest_bytes(root)
    signer = None
    if trusted_keys is not None:
        from .signing import trusted_key_list, verify_manifest_signature
        signer = verify_manifest_signature(root, data, trusted_key_list(trusted_keys))
    m = parse_manifest(data, root / MANIFEST)
    _check_files(root, m, hash_them=True)
    return m, signer


def _check_files(root: Path, m: dict, hash_them: bool) -> None:
    for name, entry in m["files"].items():
        p = root / name
        what = f"the artifact is incomplete ({MANIFEST} lists it)"
        if not os.path.lexists(p):
            raise ArtifactError(f"{p} is missing: {what}")
        if hash_them:
            size, digest = file_digest(p, entry["size"], what)
        else:
            size, digest = _regular_size(p), entry["sha256"]
        if size != entry["size"]:
            kind = "truncated" if size < entry["size"] else "larger than written"
            raise ArtifactError(f"{p} is {kind}: {size} bytes, {MANIFEST} says {entry['size']}; "
                                f"copy the artifact again")
        if digest != entry["sha256"]:
            raise ArtifactError(f"{p} does not match {MANIFEST}: sha256 {digest} != "
                                f"{entry['sha256']}; the artifact was modified (tampered or "
                                f"corrupted) after it was written")
    plan_file = m.get("plan_file")
    if hash_them and plan_file is not None:
        p = root / plan_file
        if parse_json(read_limited(p, MAX_MANIFEST_BYTES, "the plan file is missing"), p) != m["plan"]:
            raise ArtifactError(f"{root / MANIFEST}: field 'plan' differs from {plan_file} (whose "
                                f"sha256 matches): the manifest was edited")


def _regular_size(p: Path) -> int:
    try:
        st = os.stat(p)
    except OSError as e:
        raise ArtifactError(f"{p} cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"{p} is not a regular file; an artifact holds regular files only")
    return st.st_size


def load_artifact(directory: Union[str, os.PathLike], *, trusted_keys: Any = None,
                  verify: bool = True, threads: Union[int, str, None] = None
                  ) -> "LoadedArtifact":
    """Check and load an artifact written by save_artifact; returns a callable LoadedArtifact.

    trusted_keys: Ed25519 public keys (objects, 32 raw bytes, or PEM / 64-hex key files; one
        key or a list). Given, the artifact must carry a manifest.sig made by one of them over
        manifest.json, checked before anything else is read; an unsigned artifact, an unknown
        key or a bad signature is refused. Left out, a signature is not checked and the
        artifact is only checked for integrity (sha256), which detects damage, not a deliberate
        replacement (docs/artifact-trust.md).
    verify=False skips the sha256 pass (presence and sizes are still checked); it cannot be
        combined with trusted_keys (a signature vouches for the checksums only).
    threads: the threads every layer of the model runs on (None: as they are, all CPUs by
        default). One pool serves the generated layers, the glue and the engine's kernels
        linked into the module, so this one count sizes all of them. It is the process's TVM
        pool, shared by every artifact loaded here; it cannot grow past the size fixed at the
        pool's first use (TVM_NUM_THREADS, default all CPUs): art.threads says what applies.
        "auto": the count that is fastest now, re-checked as the calls go (a second core may
        stop paying when the CPUs sit far apart, e.g. on a cloud VM; engine/artifact/
        thread_tuner.py).
    """
    if threads is not None and threads != "auto" and (
            isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024):
        raise ConfigError(f"threads must be an int from 1 to 1024, 'auto' or None, got "
                          f"{threads!r}")
    if not verify and trusted_keys is not None:
        raise ArtifactError("verify=False cannot be combined with trusted_keys: the signature "
                            "covers the files only through their sha256")
    root = _root(directory)
    signer = None
    if verify:
        m, signer = _verified(root, trusted_keys)
    else:
        m = parse_manifest(_manifest_bytes(root), root / MANIFEST)
        _check_files(root, m, hash_them=False)
    check_runnable_here(m)
    from .loaded import LoadedArtifact
    art = LoadedArtifact(root, m, signed_by=signer)
    if threads == "auto":
        art.tune_threads()
    elif threads is not None:
        from ..codegen import set_num_threads
        set_num_threads(threads)
    return art
