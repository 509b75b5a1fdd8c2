#!/usr/bin/env bash
# What CI can check of the images without a registry: run the images' build steps on this
# machine into a temporary root (ONNX Runtime from the same wheel, the in-image config and health
# check), take an already-built binary instead of a second cold cargo build, mount fixture models
# at <root>/models as a volume would be, start the service from that layout alone (clean
# environment) and probe it with the image's own HEALTHCHECK script, on /health then /ready.
# Usage: docker/check-runtime.sh BINARY MODELS_DIR MANIFEST   (PIP, PYTHON: which to use)
set -euo pipefail
binary=${1:?usage: check-runtime.sh BINARY MODELS_DIR MANIFEST}
models=${2:?models dir}
manifest=${3:?manifest (paths relative to its folder, rewritten to the mounted folder)}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
python=${PYTHON:-python3}

# The version the images fetch must be the one the tests run against.
pinned=$(sed -n 's/^onnxruntime==//p' "$repo/requirements.txt")
for f in "$here"/Dockerfile.cpu "$here"/Dockerfile.cuda; do
  grep -q "^ARG ONNXRUNTIME_VERSION=$pinned\$" "$f" \
    || { echo "$f: ONNXRUNTIME_VERSION differs from requirements.txt ($pinned)" >&2; exit 1; }
done

root=$(mktemp -d)
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

install -D -m 0755 "$binary" "$root/usr/local/bin/psr-reward"
"$here/fetch-onnxruntime.sh" cpu "$pinned" "$root" >/dev/null
"$here/install-runtime.sh" "$root"
cp "$models"/*.onnx "$models"/*.json "$root/models/"
# The mounted folder holds the manifest next to its models.
sed -E 's#^(path|tokenizer) = ".*/([^/"]+)"#\1 = "\2"#' "$manifest" >"$root/models/manifest.toml"

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log="$root/service.log"
env -i PATH=/usr/bin:/bin HOME="$root" PORT="$port" PSR_HOST=127.0.0.1 \
  PSR_CONFIG="$root/etc/psr-reward/config.toml" \
  PSR_ORT_LIBRARY="$root/opt/onnxruntime/lib/libonnxruntime.so" \
  PSR_MODELS="$root/models/manifest.toml" \
  "$root/usr/local/bin/psr-reward" serve >"$log" 2>&1 &
pid=$!

probe() { # probe PATH SECONDS: the image's health check until it passes
  local deadline=$((SECONDS + $2))
  until PORT=$port PSR_HEALTH_PATH=$1 "$root/usr/local/bin/psr-healthcheck" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "service exited before $1 answered 200:" >&2; tail -n 40 "$log" >&2; exit 1
    fi
    if ((SECONDS > deadline)); then
      echo "$1 not 200 after $2 s:" >&2; tail -n 40 "$log" >&2; exit 1
    fi
    sleep 0.2
  done
}
probe /health 30
probe /ready 120
# A wrong path must fail the same check (the probe is not always-true).
if PORT=$port PSR_HEALTH_PATH=/no-such-route "$root/usr/local/bin/psr-healthcheck" 2>/dev/null; then
  echo "health check passed on a 404 route" >&2; exit 1
fi
kill -TERM "$pid"
wait "$pid" && status=0 || status=$?
pid=
[[ $status -eq 0 ]] || { echo "service exited with $status after SIGTERM" >&2; tail -n 40 "$log" >&2; exit 1; }
grep -q 'shut down cleanly' "$log" || { echo "no clean shutdown in the log" >&2; exit 1; }
echo "runtime layout ok: $(ls "$root/opt/onnxruntime/lib" | tr '\n' ' ')"
