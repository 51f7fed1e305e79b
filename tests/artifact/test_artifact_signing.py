"""Signed artifacts in Python: key files, opt.save(signing_key=...) / save_artifact, and
engine.load(trusted_keys=...) verifying before anything is dlopened. The signature is checked
against the `cryptography` package's own verify (independent of the engine's code path); the
C++ side is in test_artifact_cpp_trust.py; the refusals, one row each, in
tests/hardening/test_bad_inputs_load.py."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import engine
from engine import artifact as art
from engine.errors import ArtifactError

from artifact_helpers import MARKER_ENV, assert_close, replace_module, sign_in_place

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _raw(pub) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_key_files_round_trip(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    from cryptography.hazmat.primitives import serialization
    key = art.generate_signing_key()
    raw = _raw(key.public_key())
    priv = art.write_signing_key(key, tmp_path / "release.pem")
    assert (priv.stat().st_mode & 0o777) == 0o600              # a secret: owner only
    pem = art.write_public_key(key, tmp_path / "release.pub")
    hexf = art.write_public_key(key, tmp_path / "release.hex", fmt="hex")
    assert hexf.read_text().strip() == raw.hex()
    assert b"BEGIN PUBLIC KEY" in pem.read_bytes()
    assert _raw(art.load_signing_key(priv).public_key()) == raw
    for src in (pem, hexf, str(hexf), raw, key, key.public_key()):
        assert _raw(art.load_public_key(src)) == raw
    assert art.key_id(pem) == hashlib.sha256(raw).hexdigest()[:16]
    assert art.public_key_hex(key) == raw.hex()
    with pytest.raises(ArtifactError, match="exists; refusing to overwrite a key file"):
        art.write_signing_key(key, priv)
    assert _raw(art.load_signing_key(priv).public_key()) == raw     # untouched
    # what is not an Ed25519 key of the right kind is named
    with pytest.raises(ArtifactError, match=rf"trusted key {priv}: not a PEM public key"):
        art.load_public_key(priv)
    rsa_pem = tmp_path / "rsa.pem"
    rsa_pem.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ArtifactError, match=r"signing_key .*rsa\.pem: a .*RSAPrivateKey.*, not an "
                                            r"Ed25519 key"):
        art.load_signing_key(rsa_pem)
    with pytest.raises(ArtifactError, match="raw Ed25519 private keys are 32 bytes, got 31"):
        art.load_signing_key(b"\0" * 31)
    with pytest.raises(ArtifactError, match=r"signing_key: .*nope\.pem is missing"):
        art.load_signing_key(tmp_path / "nope.pem")
    assert isinstance(art.load_signing_key(bytes(32)), ed25519.Ed25519PrivateKey)


@pytest.fixture(scope="module")
def signed_artifact(tiny_case, tmp_path_factory, release_key):
    d = tmp_path_factory.mktemp("signed") / "artifact"
    return art.save_artifact(d, tiny_case.executable("host"), "host", tiny_case.inputs,
                             tiny_case.outputs, extra={"model": "TinyNet"},
                             signing_key=release_key)


def test_signed_save_verifies_with_cryptography(signed_artifact, release_key, tiny_case, tmp_path):
    """manifest.sig signs manifest.json's exact bytes; cryptography's verify agrees; the
    manifest lists every other file's sha256, so the signature covers model.so too."""
    sig = json.loads((signed_artifact / "manifest.sig").read_text())
    assert sig["algorithm"] == "ed25519" and sig["signed_file"] == "manifest.json"
    assert sig["key_id"] == art.key_id(release_key)
    manifest_bytes = (signed_artifact / "manifest.json").read_bytes()
    release_key.public_key().verify(bytes.fromhex(sig["signature"]), manifest_bytes)
    m = json.loads(manifest_bytes)
    assert set(m["files"]) == {"model.so"}
    assert m["files"]["model.so"]["sha256"] == hashlib.sha256(
        (signed_artifact / "model.so").read_bytes()).hexdigest()
    # load with the trusted public key, in every accepted form, among other keys
    pub = art.write_public_key(release_key, tmp_path / "release.pub")
    other = art.generate_signing_key().public_key()
    for keys in ([pub], pub, [other, str(pub)], [_raw(release_key.public_key())], release_key):
        loaded = engine.load(signed_artifact, trusted_keys=keys)
        assert loaded.signed_by == sig["key_id"]
        assert_close(loaded(tiny_case.x), tiny_case.ref)


