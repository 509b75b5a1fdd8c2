"""Start the real ``psr-reward serve`` binary for a test, and talk to it over HTTP.

``running_service(manifest)`` runs the binary on a free port of 127.0.0.1 with the
given model manifest, waits until ``GET /ready`` answers 200, yields the base URL
and stops the process with SIGTERM afterwards (SIGKILL if it does not exit). The
HTTP helpers never go through a proxy from the environment.

Environment: ``PSR_BINARY`` (default ``target/debug/psr-reward``) and
``PSR_ORT_LIBRARY`` (default ``.deps/libonnxruntime.so``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("PSR_BINARY") or REPO / "target" / "debug" / "psr-reward")
ORT_LIBRARY = Path(
    os.environ.get("PSR_ORT_LIBRARY") or REPO / ".deps" / "libonnxruntime.so"
)
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 120.0

#: Skips a test (or, as ``pytestmark``, a module) when the binary is not built.
binary_missing = pytest.mark.skipif(
    not BINARY.is_file(),
    reason=(
        f"psr-reward binary not found at {BINARY}: build it with `cargo build` "
        "(or point PSR_BINARY at one)"
    ),
)

# Local requests must never go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> int:
    """Status code of ``GET url`` (0 when the connection fails)."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """``POST url`` with a JSON body; the status and the decoded (or raw) answer.

    A failed connection gives status 0 and a message instead of raising.
    """
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with _OPENER.open(req, timeout=REQUEST_TIMEOUT_S) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode("utf-8", errors="replace")
    except OSError as e:  # refused, reset, broken pipe (e.g. 404 before the body)
        return 0, f"connection failed: {e}"


def _log_tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the process is still running 30 s later."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_service(manifest: Path, config: Path | None = None) -> Iterator[str]:
    """Base URL of a ``psr-reward serve`` process on ``manifest``, once ready.

    ``config`` is the service's TOML file (``PSR_CONFIG``), when the test needs one.

    Fails the test (with the tail of the service's log) when the process exits
    before ``GET /ready`` answers 200, or is not ready within ``READY_TIMEOUT_S``.
    """
    port = free_port()
    env = dict(os.environ)
    env.update(
        PORT=str(port),
        PSR_HOST="127.0.0.1",
        PSR_MODELS=str(manifest),
        PSR_ORT_LIBRARY=str(ORT_LIBRARY),
    )
    if config is not None:
        env["PSR_CONFIG"] = str(config)
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="psr-service-") as tmp:
        log = Path(tmp) / "service.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(BINARY), "serve"],
                env=env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while http_get(f"{base}/ready") != 200:
                if proc.poll() is not None:
                    pytest.fail(
                        f"psr-reward exited with {proc.returncode} before /ready:\n"
                        + _log_tail(log)
                    )
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"psr-reward not ready after {READY_TIMEOUT_S:.0f} s:\n"
                        + _log_tail(log)
                    )
                time.sleep(0.2)
            yield base
        finally:
            _stop(proc)
