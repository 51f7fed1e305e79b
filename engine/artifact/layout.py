"""The artifact's fixed names and limits, shared by the writer, the reader and the schema.

The limits are what a loader accepts before it reads anything else; examples/cpp/artifact_check.h
holds the same numbers (keep them in step).
"""
from __future__ import annotations

FORMAT = "engine-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"          # Ed25519 signature of manifest.json's exact bytes
MODULE = "model.so"
PLAN_FILE = "plan.json"
ENTRY = "main"
EXAMPLES_HINT = "examples/README.md (C++ runner examples/cpp/run_artifact.cc)"

# A manifest is a few KB (a 500-layer plan plus the kernel summary stays under 1 MB); 4 MiB
# leaves room and still refuses a 300 MB file before reading a byte of it.
MAX_MANIFEST_BYTES = 4 << 20
MAX_SIGNATURE_BYTES = 64 << 10
MAX_JSON_DEPTH = 32                 # objects / arrays nested in the manifest (free-form parts too)
MAX_RANK = 16
MAX_DIM = 2**31 - 1
MAX_ELEMENTS = 2**40                # per tensor: more is no phone model, and overflows int64 bytes
MAX_FILES = 4096
MAX_FILE_BYTES = 2**53              # sizes beyond this are not exact in a JSON double

# Tensor dtypes an artifact may declare (numpy's names; bfloat16 as TVM spells it).
DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64", "bool")
