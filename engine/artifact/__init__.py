"""Artifacts: the directory a mobile app embeds, written and loaded here.

    path = save_artifact("out/resnet18-arm64", compiled, get_target("arm64"),
                         inputs=[("x", (1, 3, 32, 32), "float32")],
                         outputs=[("logits", (1, 10), "float32")], plan=opt.plan,
                         signing_key="keys/release.pem")          # optional: manifest.sig
    art = load_artifact("out/resnet18-host",                      # where the target matches
                        trusted_keys=["keys/release.pub"])        # optional: require a signature
    y = art(x)                                   # numpy in -> numpy out, torch in -> torch out

Layout (format version 1):

    <dir>/model.so       the compiled Relax VM module for the target (cross-compiled when the
                         target is not this machine)
    <dir>/plan.json      the per-layer plan (when one is given)
    <dir>/manifest.json  format, engine / tvm / tvm_ffi versions, target (name, arch, llvm dict,
                         required CPU features), input / output names, shapes, dtypes, the plan,
                         created_at, build host, and sha256 + size of every other file
    <dir>/manifest.sig   (signed artifacts) Ed25519 signature of manifest.json's bytes + key id

The package, one job per module:
    layout       names and limits          specs        tensor specs, deterministic input
    schema       manifest / signature schema and strict JSON parsing
    fileio       bounded, non-blocking reads            host        arch, toolchains, CPU features
    signing      Ed25519 keys, manifest.sig            destination  where a save may write
    writer       save_artifact                         reader       read / verify / load
    loaded       LoadedArtifact (the callable)
Trust model (what sha256 and signatures do and don't protect against): docs/artifact-trust.md.
The C++ side (examples/cpp) reads the same manifest and signature.
"""
from .destination import check_save_destination, clean_stale_work_dirs
from .host import check_runnable_here, cross_compiler, host_arch
from .layout import (DTYPES, ENTRY, EXAMPLES_HINT, FORMAT, FORMAT_VERSION, MANIFEST,
                     MAX_MANIFEST_BYTES, MODULE, PLAN_FILE, SIGNATURE)
from .loaded import LoadedArtifact
from .reader import load_artifact, read_manifest, verify_artifact
from .signing import (generate_signing_key, key_id, load_public_key, load_signing_key,
                      public_key_hex, write_public_key, write_signing_key)
from .specs import TensorSpec, deterministic_input
from .writer import save_artifact

__all__ = [
    "DTYPES", "ENTRY", "EXAMPLES_HINT", "FORMAT", "FORMAT_VERSION", "MANIFEST",
    "MAX_MANIFEST_BYTES", "MODULE", "PLAN_FILE", "SIGNATURE", "LoadedArtifact", "TensorSpec",
    "check_runnable_here", "check_save_destination", "clean_stale_work_dirs", "cross_compiler",
    "deterministic_input", "generate_signing_key", "host_arch", "key_id", "load_artifact",
    "load_public_key", "load_signing_key", "public_key_hex", "read_manifest", "save_artifact",
    "verify_artifact", "write_public_key", "write_signing_key",
]
