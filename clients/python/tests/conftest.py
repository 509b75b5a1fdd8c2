"""Fixtures: the real psr-reward binary on the fixture models, on free loopback ports."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from psr_server import MISSING, PsrServer

#: The shared server: small request limit (the client must chunk by /info) and a reference
#: cache of two entries (an entry is about 4.7 KB with the 384-d fixture embedder: 1.5 KB of
#: embedding and the copy-paste guard's 3 KB reference thumbnail).
SHARED_CONFIG = """
[limits]
max_items_per_request = 16
[rewards]
reference_cache_bytes = 10000
"""


@pytest.fixture(scope="session")
def server() -> Iterator[PsrServer]:
    """One psr-reward process for the whole session."""
    if MISSING:
        pytest.skip(MISSING)
    s = PsrServer.start(SHARED_CONFIG)
    yield s
    s.stop()


@pytest.fixture
def start_server() -> Iterator[type[PsrServer]]:
    """``start_server.start(config)`` for a test's own servers (stopped afterwards)."""
    if MISSING:
        pytest.skip(MISSING)
    started: list[PsrServer] = []

    class Starter(PsrServer):
        @staticmethod
        def start(
            config: str = "",
            port: int | None = None,
            extra_env: dict[str, str] | None = None,
            ca_file: Path | None = None,
        ) -> PsrServer:
            s = PsrServer.start(config, port, extra_env, ca_file)
            started.append(s)
            return s

    yield Starter
    for s in started:
        s.stop()
