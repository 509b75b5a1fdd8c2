#!/usr/bin/env bash
# Build step of both images: the ONNX Runtime shared libraries from the PyPI wheel (the `ort`
# crate loads them at run time), installed under DEST/opt/onnxruntime/lib with the stable name
# libonnxruntime.so. VARIANT `cpu` takes `onnxruntime`; `gpu` takes `onnxruntime-gpu`, whose
# CUDA/TensorRT provider libraries come along (they need the CUDA and cuDNN runtime of the image).
# Usage: docker/fetch-onnxruntime.sh cpu|gpu VERSION DEST      (PIP, PYTHON: which to use)
set -euo pipefail
variant=${1:?usage: fetch-onnxruntime.sh cpu|gpu VERSION DEST}
version=${2:?version}
dest=${3:?dest}
pip=${PIP:-pip}
python=${PYTHON:-python3}
case $variant in
  cpu) package=onnxruntime ;;
  gpu) package=onnxruntime-gpu ;;
  *) echo "unknown variant $variant (cpu or gpu)" >&2; exit 2 ;;
esac
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  "$package==$version" -d "$wheels"
lib="$dest/opt/onnxruntime/lib"
mkdir -p "$lib"
# Only the shared libraries under onnxruntime/capi/: no Python is needed at run time.
"$python" - "$wheels"/*.whl "$lib" <<'PY'
import sys, zipfile, os
wheel, lib = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("onnxruntime/capi/lib") and ".so" in n]
    if not names:
        sys.exit(f"no shared library in {wheel}")
    for n in names:
        target = os.path.join(lib, os.path.basename(n))
        with z.open(n) as src, open(target, "wb") as out:
            out.write(src.read())
        print(os.path.basename(n))
PY
main=$(find "$lib" -maxdepth 1 -name 'libonnxruntime.so.*' | sort | tail -n 1)
[[ -n $main ]] || { echo "libonnxruntime.so.* missing from $package $version" >&2; exit 1; }
ln -sf "$(basename "$main")" "$lib/libonnxruntime.so"
