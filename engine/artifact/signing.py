"""Ed25519 signing of artifacts: keys, manifest.sig, and its verification before any load.

What is signed: the exact bytes of manifest.json. The manifest lists the sha256 and size of every
other file, so one signature covers the whole artifact. manifest.sig (JSON, see
schema.SIGNATURE_SCHEMA) holds the 64-byte signature and the signer's key id: the first 16 hex
digits of sha256(raw 32-byte public key). A verifier looks the id up among the keys it trusts and
verifies with that key, never with a key the artifact carries.

Keys (docs/artifact-trust.md):
  signing key:  an Ed25519PrivateKey (the `cryptography` package), its 32 raw bytes, or the path
                of a key file: PEM PKCS#8 ("BEGIN PRIVATE KEY", unencrypted) or 64 hex digits.
  trusted keys: Ed25519PublicKey objects (a private key stands for its public half), 32 raw
                bytes, or paths of PEM SubjectPublicKeyInfo ("BEGIN PUBLIC KEY") or 64-hex files;
                the C++ runner's --trusted-key reads the same two file formats.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, List, Union

from ..errors import ArtifactError
from .fileio import read_limited
from .layout import MANIFEST, MAX_SIGNATURE_BYTES, SIGNATURE
from .schema import SIG_FORMAT, parse_signature

_HEX_KEY = re.compile(r"\s*([0-9a-fA-F]{64})\s*")
_MAX_KEY_FILE = 16 << 10


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ArtifactError("artifact signing needs the 'cryptography' package: "
                            "pip install cryptography") from None
    return ed25519, serialization


def generate_signing_key():
    """A new Ed25519 private key (cryptography's Ed25519PrivateKey)."""
    ed25519, _ = _crypto()
    return ed25519.Ed25519PrivateKey.generate()


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return read_limited(path, _MAX_KEY_FILE, "no such key file")
    except ArtifactError as e:
        raise ArtifactError(f"{what}: {e}") from None


def _key_file(key, what: str, from_raw, load_pem, pem_name: str, key_type):
    """A key of `key_type` from a key file: 64 hex digits (raw key) or PEM."""
    path = Path(key).expanduser()
    data = _read_key_file(path, what)
    m = _HEX_KEY.fullmatch(data.decode("ascii", "replace"))
    if m:
        return from_raw(bytes.fromhex(m.group(1)))
    try:
        k = load_pem(data)
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"{what} {path}: not {pem_name} or 64 hex digits ({e})") from None
    if not isinstance(k, key_type):
        raise ArtifactError(f"{what} {path}: a {type(k).__name__}, not an Ed25519 key")
    return k


def load_signing_key(key: Any):
    """An Ed25519PrivateKey from a key object, 32 raw bytes or a key file (see module doc)."""
    ed25519, serialization = _crypto()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, (bytes, bytearray)):
        if len(key) != 32:
            raise ArtifactError(f"signing_key: raw Ed25519 private keys are 32 bytes, got "
                                f"{len(key)}")
        return ed25519.Ed25519PrivateKey.from_private_bytes(bytes(key))
    if isinstance(key, (str, os.PathLike)):
        return _key_file(key, "signing_key", ed25519.Ed25519PrivateKey.from_private_bytes,
                         lambda data: serialization.load_pem_private_key(data, password=None),
                         "an unencrypted PEM private key", ed25519.Ed25519PrivateKey)
    raise ArtifactError(f"signing_key must be an Ed25519PrivateKey, 32 raw bytes or a key file "
                        f"path, got {type(key).__name__}")


def load_public_key(key: Any, what: str = "trusted key"):
    """An Ed25519PublicKey from a key object, 32 raw bytes or a key file (see module doc)."""
    ed25519, serialization = _crypto()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.public_key()
    if isinstance(key, (bytes, bytearray)):
        if len(key) != 32:
            raise ArtifactError(f"{what}: raw Ed25519 public keys are 32 bytes, got {len(key)}")
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes(key))
    if isinstance(key, (str, os.PathLike)):
        return _key_file(key, what, ed25519.Ed25519PublicKey.from_public_bytes,
                         serialization.load_pem_public_key, "a PEM public key",
                         ed25519.Ed25519PublicKey)
    raise ArtifactError(f"{what} must be an Ed25519PublicKey, 32 raw bytes or a key file path, "
                        f"got {type(key).__name__}")


