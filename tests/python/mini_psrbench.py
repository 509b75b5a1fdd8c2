"""A generated mini-PSRBench with known answers, and the loopback judge it needs.

All seven subsets, two samples each (``copies`` times over), plus one missing image;
800x800 black scenes with 200x200 squares, one per quadrant, scored by the fixture models
(``models/fixtures.toml``), so every number is known by hand:

* a generated image with every subject's square: each subject found, similarity 1;
* solid yellow: nothing found, the whole image against red 2/3 and against blue 0;
* aesthetic (10 x mean chroma, normalised / 10): 0.0625 per square, 1 for solid yellow.

The judge is an OpenAI-compatible chat server that answers the score written in the
instruction (``JUDGE=7``; ``JUDGE=DROP`` answers ``[Score]: 10.0.``, which the PSR scripts
drop), after ``delay_s``. Used by ``test_eval_cli.py`` and ``benches/eval_psrbench.py``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

SIZE = 800
#: Top-left corners of the four quadrants' squares.
QUADRANTS = [(100, 100), (500, 100), (100, 500), (500, 500)]
COLOURS = {
    "red": (255, 0, 0),
    "blue": (0, 0, 255),
    "green": (0, 255, 0),
    "cyan": (0, 255, 255),
}
SQUARE_AESTHETIC = 200 * 200 / (SIZE * SIZE)  # one square's share of mean chroma


class Judge(ThreadingHTTPServer):
    """An OpenAI-compatible chat server answering the instruction's ``JUDGE=`` score."""

    delay_s = 0.0
    calls = 0


class JudgeHandler(BaseHTTPRequestHandler):
    server: Judge

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = " ".join(
            part.get("text", "")
            for part in body["messages"][0]["content"]
            if isinstance(part, dict)
        )
        self.server.calls += 1
        time.sleep(self.server.delay_s)
        marker = re.search(r"JUDGE=(\w+)", text)
        score = marker.group(1) if marker else "5"
        answer = "[Score]: 10.0." if score == "DROP" else f"[Score]: {score}"
        reply = {
            "id": "x",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": f"[Thought]: ok\n{answer}",
                    },
                    "finish_reason": "stop",
                }
            ],
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def running_judge() -> Iterator[Judge]:
    """The judge on a free loopback port, for the duration of the block."""
    server = Judge(("127.0.0.1", 0), JudgeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()


def scene(squares: list[str]) -> Image.Image:
    """Black 800x800 with the named colours' squares in quadrant order."""
    img = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(img)
    for colour, (x, y) in zip(squares, QUADRANTS, strict=False):
        draw.rectangle((x, y, x + 199, y + 199), fill=COLOURS[colour])
    return img


@dataclass
class Bench:
    root: Path
    results: Path
    config: Path
    #: Per subset: (SC, alignment, aesthetic, samples, scored, missing, dropped).
    expected: dict[str, tuple[float, float, float, int, int, int, int]]


def entry(instruction: str, subjects: list[str], image: Path) -> dict[str, Any]:
    e: dict[str, Any] = {
        "instruction": instruction,
        "input_path": [f"subjects/{s}.png" for s in subjects],
        "result_path": str(image),
    }
    for i, s in enumerate(subjects, start=1):
        e[f"category{i}"] = s
    return e


def write_results(folder: Path, subsets: dict[str, list[dict[str, Any]]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for subset, entries in subsets.items():
        (folder / f"{subset}.json").write_text(json.dumps(entries, indent=1))


def make_bench(root: Path, judge_url: str, copies: int = 1) -> Bench:
    """Writes the benchmark under ``root``; each subset's entries ``copies`` times over."""
    (root / "subjects").mkdir(parents=True)
    images = root / "images"
    images.mkdir()
    for colour in COLOURS:
        scene([colour]).save(root / "subjects" / f"{colour}.png")
    two, three, four = ["red", "blue"], ["red", "blue", "green"], list(COLOURS)
    for name, squares in {
        "two": two,
        "three": three,
        "three_b": ["blue", "green", "red"],
        "four": four,
    }.items():
        scene(squares).save(images / f"{name}.png")
    Image.new("RGB", (SIZE, SIZE), (255, 255, 0)).save(images / "yellow.png")
    img = {
        n: images / f"{n}.png" for n in ("two", "three", "three_b", "four", "yellow")
    }
    pair = "a red square and a blue square"
    subsets: dict[str, list[dict[str, Any]]] = {
        "Attribute": [
            entry(f"{pair} JUDGE=8", two, img["two"]),
            entry(f"{pair} JUDGE=6", two, img["yellow"]),
            entry(f"{pair} JUDGE=9", two, images / "missing.png"),
        ],
        "Action": [
            entry(f"{pair} JUDGE=9", two, img["two"]),
            entry(f"{pair} JUDGE=DROP", two, img["yellow"]),
        ],
        "Background": [
            entry(f"{pair} JUDGE=7", two, img["two"]),
            entry(f"{pair} JUDGE=7", two, img["yellow"]),
        ],
        "Position": [
            entry("a red square to the left of a blue square", two, img["two"]),
            entry("a red square to the left of a blue square", two, img["yellow"]),
        ],
        "Complex": [
            entry(f"{pair} JUDGE=4", two, img["two"]),
            entry(f"{pair} JUDGE=10", two, img["yellow"]),
        ],
        "Three": [
            entry("three squares JUDGE=5", three, img["three"]),
            entry("three squares JUDGE=6", three, img["three_b"]),
        ],
        "Four": [
            entry("four squares JUDGE=10", four, img["four"]),
            entry("four squares JUDGE=0", four, img["four"]),
        ],
    }
    write_results(root / "results", {k: v * copies for k, v in subsets.items()})
    config = root / "service.toml"
    config.write_text(
        f'[judge]\nbase_url = "{judge_url}/v1"\nmodel = "test-judge"\n'
        "policy = { retries = 0 }\n"
    )
    a, k = SQUARE_AESTHETIC, copies
    # Both squares found (1), and solid yellow: (2/3 against red + 0 against blue) / 2.
    pair_sc = (1.0 + (2 / 3 + 0.0) / 2) / 2
    pair_ae = (2 * a + 1.0) / 2
    return Bench(
        root=root,
        results=root / "results",
        config=config,
        expected={
            "Attribute": (pair_sc, 0.7, pair_ae, 3 * k, 2 * k, k, 0),
            "Action": (pair_sc, 0.9, pair_ae, 2 * k, 2 * k, 0, k),
            "Background": (pair_sc, 0.7, pair_ae, 2 * k, 2 * k, 0, 0),
            "Position": (pair_sc, 0.5, pair_ae, 2 * k, 2 * k, 0, 0),
            "Complex": (pair_sc, 0.7, pair_ae, 2 * k, 2 * k, 0, 0),
            "Three": (1.0, 0.55, 3 * a, 2 * k, 2 * k, 0, 0),
            "Four": (1.0, 0.5, 4 * a, 2 * k, 2 * k, 0, 0),
        },
    )
