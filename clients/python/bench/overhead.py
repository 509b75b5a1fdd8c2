"""Client overhead per image: encoding, and encoding + round trip, at 1 and 16 concurrent chunks.

Starts the real binary (``PSR_BINARY``, default ``target/release/psr-reward``) on the fixture
models and scores ``--images`` generated 512x512 images with the aesthetic component only (the
cheapest model call, so what is measured is mostly the client and the HTTP path). Prints the
encoding cost, then per format and concurrency the wall time per image of ``score``, the time
per image the server was busy (the union of the answers' ``x-total-time`` windows) and the
difference, the client overhead: time in which the server had nothing to work on because the
client was encoding, serialising or transferring.

    .venv/bin/python clients/python/bench/overhead.py [--images 256] [--chunk 16]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
os.environ.setdefault("PSR_BINARY", str(HERE.parents[2] / "target" / "release" / "psr-reward"))

from psr_server import MISSING, PsrServer  # noqa: E402

from psr_reward_client import EncodeOptions, RewardClient, encode_image  # noqa: E402


def images(n: int, side: int = 512) -> list[Image.Image]:
    """Smooth colour gradients with mild noise: PNG sizes like generated images'."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    out = []
    for i in range(n):
        base = np.stack([x, y, (x + y + i / n) % 1.0], axis=-1) * 255
        noisy = base + rng.normal(0, 4, base.shape)
        out.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=16)
    args = ap.parse_args()
    if MISSING:
        sys.exit(MISSING)
    imgs = images(args.images)
    for fmt in ("png", "jpeg"):
        opts = EncodeOptions(format=fmt)  # type: ignore[arg-type]
        workers = min(8, os.cpu_count() or 1)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            encoded = list(pool.map(functools.partial(encode_image, opts=opts), imgs))
        dt = time.perf_counter() - t0
        kib = sum(len(e.b64) for e in encoded) / len(encoded) / 1024
        per = dt / len(imgs) * 1000
        print(f"encode {fmt}: {per:.2f} ms/image on {workers} threads, {kib:.0f} KiB base64")

    server = PsrServer.start("[limits]\nmax_items_per_request = 256\n")
    try:
        for fmt in ("png", "jpeg"):
            for concurrency in (1, 16):
                run(server.url, imgs, fmt, concurrency, args.chunk)
    finally:
        server.stop()


def busy_union(windows: list[tuple[float, float]]) -> float:
    """Length of the union of time windows (when the server was working on a request)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(windows):
        if a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def run(url: str, imgs: list[Image.Image], fmt: str, concurrency: int, chunk: int) -> None:
    """One measurement: wall time per image, and the part of it the server was idle."""
    windows: list[tuple[float, float]] = []

    def server_window(r: httpx.Response) -> None:
        if r.request.url.path == "/v1/reward" and r.status_code == 200:
            end = time.perf_counter()
            windows.append((end - float(r.headers["x-total-time"]) / 1000, end))

    with RewardClient(
        url,
        chunk_size=chunk,
        max_concurrency=concurrency,
        encode=EncodeOptions(format=fmt),  # type: ignore[arg-type]
        event_hooks={"response": [server_window]},
    ) as client:
        subjects = [[("red", imgs[0])]] * len(imgs)
        client.score(imgs[:chunk], "p", subjects[:chunk], rewards={"aesthetic": 1.0})  # warm-up
        windows.clear()
        t0 = time.perf_counter()
        client.score(imgs, "p", subjects, rewards={"aesthetic": 1.0})
        wall = time.perf_counter() - t0
    n = len(imgs)
    busy = busy_union(windows)
    print(
        f"{fmt:>4}, {concurrency:>2} concurrent chunks of {chunk}: {wall / n * 1000:6.2f} ms/image "
        f"wall, server busy {busy / n * 1000:6.2f} ms/image, client overhead (server idle) "
        f"{(wall - busy) / n * 1000:6.2f} ms/image"
    )


if __name__ == "__main__":
    main()
