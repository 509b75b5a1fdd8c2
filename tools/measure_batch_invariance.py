"""What batching changes, per model family, measured on ONNX exports (issue 19).

The service batches across callers; the PSR scripts run every model at batch size 1. For
each export in a folder this runs one input alone and inside batches the way the service
forms them, and reports the largest difference:

* detector (Grounding DINO, Hugging Face export): the probe image alone; with another
  image of its shape (positions 0 and last: the ``equal_shapes`` rule of ``psr`` mode);
  padded bottom/right into a batch with a larger image (``pixel_mask`` 0, positions 0 and
  last: the ``padded`` rule of ``robust`` mode); and with its caption padded to a longer
  one's (``attention_mask`` 0). Differences in logits (the probe's own token columns),
  boxes in pixels of the probe image, and whether a kept-box decision flipped (the set of
  queries above the 0.35 threshold, or the first kept query: what PSR crops);
* embedders and image scorers: alone, and at positions 0 and last of an equal-shape batch
  (the service never pads them): the output's largest difference;
* preference scorers (image + prompt): alone, in an equal-shape batch, and with the prompt
  padded to a longer prompt's length (``attention_mask`` 0).

Inputs are seeded random tensors at the models' preprocessed sizes (the exports' weights
are random too; what is measured is arithmetic, not semantics). Usage::

    .venv/bin/python tools/measure_batch_invariance.py tests/fixtures/real_arch \\
        --out target/batch-invariance.json

It prints a Markdown table (the README's) and writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

BOX_THRESHOLD = 0.35  # the PSR evaluation scripts' box threshold
#: The probe's preprocessed size and the larger image it is padded against (detector).
PROBE_HW = (608, 800)
LARGE_HW = (800, 1024)
SEED = 19


@dataclass
class Row:
    """One model and one batching case."""

    model: str
    family: str
    case: str
    max_abs_diff: float
    max_box_px: float | None = None
    kept_flipped: bool | None = None
    first_kept_flipped: bool | None = None
    note: str = ""


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def dims(s: ort.InferenceSession, name: str) -> list[Any]:
    return next(i.shape for i in s.get_inputs() if i.name == name)


def image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.standard_normal((3, h, w)).astype(np.float32)


# ---- detector ------------------------------------------------------------------------


def caption_ids(tokenizer: Tokenizer, category: str) -> np.ndarray:
    """The PSR caption of a category (``"cat."``) as the service tokenises it."""
    return np.array(
        tokenizer.encode(category.strip().lower() + ".").ids, dtype=np.int64
    )


def detect(
    s: ort.InferenceSession, images: list[np.ndarray], captions: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """One batch, padded as the service pads it; (logits, boxes) of every item."""
    static = dims(s, "pixel_values")
    hm = static[2] if isinstance(static[2], int) else max(i.shape[1] for i in images)
    wm = static[3] if isinstance(static[3], int) else max(i.shape[2] for i in images)
    lm = max(len(c) for c in captions)
    n = len(images)
    pixels = np.zeros((n, 3, hm, wm), np.float32)
    mask = np.zeros((n, hm, wm), np.int64)
    ids = np.zeros((n, lm), np.int64)
    attention = np.zeros((n, lm), np.int64)
    for b, (img, cap) in enumerate(zip(images, captions, strict=True)):
        _, h, w = img.shape
        pixels[b, :, :h, :w] = img
        mask[b, :h, :w] = 1
        ids[b, : len(cap)] = cap
        attention[b, : len(cap)] = 1
    logits, boxes = s.run(
        ["logits", "pred_boxes"],
        {
            "pixel_values": pixels,
            "pixel_mask": mask,
            "input_ids": ids,
            "token_type_ids": np.zeros_like(ids),
            "attention_mask": attention,
        },
    )
    return logits, boxes


def kept(logits: np.ndarray, text_len: int) -> np.ndarray:
    """Queries above the threshold (max sigmoid over the caption's own columns)."""
    scores = 1 / (1 + np.exp(-logits[:, :text_len].astype(np.float64)))
    return np.flatnonzero(scores.max(axis=1) > BOX_THRESHOLD)


def detector_rows(
    name: str, s: ort.InferenceSession, tokenizer: Tokenizer
) -> list[Row]:
    rng = np.random.default_rng(SEED)
    static = dims(s, "pixel_values")
    # An export with a fixed input size takes every image at that size: nothing to pad.
    fixed = isinstance(static[2], int) and isinstance(static[3], int)
    probe_hw = (static[2], static[3]) if fixed else PROBE_HW
    probe = image(rng, *probe_hw)
    twin = image(rng, *probe_hw)
    large = image(rng, *LARGE_HW)
    cat, long_caption = (
        caption_ids(tokenizer, "cat"),
        caption_ids(tokenizer, "red sports car"),
    )
    h, w = probe_hw
    alone_logits, alone_boxes = detect(s, [probe], [cat])
    ref_logits, ref_boxes = alone_logits[0], alone_boxes[0]
    ref_kept = kept(ref_logits, len(cat))
    cases = {
        "equal shapes, position 0": ([probe, twin], [cat, cat], 0),
        "equal shapes, last": ([twin, twin, probe], [cat, cat, cat], 2),
        "caption padded to a longer one": ([probe, twin], [cat, long_caption], 0),
    }
    rows = []
    if fixed:
        note = f"not measurable: the export's input is fixed at {static[2]}x{static[3]}"
        rows.append(
            Row(name, "detector", "padded into a larger image", float("nan"), note=note)
        )
    else:
        cases["padded into a larger image, position 0"] = (
            [probe, large],
            [cat, cat],
            0,
        )
        cases["padded into a larger image, last"] = ([large, probe], [cat, cat], 1)
    for case, (images, captions, k) in cases.items():
        logits, boxes = detect(s, images, captions)
        lg, bx = logits[k], boxes[k]
        scale = np.array([w, h, w, h])
        box_px = np.abs(bx.astype(np.float64) - ref_boxes) * scale
        now_kept = kept(lg, len(cat))
        rows.append(
            Row(
                model=name,
                family="detector",
                case=case,
                max_abs_diff=float(
                    np.abs(lg[:, : len(cat)] - ref_logits[:, : len(cat)]).max()
                ),
                max_box_px=float(box_px.max()),
                kept_flipped=bool(not np.array_equal(now_kept, ref_kept)),
                first_kept_flipped=bool(now_kept[:1].tolist() != ref_kept[:1].tolist()),
            )
        )
    return rows


# ---- image models --------------------------------------------------------------------


def image_rows(name: str, s: ort.InferenceSession, family: str) -> list[Row]:
    rng = np.random.default_rng(SEED)
    inp = s.get_inputs()[0]
    _, _, h, w = inp.shape
    probe = image(rng, h, w)
    others = [image(rng, h, w) for _ in range(3)]

    def run(batch: list[np.ndarray]) -> np.ndarray:
        out = s.run(None, {inp.name: np.stack(batch)})[0]
        return out[:, 0] if out.ndim == 3 else out  # CLS of a hidden-state output

    alone = run([probe])[0]
    rows = []
    for case, batch, k in [
        ("equal shapes, position 0", [probe, *others], 0),
        ("equal shapes, last", [*others, probe], 3),
    ]:
        diff = np.abs(run(batch)[k] - alone).max()
        rows.append(Row(model=name, family=family, case=case, max_abs_diff=float(diff)))
    return rows


def preference_rows(
    name: str, s: ort.InferenceSession, tokenizer: Tokenizer
) -> list[Row]:
    rng = np.random.default_rng(SEED)
    _, _, h, w = dims(s, "pixel_values")
    probe, other = image(rng, h, w), image(rng, h, w)
    short = tokenizer.encode("a cat").ids
    longer = tokenizer.encode("a red sports car parked under a tall tree at night").ids

    def run(images: list[np.ndarray], prompts: list[list[int]]) -> np.ndarray:
        lm = max(len(p) for p in prompts)
        ids = np.zeros((len(prompts), lm), np.int64)
        mask = np.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = p
            mask[i, : len(p)] = 1
        out = s.run(
            None,
            {
                "pixel_values": np.stack(images),
                "input_ids": ids,
                "attention_mask": mask,
            },
        )[0]
        return np.diagonal(
            out
        )  # each image against its own prompt, as the service scores

    alone = run([probe], [short])[0]
    rows = []
    for case, images, prompts, k in [
        ("equal shapes, same prompt length, last", [other, probe], [short, short], 1),
        ("prompt padded to a longer one", [probe, other], [short, longer], 0),
    ]:
        diff = abs(float(run(images, prompts)[k]) - float(alone))
        rows.append(Row(model=name, family="preference", case=case, max_abs_diff=diff))
    return rows


# ---- the folder ----------------------------------------------------------------------


class TorchDetector:
    """The tiny Grounding DINO of ``make real-arch-fixtures`` (same seed, same weights) run in
    PyTorch behind the two session methods ``detector_rows`` uses. The committed export takes
    one fixed size, so padding an image into a larger one (``pixel_mask``) can only be
    measured on the model itself. Needs the export environment (``make export-tools``)."""

    def __init__(self, seed: int) -> None:
        import tempfile

        import torch

        sys.path.insert(0, str(Path(__file__).parent))
        from export import builders

        self.torch = torch
        self.built = builders.build(
            "grounding-dino", True, seed, Path(tempfile.mkdtemp()), None
        )

    def get_inputs(self) -> list[Any]:
        from types import SimpleNamespace

        return [
            SimpleNamespace(name="pixel_values", shape=["batch", 3, "height", "width"])
        ]

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = [self.torch.from_numpy(feed[n]) for n in self.built.inputs]
        with self.torch.no_grad():
            out = dict(zip(self.built.outputs, self.built.module(*args), strict=True))
        return [out[n].numpy() for n in names]


def measure(folder: Path) -> list[Row]:
    """Every export in ``folder`` by its inputs: detector, preference, or image model."""
    rows: list[Row] = []
    for path in sorted(folder.glob("*.onnx")):
        s = session(path)
        names = {i.name for i in s.get_inputs()}
        name = path.stem
        if "pixel_mask" in names:
            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
            rows += detector_rows(name, s, tok)
        elif "input_ids" in names:
            tok = Tokenizer.from_file(str(folder / "clip_tokenizer.json"))
            rows += preference_rows(name, s, tok)
        else:
            rows += image_rows(name, s, "embedder")
    return rows


def markdown(rows: list[Row]) -> str:
    def num(v: float | None) -> str:
        return "-" if v is None or math.isnan(v) else f"{v:.2e}"

    def flag(v: bool | None) -> str:
        return "-" if v is None else ("**yes**" if v else "no")

    lines = [
        "| model | case | max abs diff | max box diff (px) | kept set flipped "
        + "| first kept flipped | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.case} | {num(r.max_abs_diff)} | {num(r.max_box_px)} "
            f"| {flag(r.kept_flipped)} | {flag(r.first_kept_flipped)} | {r.note} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folder", type=Path, help="folder of ONNX exports (and tokenizers)"
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument(
        "--torch-detector-seed",
        type=int,
        help="also measure the tiny Grounding DINO built from this seed in PyTorch "
        "(run with .venv-export/bin/python; the fixtures use seed 0)",
    )
    args = parser.parse_args()
    rows = measure(args.folder)
    if args.torch_detector_seed is not None:
        tok = Tokenizer.from_file(str(args.folder / "tokenizer.json"))
        name = f"grounding-dino-tiny in PyTorch (seed {args.torch_detector_seed})"
        detector = TorchDetector(args.torch_detector_seed)
        rows += detector_rows(name, detector, tok)  # type: ignore[arg-type]
    print(markdown(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
