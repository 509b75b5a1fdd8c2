"""Raw onnxruntime throughput: the Python binding's `session.run` on one ONNX file, batch by
batch, with nothing around it (no decode, no HTTP). `benches/serving.rs` runs it beside the
service so that the ratios of its report come from one run.

    .venv/bin/python benches/peers/raw_ort.py --model M.onnx --batches 1,2,4 --seconds 5

Prints one JSON object per batch size: {"batch": b, "images_per_s": r}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def throughput(session: ort.InferenceSession, batch: int, seconds: float) -> float:
    """Images per second of back-to-back runs at `batch`, after one warm-up run."""
    inp = session.get_inputs()[0]
    shape = [batch] + [d if isinstance(d, int) else 224 for d in inp.shape[1:]]
    feed = {inp.name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
    session.run(None, feed)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feed)
        done += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--batches", default="1,2,4,8,16,32")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    for b in (int(x) for x in args.batches.split(",")):
        rate = throughput(session, b, args.seconds)
        print(json.dumps({"batch": b, "images_per_s": round(rate, 2)}), flush=True)


if __name__ == "__main__":
    main()
