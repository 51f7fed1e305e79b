"""The C++ runner's own checks (examples/cpp): its SHA-2 and Ed25519 code against independent
implementations (hashlib, the cryptography package) and RFC 8032's test vectors; --trusted-key
verifying manifest.sig before model.so is loaded; and a clear exit-3 message, never a crash, for
a damaged manifest (wrong field types, deep nesting, a huge file, a FIFO) or a manifest whose
input / output specs do not describe the module."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess

import pytest

from engine import artifact as art

from artifact_helpers import MARKER_ENV, edit_manifest, replace_module, sign_in_place

# RFC 8032 section 7.1, TEST 1-3: (secret key, public key, message, signature), hex.
RFC8032_VECTORS = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]
L = 2**252 + 27742317777372353535851937790883648493      # the group order (RFC 8032 5.1)


def _batch(exe, lines, prefix=()):
    r = subprocess.run([*prefix, str(exe)], input="\n".join(lines) + "\n", capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert len(out) == len(lines)
    return out


def _verify_line(pub: bytes, sig: bytes, msg: bytes) -> str:
    return f"verify {pub.hex()} {sig.hex()} {msg.hex() or '-'}"


def test_rfc8032_vectors(crypto_check):
    from cryptography.hazmat.primitives.asymmetric import ed25519
    lines = ["selftest"]
    for secret, pub, msg, sig in RFC8032_VECTORS:
        # the vectors as printed are what cryptography computes (guards against a typo here)
        key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
        assert art.public_key_hex(key) == pub
        assert key.sign(bytes.fromhex(msg)).hex() == sig
        lines.append(_verify_line(bytes.fromhex(pub), bytes.fromhex(sig), bytes.fromhex(msg)))
        bad = bytearray(bytes.fromhex(sig))
        bad[63] ^= 0x01
        lines.append(_verify_line(bytes.fromhex(pub), bytes(bad), bytes.fromhex(msg)))
    out = _batch(crypto_check, lines)
    assert out[0] == "ok"
    assert out[1:] == ["valid", "invalid"] * len(RFC8032_VECTORS)


def _mutations(rng, pub, sig, msg):
    """(description, pub, sig, msg, expected) cases around one valid signature."""
    s = int.from_bytes(sig[32:], "little")
    flip = lambda b, i: b[:i] + bytes([b[i] ^ (1 << rng.randrange(8))]) + b[i + 1:]   # noqa: E731
    cases = [("valid", pub, sig, msg, True),
             ("R bit", pub, flip(sig, rng.randrange(32)), msg, False),
             ("S bit", pub, flip(sig, 32 + rng.randrange(31)), msg, False),
             ("S + L (same residue, not canonical)", pub,
              sig[:32] + ((s + L) % 2**256).to_bytes(32, "little"), msg, False),
             ("other message", pub, sig, msg + b"x", False),
             ("other key", flip(pub, rng.randrange(31)), sig, msg, False)]
    if msg:
        cases.append(("message bit", pub, sig, flip(msg, rng.randrange(len(msg))), False))
    return cases


def test_ed25519_against_cryptography(crypto_check):
    """Signatures by cryptography verify; every mutation is refused, as cryptography refuses it."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519
    rng = random.Random(8032)
    cases = []
    for n in list(range(0, 5)) + [rng.randrange(5, 400) for _ in range(35)] + [111, 112, 127, 128]:
        key = ed25519.Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        msg = rng.randbytes(n)
        cases += _mutations(rng, bytes.fromhex(art.public_key_hex(key)), key.sign(msg), msg)
    for _ in range(20):                  # random 32 bytes as a key: mostly not a curve point
        cases.append(("random key", rng.randbytes(32), rng.randbytes(64), b"m", False))
    out = _batch(crypto_check, [_verify_line(p, s, m) for _, p, s, m, _ in cases])
    for (what, pub, sig, msg, want), got in zip(cases, out):
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
            ref = True
        except (InvalidSignature, ValueError):
            ref = False
        assert ref == want, f"{what}: the test's expectation disagrees with cryptography"
        assert got == ("valid" if want else "invalid"), f"{what}: C++ says {got}"


def test_sha2_against_hashlib(crypto_check):
    import hashlib
    rng = random.Random(180)
    msgs = [rng.randbytes(n) for n in [*range(0, 140), 239, 240, 255, 256, 1000, 4097]]
    lines = [f"sha256 {m.hex() or '-'}" for m in msgs] + [f"sha512 {m.hex() or '-'}" for m in msgs]
    out = _batch(crypto_check, lines)
    assert out == [hashlib.sha256(m).hexdigest() for m in msgs] + \
        [hashlib.sha512(m).hexdigest() for m in msgs]