def public_key_bytes(key: Any) -> bytes:
    _, serialization = _crypto()
    return load_public_key(key).public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)


def public_key_hex(key: Any) -> str:
    """The 64 hex digits of a key's public half (the raw-hex key file format)."""
    return public_key_bytes(key).hex()


def key_id(key: Any) -> str:
    """16 hex digits naming a public key (what manifest.sig and error messages show)."""
    return hashlib.sha256(public_key_bytes(key)).hexdigest()[:16]


def _write_new(path: Path, data: bytes, mode: int) -> Path:
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ArtifactError(f"{path} exists; refusing to overwrite a key file") from None
    except OSError as e:
        raise ArtifactError(f"cannot write {path}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def write_signing_key(key: Any, path: Union[str, os.PathLike]) -> Path:
    """Save a private key as unencrypted PEM PKCS#8, mode 0600; never overwrites a file."""
    _, serialization = _crypto()
    pem = load_signing_key(key).private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
    return _write_new(path, pem, 0o600)


def write_public_key(key: Any, path: Union[str, os.PathLike], fmt: str = "pem") -> Path:
    """Save a key's public half: fmt "pem" (SubjectPublicKeyInfo) or "hex" (64 hex digits)."""
    _, serialization = _crypto()
    pub = load_public_key(key)
    if fmt == "pem":
        data = pub.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo)
    elif fmt == "hex":
        data = (public_key_hex(pub) + "\n").encode()
    else:
        raise ArtifactError(f"fmt must be 'pem' or 'hex', got {fmt!r}")
    return _write_new(path, data, 0o644)


def sign_manifest(key: Any, manifest_bytes: bytes) -> bytes:
    """manifest.sig's content for these exact manifest.json bytes."""
    priv = load_signing_key(key)
    sig = {"format": SIG_FORMAT, "version": 1, "algorithm": "ed25519",
           "key_id": key_id(priv), "signed_file": MANIFEST,
           "signature": priv.sign(manifest_bytes).hex()}
    return (json.dumps(sig, indent=2) + "\n").encode()


def trusted_key_list(trusted_keys: Any) -> List:
    """The Ed25519PublicKeys of `trusted_keys` (one key or an iterable of keys)."""
    ed25519, _ = _crypto()
    single = (str, bytes, bytearray, os.PathLike, ed25519.Ed25519PublicKey,
              ed25519.Ed25519PrivateKey)
    items: Iterable = [trusted_keys] if isinstance(trusted_keys, single) else trusted_keys
    try:
        items = list(items)
    except TypeError:
        raise ArtifactError(f"trusted_keys must be a key or a list of keys, got "
                            f"{type(trusted_keys).__name__}") from None
    if not items:
        raise ArtifactError("trusted_keys is empty: no artifact can be trusted; pass the "
                            "public key(s) of the signer, or leave trusted_keys out")
    return [load_public_key(k, f"trusted_keys[{i}]") for i, k in enumerate(items)]


def verify_manifest_signature(root: Path, manifest_bytes: bytes, trusted: List) -> str:
    """Check manifest.sig against `manifest_bytes` with a trusted key; returns the key id.
    ArtifactError saying which: unsigned, damaged signature file, untrusted key, bad signature."""
    from cryptography.exceptions import InvalidSignature

    sig_path = root / SIGNATURE
    if not os.path.lexists(sig_path):
        raise ArtifactError(f"{root} is not signed (no {SIGNATURE}), but trusted_keys were given: "
                            f"refusing to load it; sign it with save(..., signing_key=...)")
    sig = parse_signature(read_limited(sig_path, MAX_SIGNATURE_BYTES, "the signature is missing"),
                          sig_path)
    ids = {}
    for k in trusted:
        ids.setdefault(key_id(k), []).append(k)
    if sig["key_id"] not in ids:
        raise ArtifactError(f"{sig_path}: signed by key {sig['key_id']}, which is not a trusted "
                            f"key (trusted: {', '.join(sorted(ids))}); refusing to load it")
    signature = bytes.fromhex(sig["signature"])
    for k in ids[sig["key_id"]]:
        try:
            k.verify(signature, manifest_bytes)
            return sig["key_id"]
        except InvalidSignature:
            pass
    raise ArtifactError(f"{sig_path}: the Ed25519 signature does not verify with trusted key "
                        f"{sig['key_id']}: {MANIFEST} was modified after it was signed, or the "
                        f"signature is damaged; refusing to load it")
