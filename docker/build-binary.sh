#!/usr/bin/env bash
# Build step of both images (and runnable on a bare machine): a release build of the service
# binary, installed as DEST/usr/local/bin/psr-reward.
# Usage: docker/build-binary.sh DEST [CARGO_FEATURES]   e.g. docker/build-binary.sh /out cuda,tensorrt
set -euo pipefail
dest=${1:?usage: build-binary.sh DEST [FEATURES]}
features=${2:-}
cd "$(dirname "$0")/.."
args=(build --release --locked --bin psr-reward)
[[ -n $features ]] && args+=(--features "$features")
cargo "${args[@]}"
install -D -m 0755 target/release/psr-reward "$dest/usr/local/bin/psr-reward"
