"""Images with known scores under the fixture models, an HTTP recorder, and a way to hold a
server's only request slot.

Fixture models (tests/fixtures/README.md): the aesthetic score is 10 x mean chroma, times the
default normalisation 0.1, so a solid (v, 0, 0) image scores v / 255; the detector finds
solid red/green/blue/... shapes named by colour words, the embedder compares colour layouts.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image, ImageDraw

AESTHETIC = {"aesthetic": 1.0}
TOLERANCE = 1e-4


def solid(v: int, size: tuple[int, int] = (40, 32)) -> Image.Image:
    """A solid (v, 0, 0) image: aesthetic score v / 255."""
    return Image.new("RGB", size, (v, 0, 0))


def square(
    colour: tuple[int, int, int], box: tuple[int, int, int, int], size: int = 64
) -> Image.Image:
    """A white image with one filled rectangle."""
    im = Image.new("RGB", (size, size), (255, 255, 255))
    ImageDraw.Draw(im).rectangle(box, fill=colour)
    return im


RED = (255, 0, 0)
BLUE = (0, 0, 255)


def red_ref(offset: int = 0) -> Image.Image:
    """A red-square reference (``offset`` makes distinct images)."""
    return square(RED, (8 + offset, 8, 48 + offset, 48))


@dataclass
class Seen:
    """One answered request as the recorder saw it."""

    method: str
    url: str
    path: str
    status: int
    retry_after: str | None
    body: dict[str, Any] | None


class Recorder:
    """httpx response hook (sync) recording every answered request, thread-safe."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def __call__(self, response: httpx.Response) -> None:
        req = response.request
        body = json.loads(req.content) if req.method == "POST" and req.content else None
        seen = Seen(
            req.method,
            f"{req.url.scheme}://{req.url.host}:{req.url.port}",
            req.url.path,
            response.status_code,
            response.headers.get("retry-after"),
            body,
        )
        with self._lock:
            self.seen.append(seen)

    def hooks(self) -> dict[str, list[Any]]:
        """The ``event_hooks`` argument for a client."""
        return {"response": [self]}

    def posts(self) -> list[Seen]:
        """The answered ``POST /v1/reward`` requests."""
        with self._lock:
            return [s for s in self.seen if s.path == "/v1/reward"]

    def clear(self) -> None:
        """Forgets what was recorded."""
        with self._lock:
            self.seen.clear()


#: One request at a time: a second concurrent one is answered 429 with Retry-After. A body
#: that never arrives holds the slot for up to 30 s.
BUSY_CONFIG = "[limits]\nmax_concurrent_requests = 1\nbody_timeout_ms = 30000\n"


def in_flight(url: str) -> int:
    """Requests the server holds right now (``GET /info``)."""
    return int(httpx.get(f"{url}/info", trust_env=False).json()["in_flight"]["requests"])


def hold_the_slot(url: str) -> socket.socket:
    """A request whose body never comes: it holds the server's only slot, deterministically,
    until the socket closes (no race with how fast the machine runs a slow request)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/embed HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 100000\r\n\r\n{"
    )
    deadline = time.monotonic() + 10
    while in_flight(url) < 1:
        assert time.monotonic() < deadline, "the held request never took the slot"
        time.sleep(0.01)
    return sock
