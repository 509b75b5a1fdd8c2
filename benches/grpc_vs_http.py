"""HTTP+JSON (base64 images) against gRPC (raw bytes) on the same workload, side by side.

Starts the release binary (``PSR_BINARY``, default ``target/release/psr-reward``) once on the
fixture models, with both listeners, and scores the same ``--images`` generated 512x512 PNGs
(sent as they are: no client-side encoding in the loop) through the Python client's two
transports, ``RewardClient(http://...)`` and ``RewardClient(grpc://...)``, in alternating
rounds, for two workloads: the aesthetic component alone (the cheapest model call, so the
edge's own cost shows) and subject consistency + aesthetic (one subject, a shared reference
that is sent once and then by hash). Per transport and workload it reports the median over
the rounds of:

- bytes on the wire per image, both directions: every byte of the TCP streams (HTTP
  headers, HTTP/2 frames, JSON or protobuf), counted by a loopback relay in a separate call
  (not in the timed rounds, which connect directly);
- server CPU per image: the server process's ``utime + stime`` (``/proc/PID/stat``) over the
  round, divided by the images;
- images/s: images over the round's wall time (the client runs on the same machine).

Prints a Markdown table (``benches/README.md`` keeps the figures).

    .venv/bin/python benches/grpc_vs_http.py [--images 128] [--rounds 3] [--chunk 16]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "clients" / "python" / "tests"))
os.environ.setdefault("PSR_BINARY", str(REPO / "target" / "release" / "psr-reward"))

from psr_reward_client import RewardClient
from psr_server import MISSING, PsrServer

#: Clock ticks per second of /proc/PID/stat's times.
TICKS = os.sysconf("SC_CLK_TCK")

WORKLOADS = {
    "aesthetic": {"aesthetic": 1.0},
    "subject_consistency + aesthetic": {"subject_consistency": 0.5, "aesthetic": 0.5},
}


def pngs(n: int, side: int = 512) -> list[bytes]:
    """Smooth colour gradients with mild noise and a red square (the fixture detector's
    "red"), as PNG files of a generated image's size."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    out = []
    for i in range(n):
        base = np.stack([x, y, (x + y + i / n) % 1.0], axis=-1) * 255
        noisy = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
        o = 40 + (i * 7) % 200
        noisy[o : o + 160, o : o + 160] = (255, 0, 0)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, format="PNG", compress_level=1)
        out.append(buf.getvalue())
    return out


def reference() -> bytes:
    """A red square on white: the subject's reference."""
    im = Image.new("RGB", (128, 128), (255, 255, 255))
    im.paste((255, 0, 0), (24, 24, 104, 104))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of stat(5)


class CountingRelay:
    """A loopback TCP relay to ``port`` that counts the bytes it passes, both directions."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bytes = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.listen_port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.port))
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                with self._lock:
                    self.bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def close(self) -> None:
        """Stops accepting (open connections end with their client)."""
        self._listener.close()


def wire_bytes(
    url: str,
    port: int,
    images: list[bytes],
    ref: bytes,
    rewards: dict[str, float],
    chunk: int,
) -> float:
    """Bytes per image on the TCP streams of one scoring call through a counting relay."""
    relay = CountingRelay(port)
    base = url.rsplit(":", 1)[0] + f":{relay.listen_port}"
    try:
        with RewardClient(base, chunk_size=chunk) as client:
            client.limits()  # /info (or Info) read before counting, as in the timed rounds
            start = relay.bytes
            client.score(
                images, "a red square", [[("red", ref)]] * len(images), rewards=rewards
            )
            return (relay.bytes - start) / len(images)
    finally:
        relay.close()


def round_of(
    client: RewardClient,
    pid: int,
    images: list[bytes],
    ref: bytes,
    rewards: dict[str, float],
) -> tuple[float, float]:
    """One scoring call: (server CPU ms per image, images/s)."""
    subjects = [[("red", ref)]] * len(images)
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    result = client.score(
        images, "a red square", subjects, rewards=rewards, timeout=600
    )
    wall = time.perf_counter() - t0
    c1 = cpu_seconds(pid)
    assert all(r is not None for r in result.rewards), "every image scored"
    n = len(images)
    return (c1 - c0) * 1000 / n, n / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=16)
    args = ap.parse_args()
    if MISSING:
        sys.exit(MISSING)
    images, ref = pngs(args.images), reference()
    kib = sum(len(b) for b in images) / len(images) / 1024
    print(
        f"{args.images} images of 512x512, PNG {kib:.0f} KiB each; chunks of {args.chunk}"
    )
    server = PsrServer.start()
    try:
        pid = server.proc.pid
        ends = {
            "HTTP/JSON, base64": (server.url, server.port),
            "gRPC, bytes": (server.grpc_url, server.grpc_port),
        }
        clients = {
            k: RewardClient(url, chunk_size=args.chunk) for k, (url, _) in ends.items()
        }
        print(
            "\n| workload | transport | bytes on the wire / image | server CPU / image "
            "| images/s |"
        )
        print("|---|---|---:|---:|---:|")
        for workload, rewards in WORKLOADS.items():
            rows: dict[str, list[tuple[float, float]]] = {k: [] for k in clients}
            for c in clients.values():  # warm-up: connections, reference cache, stubs
                c.score(
                    images[:4], "a red square", [[("red", ref)]] * 4, rewards=rewards
                )
            for _ in range(args.rounds):
                for name, c in clients.items():
                    rows[name].append(round_of(c, pid, images, ref, rewards))
            for name, got in rows.items():
                cpu, rate = (statistics.median(col) for col in zip(*got, strict=True))
                url, port = ends[name]
                wire = wire_bytes(url, port, images, ref, rewards, args.chunk)
                print(
                    f"| {workload} | {name} | {wire / 1024:.0f} KiB | {cpu:.1f} ms "
                    f"| {rate:.1f} |"
                )
        for c in clients.values():
            c.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