def test_signed_artifact_without_trusted_keys_loads(signed_artifact, tiny_case):
    """Without trusted_keys nothing is asked of a signature (integrity only, as unsigned)."""
    loaded = engine.load(signed_artifact)
    assert loaded.signed_by is None
    assert_close(loaded(tiny_case.x), tiny_case.ref)


_LOAD_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from engine.artifact import load_artifact
    from engine.errors import ArtifactError
    keys = sys.argv[2:] or None
    try:
        load_artifact(sys.argv[1], trusted_keys=keys) if keys else load_artifact(sys.argv[1])
        print("LOADED")
    except ArtifactError as e:
        print("ArtifactError:", e)
""")


def _load_in_child(d, marker, *keys):
    env = dict(os.environ, **{MARKER_ENV: str(marker)})
    r = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT.format(repo=REPO), str(d),
                        *map(str, keys)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_replaced_module_refused_before_dlopen(signed_artifact, release_key, marker_so,
                                               tmp_path):
    """The issue's case: model.so replaced and its sha256 / size updated in manifest.json. With
    trusted_keys the signature fails first and the library is never mapped: its constructor
    does not run. (Control: without trusted_keys the sha256 matches, so it is dlopened and its
    constructor runs; sha256 alone detects damage, not a replacement.)"""
    d = tmp_path / "evil"
    shutil.copytree(signed_artifact, d)
    replace_module(d, marker_so)
    pub = art.write_public_key(release_key, tmp_path / "release.pub")
    marker = tmp_path / "constructor-ran"
    out = _load_in_child(d, marker, pub)
    assert "ArtifactError" in out and "signature does not verify" in out and "manifest.json was " \
        "modified after it was signed" in out, out
    assert not marker.exists(), "model.so was loaded (its constructor ran) before it was refused"
    # re-signed by someone else: refused as untrusted, still before loading
    sign_in_place(d, art.generate_signing_key())
    out = _load_in_child(d, marker, pub)
    assert "which is not a trusted key" in out and not marker.exists(), out
    # control: integrity checks alone let the consistent replacement through to dlopen
    out = _load_in_child(d, marker)
    assert marker.exists() and "vm_load_executable" in out, out


def test_opt_save_signed_end_to_end(tmp_path):
    """opt.save(dir, signing_key=PEM file) -> engine.load(dir, trusted_keys=[public key file])."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 4)).eval()
    x = torch.randn(1, 3, 8, 8)
    opt = engine.optimize(model, (x,), measure=False, progress=False)
    key = art.generate_signing_key()
    priv = art.write_signing_key(key, tmp_path / "release.pem")
    pub = art.write_public_key(key, tmp_path / "release.pub")
    # a bad key is refused before the (long) compile
    real_compile = opt.compile
    opt.compile = lambda *a, **k: pytest.fail("compiled before checking the key")
    with pytest.raises(ArtifactError, match=r"signing_key: .*missing\.pem is missing"):
        opt.save(tmp_path / "a", signing_key=tmp_path / "missing.pem")
    opt.compile = real_compile
    d = opt.save(tmp_path / "a", signing_key=priv)
    assert (d / "manifest.sig").is_file()
    loaded = engine.load(d, trusted_keys=[pub])
    with torch.no_grad():
        assert_close(loaded(x), opt(x), what="signed artifact vs the optimized model")
