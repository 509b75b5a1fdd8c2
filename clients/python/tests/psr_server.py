"""Start the real ``psr-reward serve`` binary for the client tests.

``PsrServer.start(config=...)`` runs the binary on a free 127.0.0.1 port with the fixture
model set (``models/fixtures.toml``) and an optional TOML config, and waits until
``GET /ready`` answers 200. Every server also serves the gRPC API on a port of its own
(``grpc_url``, ``grpc://127.0.0.1:PORT``). Environment: ``PSR_BINARY`` (default
``target/debug/psr-reward``), ``PSR_ORT_LIBRARY`` (default ``.deps/libonnxruntime.so``),
``PSR_FIXTURES_DIR`` (default ``tests/fixtures/generated``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
BINARY = Path(os.environ.get("PSR_BINARY") or REPO / "target" / "debug" / "psr-reward")
ORT_LIBRARY = Path(os.environ.get("PSR_ORT_LIBRARY") or REPO / ".deps" / "libonnxruntime.so")
FIXTURES = Path(os.environ.get("PSR_FIXTURES_DIR") or REPO / "tests" / "fixtures" / "generated")
MANIFEST = REPO / "models" / "fixtures.toml"
READY_TIMEOUT_S = 60.0

#: Why the suite cannot run here, or None.
MISSING = (
    f"psr-reward binary not found at {BINARY} (build it with `cargo build`)"
    if not BINARY.is_file()
    else f"fixture models missing in {FIXTURES} (run `make fixtures`)"
    if not (FIXTURES / "detector.onnx").is_file()
    else f"ONNX Runtime library missing at {ORT_LIBRARY} (run `make setup`)"
    if not ORT_LIBRARY.is_file()
    else None
)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PsrServer:
    """One ``psr-reward serve`` process."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        port: int,
        workdir: Path,
        ca_file: Path | None,
        grpc_port: int,
    ) -> None:
        self.proc = proc
        self.port = port
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{port}"
        self.grpc_port = grpc_port
        self.grpc_url = f"grpc://127.0.0.1:{grpc_port}"
        self.workdir = workdir
        self.verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        )

    @staticmethod
    def start(
        config: str = "",
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
        ca_file: Path | None = None,
    ) -> PsrServer:
        """Starts a server with ``config`` (TOML text) and ``extra_env``, once ready
        (``ca_file``: it serves HTTPS with a certificate that CA signed)."""
        port = port or free_port()
        grpc_port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix="psr-client-test-"))
        env = dict(os.environ)
        env.update(
            PORT=str(port),
            PSR_HOST="127.0.0.1",
            PSR_MODELS=str(MANIFEST),
            PSR_ORT_LIBRARY=str(ORT_LIBRARY),
            PSR_CPU_THREADS="2",
            PSR_GRPC_PORT=str(grpc_port),
        )
        env.update(extra_env or {})
        if config:
            (workdir / "config.toml").write_text(config)
            env["PSR_CONFIG"] = str(workdir / "config.toml")
        log = open(workdir / "service.log", "wb")  # noqa: SIM115 (the process keeps it)
        proc = subprocess.Popen(
            [str(BINARY), "serve"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
        server = PsrServer(proc, port, workdir, ca_file, grpc_port)
        server.wait_ready()
        return server

    def log_tail(self) -> str:
        """The end of the server's log."""
        return (self.workdir / "service.log").read_text(errors="replace")[-3000:]

    def wait_ready(self) -> None:
        """Polls ``GET /ready``; fails the test with the log if the server does not come up."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                r = httpx.get(f"{self.url}/ready", timeout=2, trust_env=False, verify=self.verify)
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                pytest.fail(f"psr-reward did not become ready:\n{tail}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, with requests in flight."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; removes the work folder."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
