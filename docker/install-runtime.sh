#!/usr/bin/env bash
# Build step of both images: the runtime files besides the binary and ONNX Runtime: the
# in-image config and the health check the HEALTHCHECK runs.
# Usage: docker/install-runtime.sh DEST
set -euo pipefail
dest=${1:?usage: install-runtime.sh DEST}
here=$(dirname "$0")
install -D -m 0644 "$here/config.toml" "$dest/etc/psr-reward/config.toml"
install -D -m 0755 "$here/healthcheck.sh" "$dest/usr/local/bin/psr-healthcheck"
mkdir -p "$dest/models"
