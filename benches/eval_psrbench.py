"""Benchmark of ``psr-reward eval``: samples/s in process, and what resuming saves.

Generates the mini-PSRBench of ``tests/python/mini_psrbench.py`` (``--copies`` times over:
14 scored samples and one missing image per copy), with the loopback judge answering after
``--judge-delay-ms`` (a real 7B-32B judge takes 0.5-5 s an answer; 0 measures the engine
alone), and runs the release binary in process on ``models/fixtures.toml``:

1. a fresh run (the whole benchmark);
2. the same run stopped with Ctrl-C (SIGINT, a clean stop) after about half the samples,
   then resumed: the time of the resumed part against the fresh run's;
3. a rerun with every sample in the journal.

Prints a Markdown table (``benches/README.md`` keeps the figures).

    .venv/bin/python benches/eval_psrbench.py --copies 10 --judge-delay-ms 0
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))

from mini_psrbench import Bench, make_bench, running_judge

SCORED = re.compile(
    r"scored (\d+) samples in ([\d.]+) s .*; (\d+) reused from the journal"
)


def command(binary: Path, bench: Bench, out: Path, concurrency: int) -> list[str]:
    return [
        str(binary),
        "eval",
        "--data-root",
        str(bench.root),
        "--results",
        str(bench.results),
        "--models",
        str(REPO / "models" / "fixtures.toml"),
        "--config",
        str(bench.config),
        "--out",
        str(out),
        "--concurrency",
        str(concurrency),
        "--no-progress",
    ]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PSR_ORT_LIBRARY", str(REPO / ".deps" / "libonnxruntime.so"))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(var, None)
    return env


def timed_run(cmd: list[str]) -> tuple[float, int, float, int]:
    """(wall s, samples scored, scoring s as the command reports it, samples reused)."""
    start = time.monotonic()
    proc = subprocess.run(
        cmd, env=environment(), capture_output=True, text=True, check=False
    )
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"eval failed ({proc.returncode}):\n{proc.stderr}")
    m = SCORED.search(proc.stdout)
    if not m:
        sys.exit(f"no summary line in:\n{proc.stdout}")
    return wall, int(m.group(1)), float(m.group(2)), int(m.group(3))


def interrupted_run(cmd: list[str], out: Path, after: int) -> int:
    """Runs until ``after`` samples are journaled, then Ctrl-C; the samples kept."""
    proc = subprocess.Popen(
        cmd, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    journal = out / "samples.jsonl"
    while proc.poll() is None:
        if journal.is_file() and journal.read_bytes().count(b"\n") > after:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    proc.wait()
    return journal.read_bytes().count(b"\n") - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--judge-delay-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--binary", type=Path, default=REPO / "target" / "release" / "psr-reward"
    )
    args = parser.parse_args()
    with (
        running_judge() as judge,
        tempfile.TemporaryDirectory(prefix="psr-eval-bench-") as tmp,
    ):
        judge.delay_s = args.judge_delay_ms / 1000
        bench = make_bench(
            Path(tmp), f"http://127.0.0.1:{judge.server_port}", args.copies
        )
        total = 14 * args.copies
        fresh_out, resumed_out = Path(tmp) / "fresh", Path(tmp) / "resumed"
        fresh = timed_run(command(args.binary, bench, fresh_out, args.concurrency))
        cmd = command(args.binary, bench, resumed_out, args.concurrency)
        kept = interrupted_run(cmd, resumed_out, total // 2)
        resumed = timed_run(cmd)
        again = timed_run(cmd)
    print(
        f"{total} scored samples (+{args.copies} missing), judge delay "
        f"{args.judge_delay_ms:.0f} ms, concurrency {args.concurrency}\n"
    )
    print("| run | wall s | scoring s | scored | reused | samples/s (scoring) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (wall, scored, secs, reused) in [
        ("fresh", fresh),
        (f"resumed after Ctrl-C at {kept}", resumed),
        ("rerun, all journaled", again),
    ]:
        rate = f"{scored / secs:.1f}" if scored else "-"
        print(f"| {name} | {wall:.2f} | {secs:.2f} | {scored} | {reused} | {rate} |")
    print(
        f"\nresuming saved {fresh[0] - resumed[0]:.2f} s of {fresh[0]:.2f} s wall "
        f"({100 * (1 - resumed[0] / fresh[0]):.0f} %); model load and warm-up are in every wall time"
    )


if __name__ == "__main__":
    main()
