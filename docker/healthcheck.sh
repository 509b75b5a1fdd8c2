#!/usr/bin/env bash
# The image's HEALTHCHECK: GET /health on the local port must answer 200 within 3 s. Pure bash
# (/dev/tcp), so the image needs no curl. PSR_HEALTH_PATH may name /ready instead.
set -euo pipefail
port=${PORT:-8080}
path=${PSR_HEALTH_PATH:-/health}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 3 status <&3
[[ $status == "HTTP/1.1 200"* ]]
