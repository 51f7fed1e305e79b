#!/usr/bin/env bash
# The aarch64 TVM runtime an arm64 artifact needs (libtvm_runtime.so, libtvm_ffi.so, tvm_ffi
# headers), taken from the registry's aarch64 wheels. Idempotent. Prints the directory.
#   .cache/aarch64-runtime/{lib,include}
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=".cache/aarch64-runtime"
if [ -f "$OUT/lib/libtvm_runtime.so" ] && [ -f "$OUT/lib/libtvm_ffi.so" ] && [ -d "$OUT/include" ]; then
  echo "$OUT"; exit 0
fi
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
"${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: \
  --platform manylinux_2_28_aarch64 --python-version 3.11 \
  apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.15.post2 -d "$TMP" >&2
mkdir -p "$OUT/lib" "$OUT/include"
"${PYTHON:-python3}" - "$TMP" "$OUT" <<'PY'
import sys, zipfile, pathlib, shutil
tmp, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for whl in tmp.glob("*.whl"):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            p = pathlib.PurePosixPath(name)
            if p.name in ("libtvm_runtime.so", "libtvm_ffi.so") and "lib" in p.parts:
                (out / "lib" / p.name).write_bytes(z.read(name))
            elif name.startswith("tvm_ffi/include/") and not name.endswith("/"):
                dst = out / "include" / pathlib.PurePosixPath(name).relative_to("tvm_ffi/include")
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(z.read(name))
missing = [n for n in ("libtvm_runtime.so", "libtvm_ffi.so") if not (out / "lib" / n).exists()]
if missing:
    sys.exit(f"aarch64 wheels did not contain {missing}")
PY
echo "$OUT"
