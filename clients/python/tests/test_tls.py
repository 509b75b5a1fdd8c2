"""HTTPS: the client verifies the server's certificate against a private CA (``ca_file``)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import AESTHETIC, TOLERANCE, red_ref, solid
from psr_server import PsrServer

from psr_reward_client import RewardClient, TlsVerificationError


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA (openssl CLI)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed (Debian package `openssl`, in the Makefile's APT_PACKAGES)"
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_with_a_private_ca(start_server: type[PsrServer], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = start_server.start(f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n', ca_file=cert)
    assert server.url.startswith("https://")
    with RewardClient(server.url, ca_file=cert) as client:
        result = client.score([solid(102)], "p", [[("red", red_ref())]], rewards=AESTHETIC)
    assert result.rewards == pytest.approx([102 / 255], abs=TOLERANCE)

    # Without the CA the certificate is refused at once, not retried until the deadline.
    with RewardClient(server.url, timeout=30) as client:
        t0 = time.monotonic()
        with pytest.raises(TlsVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
            client.score([solid(102)], "p", [[("red", red_ref())]], rewards=AESTHETIC)
        assert time.monotonic() - t0 < 5