def test_key_files_read_by_cpp(crypto_check, release_key, tmp_path):
    pem = art.write_public_key(release_key, tmp_path / "k.pub")
    hexf = art.write_public_key(release_key, tmp_path / "k.hex", fmt="hex")
    priv = art.write_signing_key(release_key, tmp_path / "k.pem")
    junk = tmp_path / "junk"
    junk.write_text("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n")
    want = f"{art.key_id(release_key)} {art.public_key_hex(release_key)}"
    out = _batch(crypto_check, [f"keyfile {p}" for p in (pem, hexf, priv, junk, tmp_path / "no")])
    assert out[:2] == [want, want]
    assert out[2].startswith("error: --trusted-key") and "not a PEM public key" in out[2]
    assert "not a PEM public key" in out[3]
    assert "is missing" in out[4]


# ---- the runner ----------------------------------------------------------------------------------

def _run(runner, *args, env=None, timeout=120):
    return subprocess.run([str(runner), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def signed_copy(tiny_artifact, tmp_path, release_key):
    d = tmp_path / "signed"
    shutil.copytree(tiny_artifact, d)
    sign_in_place(d, release_key)
    return d


@pytest.fixture
def key_files(release_key, tmp_path):
    return (art.write_public_key(release_key, tmp_path / "k.pub"),
            art.write_public_key(release_key, tmp_path / "k.hex", fmt="hex"))


def test_runner_verifies_signature(host_runner, signed_copy, key_files, release_key, tiny_case,
                                   tmp_path):
    pem, hexf = key_files
    kid = art.key_id(release_key)
    r = _run(host_runner, signed_copy, "--trusted-key", pem, "--check-only")
    assert r.returncode == 0, r.stderr
    assert f"signature: ok, signed by trusted key {kid}" in r.stdout and "check: ok" in r.stdout
    out = tmp_path / "out.f32"
    other = art.write_public_key(art.generate_signing_key(), tmp_path / "other.pub")
    r = _run(host_runner, signed_copy, "--trusted-key", other, "--trusted-key", hexf,
             "--input", _input_file(tmp_path, tiny_case), "--output", out)
    assert r.returncode == 0, r.stderr
    import numpy as np
    from artifact_helpers import assert_close
    assert_close(np.fromfile(out, dtype="<f4").reshape(tuple(tiny_case.ref.shape)), tiny_case.ref)


def _input_file(tmp_path, case):
    p = tmp_path / "x.f32"
    case.x.numpy().astype("<f4").tofile(p)
    return p


def _refused(r, *needles):
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "artifact check failed" in r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def test_runner_refuses_bad_signatures(host_runner, tiny_artifact, signed_copy, key_files,
                                       tmp_path):
    pem, _ = key_files
    _refused(_run(host_runner, tiny_artifact, "--trusted-key", pem),
             "is not signed (no manifest.sig), but --trusted-key was given")
    other = art.write_public_key(art.generate_signing_key(), tmp_path / "other.pub")
    _refused(_run(host_runner, signed_copy, "--trusted-key", other), "which is not a trusted key")
    m = (signed_copy / "manifest.json").read_bytes()
    (signed_copy / "manifest.json").write_bytes(m.replace(b'"TinyNet"', b'"TinyNeT"'))
    _refused(_run(host_runner, signed_copy, "--trusted-key", pem), "signature does not verify",
             "modified after it was signed")
    (signed_copy / "manifest.json").write_bytes(m)
    sig = json.loads((signed_copy / "manifest.sig").read_text())
    (signed_copy / "manifest.sig").write_text(json.dumps(dict(sig, signature=7)))
    _refused(_run(host_runner, signed_copy, "--trusted-key", pem),
             "manifest.sig: field 'signature' must be 128 lowercase hex digits, got 7")
    # the caller's mistakes are usage errors (exit 2), not the artifact's
    r = _run(host_runner, signed_copy, "--trusted-key", tmp_path / "none.pub")
    assert r.returncode == 2 and "--trusted-key" in r.stderr and "is missing" in r.stderr
    r = _run(host_runner, signed_copy, "--trusted-key", pem, "--no-verify")
    assert r.returncode == 2 and "cannot be combined" in r.stderr


def test_runner_refuses_replaced_module_before_dlopen(host_runner, signed_copy, key_files,
                                                      marker_so, tmp_path):
    """model.so replaced, sha256 / size updated in manifest.json: refused by the signature check
    before the dynamic loader maps it (its constructor never runs). Control: without
    --trusted-key the checksums match and the constructor runs."""
    pem, _ = key_files
    replace_module(signed_copy, marker_so)
    marker = tmp_path / "constructor-ran"
    env = dict(os.environ, **{MARKER_ENV: str(marker)})
    _refused(_run(host_runner, signed_copy, "--trusted-key", pem, env=env),
             "signature does not verify")
    assert not marker.exists(), "model.so was loaded before the signature refused it"
    r = _run(host_runner, signed_copy, env=env)
    assert marker.exists() and "is not a Relax VM module" in r.stderr, r.stderr


# wrong field types etc.: (id, edit of the manifest dict, text the message must hold)
FIELD_CASES = [
    ("shape dim string", lambda m: m["outputs"][0]["shape"].__setitem__(1, "x"),
     "field 'outputs[0].shape[1]' must be a non-negative int, got \"x\""),
    ("inputs object", lambda m: m.update(inputs={"x": 1}),
     "field 'inputs' must be a list of tensor specs, got an object"),
    ("files list", lambda m: m.update(files=[1]), "field 'files' must be an object, got a list"),
    ("size string", lambda m: m["files"]["model.so"].update(size="12"),
     "field 'files[\"model.so\"].size' must be a non-negative int, got \"12\""),
    ("size float", lambda m: m["files"]["model.so"].update(size=1.5),
     "field 'files[\"model.so\"].size' must be a non-negative int, got 1.5"),
    ("sha256 null", lambda m: m["files"]["model.so"].update(sha256=None),
     "field 'files[\"model.so\"].sha256' must be 64 lowercase hex digits, got null"),
    ("target null", lambda m: m.update(target=None), "field 'target' must be an object, got null"),
    ("arch missing", lambda m: m["target"].pop("arch"), "field 'target.arch' is required but missing"),
    ("dtype unknown", lambda m: m["inputs"][0].update(dtype="float33"),
     "field 'inputs[0].dtype' must be a dtype"),
    ("name int", lambda m: m["inputs"][0].update(name=5), "field 'inputs[0].name' must be a non-empty "
                                                         "string"),
    ("negative dim", lambda m: m["inputs"][0].update(shape=[-1]),
     "field 'inputs[0].shape[0]' must be a non-negative int"),
    ("version string", lambda m: m.update(format_version="1"), "unknown artifact format version \"1\""),
    ("module path", lambda m: m.update(module="../../bin/sh"), "field 'module' must be a plain file name"),
    ("path traversal", lambda m: m["files"].update({"../x": {"sha256": "0" * 64, "size": 1}}),
     "field 'files[\"../x\"]' is not a file inside the artifact"),
    ("module unlisted", lambda m: m["files"].pop("model.so"), "lists no sha256 for the module"),
    ("huge number", lambda m: m["files"]["model.so"].update(size=10**500),
     "a 501-character number"),
]


@pytest.mark.parametrize("case", FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_runner_manifest_field_errors(host_runner, tiny_copy, case):
    _, edit, needle = case
    edit_manifest(tiny_copy, edit)
    _refused(_run(host_runner, tiny_copy, "--check-only"), "manifest.json", needle)


@pytest.mark.parametrize("content, needle", [
    ("[" * 200000 + "]" * 200000, "JSON nested deeper than 32 levels"),
    ('{"format": "engine-artifact", "format": "engine-artifact"}', "appears twice in one object"),
    (b'{"format": "\xff"}', "is not UTF-8 text"),
    ("[]", "must hold a JSON object, got a list of 0 items"),
    ('{"format": "engine-artifact", ', "is not valid JSON"),
], ids=["deep", "duplicate key", "not utf-8", "not an object", "truncated"])
def test_runner_damaged_manifest(host_runner, tiny_copy, content, needle):
    p = tiny_copy / "manifest.json"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    _refused(_run(host_runner, tiny_copy), needle)


def test_runner_huge_manifest_and_fifo(host_runner, tiny_copy):
    p = tiny_copy / "manifest.json"
    with open(p, "r+b") as f:
        f.truncate(300 << 20)                               # sparse: 300 MB, nothing to read
    _refused(_run(host_runner, tiny_copy), "is 314572800 bytes, more than the 4194304",
             "refused without reading it")
    p.unlink()
    os.mkfifo(p)                                            # would block a plain open() forever
    _refused(_run(host_runner, tiny_copy, timeout=60), "manifest.json is not a regular file")


def test_runner_refuses_specs_that_do_not_describe_the_module(host_runner, tiny_copy):
    """An edited output shape is caught after the first run, an extra input before any run,
    an edited input shape when the module refuses it: each names the field and both sides."""
    edit_manifest(tiny_copy, lambda m: m["outputs"][0].update(shape=[1, 7]))
    _refused(_run(host_runner, tiny_copy), "output 0 'logits'", "is float32[1, 5], but field "
             "'outputs[0]' of manifest.json says float32[1, 7]")
    edit_manifest(tiny_copy, lambda m: m["outputs"][0].update(shape=[1, 5]))
    edit_manifest(tiny_copy, lambda m: m["inputs"].append(
        {"name": "y", "shape": [2], "dtype": "float32"}))
    _refused(_run(host_runner, tiny_copy), "its function 'main' takes 1 input(s), but field "
             "'inputs' of manifest.json lists 2")
    edit_manifest(tiny_copy, lambda m: m["inputs"].pop())
    edit_manifest(tiny_copy, lambda m: m["inputs"][0].update(shape=[1, 3, 16, 16]))
    _refused(_run(host_runner, tiny_copy), "input 0 'x'", "expects R.Tensor((1, 3, 8, 8), "
             "dtype=\"float32\"), but field 'inputs[0]' of manifest.json says float32[1, 3, 16, 16]")
