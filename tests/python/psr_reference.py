"""Reference implementation of the PSR subject-consistency reward (``mode: "psr"``).

It follows the evaluation scripts of the PSR paper (arXiv 2512.01236,
``eval/suject-consistency/eval-{2,3,4}-subject-sc.py``) step by step, with the
fixture ONNX models standing in for Grounding DINO and DINO ViT-S/16, and without
torch: every torchvision / GroundingDINO transform the scripts use is rewritten here
with PIL and numpy so that the arithmetic (PIL resampling, float32 box maths,
Python rounding and truncation, numpy slicing) is the same.

For subject ``i`` with category ``c_i`` and reference image ``R_i``, and the
generated image ``G``:

* ``detect(G, c_i)``: Grounding DINO with caption ``c_i.lower().strip() + "."``;
  queries whose best token score exceeds 0.35 are kept in query order (no sort, no
  NMS).  Only PIL mode ``"RGB"`` images are detected: the script's normalisation
  raises for any other mode, and the script then falls back to the whole image.
* The generated crop uses kept box 0; in a two-subject item whose two categories are
  equal strings, subject 2 uses kept box 1.  The reference crop always uses kept
  box 0 of ``detect(R_i, c_i)``.
* A missing box or an empty crop means the whole image is used instead.
* The similarity is the cosine of the DINO embeddings of the two crops; the score is
  the mean over subjects.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

BOX_THRESHOLD = 0.35
DETECT_SHORT_SIDE = 800
DETECT_MAX_SIZE = 1333
EMBED_RESIZE = 256
EMBED_CROP = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

DEFAULT_FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "generated"

Box = tuple[int, int, int, int]
Fallback = Literal["not_detected", "non_rgb", "empty_crop"]
Floats = npt.NDArray[np.float32]


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class PsrModels:
    """The detector and embedder sessions and the tokenizer vocabulary."""

    detector: ort.InferenceSession
    embedder: ort.InferenceSession
    vocab: dict[str, int]


def fixtures_dir() -> Path:
    """``$PSR_FIXTURES_DIR`` when set, else ``tests/fixtures/generated``."""
    given = os.environ.get("PSR_FIXTURES_DIR")
    return Path(given) if given else DEFAULT_FIXTURES_DIR


def load_models(directory: Path) -> PsrModels:
    """Loads ``detector.onnx``, ``embedder.onnx`` and ``tokenizer.json`` from ``directory``."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    with open(directory / "tokenizer.json", encoding="utf-8") as f:
        vocab: dict[str, int] = json.load(f)["model"]["vocab"]
    return PsrModels(
        detector=ort.InferenceSession(
            str(directory / "detector.onnx"), options, providers=providers
        ),
        embedder=ort.InferenceSession(
            str(directory / "embedder.onnx"), options, providers=providers
        ),
        vocab=vocab,
    )


@cache
def _cached_models(directory: str) -> PsrModels:
    return load_models(Path(directory))


def default_models() -> PsrModels:
    """The fixture models from :func:`fixtures_dir`, loaded once per directory."""
    return _cached_models(str(fixtures_dir()))


# ------------------------------------------------------------------------ tokenizer


def _is_punctuation(ch: str) -> bool:
    """BERT's punctuation test: ASCII symbol ranges or a Unicode ``P*`` category."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _normalize(text: str) -> str:
    """BertNormalizer with lowercase (which also strips accents) and clean_text."""
    cleaned = []
    for ch in text:
        control = unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"
        if ord(ch) in (0, 0xFFFD) or control:
            continue
        cleaned.append(" " if ch.isspace() else ch)
    lowered = unicodedata.normalize("NFD", "".join(cleaned).lower())
    return "".join(ch for ch in lowered if unicodedata.category(ch) != "Mn")


def _wordpiece(word: str, vocab: dict[str, int]) -> list[int]:
    """Greedy longest-match-first WordPiece with the ``##`` continuation prefix."""
    if len(word) > 100:
        return [vocab["[UNK]"]]
    ids: list[int] = []
    start = 0
    while start < len(word):
        end = len(word)
        found: int | None = None
        while start < end:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                found = vocab[piece]
                break
            end -= 1
        if found is None:
            return [vocab["[UNK]"]]
        ids.append(found)
        start = end
    return ids


def tokenize(caption: str, vocab: dict[str, int]) -> list[int]:
    """BERT-uncased token ids ``[CLS] ... [SEP]`` of ``caption``.

    Minimal re-implementation of the ``bert-base-uncased`` pipeline (normalise,
    split on whitespace and punctuation, WordPiece); exact for the ASCII captions
    the tests use.  No truncation: GroundingDINO slices ids to the first 256, and
    the detector ignores positions from 256 on, which is the same.
    """
    tokens: list[str] = []
    for word in _normalize(caption).split():
        current = ""
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    tokens.append(current)
                    current = ""
                tokens.append(ch)
            else:
                current += ch
        if current:
            tokens.append(current)
    ids = [vocab["[CLS]"]]
    for token in tokens:
        ids.extend(_wordpiece(token, vocab))
    ids.append(vocab["[SEP]"])
    return ids


def caption_for(category: str) -> str:
    """GroundingDINO's ``preprocess_caption``: lowercase, strip, end with ``"."``."""
    result = category.lower().strip()
    return result if result.endswith(".") else result + "."


# ------------------------------------------------------------------------ detection


def detection_size(width: int, height: int) -> tuple[int, int]:
    """``(ow, oh)`` of GroundingDINO's ``RandomResize([800], max_size=1333)``."""
    size = DETECT_SHORT_SIDE
    min_side = float(min(width, height))
    max_side = float(max(width, height))
    if max_side / min_side * size > DETECT_MAX_SIZE:
        size = round(DETECT_MAX_SIZE * min_side / max_side)
    if (width <= height and width == size) or (height <= width and height == size):
        return width, height
    if width < height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _normalize_imagenet(img: Image.Image) -> Floats:
    """ToTensor + ImageNet Normalize of an RGB image: float32 CHW."""
    arr = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    arr = (arr - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def detector_input(img: Image.Image) -> Floats:
    """Resized (PIL bilinear) and normalised detector input, float32 [3, H, W]."""
    ow, oh = detection_size(*img.size)
    resized = img if (ow, oh) == img.size else img.resize((ow, oh), Image.BILINEAR)
    return _normalize_imagenet(resized)


@dataclass(frozen=True)
class Detection:
    """The kept boxes of one detection, in query order, int-truncated xyxy pixels.

    ``rgb`` is False when the image was not detected because its mode is not RGB.
    """

    rgb: bool
    boxes: tuple[Box, ...]
    queries: tuple[int, ...]


def detect(
    img: Image.Image, category: str, models: PsrModels | None = None
) -> Detection:
    """Runs the detector on ``img`` for ``category`` the way the PSR script does."""
    if img.mode != "RGB":
        return Detection(rgb=False, boxes=(), queries=())
    models = models or default_models()
    pixels = detector_input(img)[None]
    ids = np.array([tokenize(caption_for(category), models.vocab)], dtype=np.int64)
    logits, pred_boxes = models.detector.run(
        ["logits", "pred_boxes"],
        {
            "pixel_values": pixels,
            "input_ids": ids,
            "token_type_ids": np.zeros_like(ids),
            "attention_mask": np.ones_like(ids),
            "pixel_mask": np.ones(pixels.shape[:1] + pixels.shape[2:], np.int64),
        },
    )
    # sigmoid in float32, max over all token columns, strict threshold.
    logits32 = logits[0].astype(np.float32)
    scores = (np.float32(1.0) / (np.float32(1.0) + np.exp(-logits32))).max(axis=1)
    kept = np.nonzero(scores > BOX_THRESHOLD)[0]
    width, height = img.size
    scale = np.array([width, height, width, height], dtype=np.float32)
    boxes = pred_boxes[0][kept].astype(np.float32) * scale
    half = np.float32(0.5)
    cx, cy, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    xyxy = np.stack([cx - half * w, cy - half * h, cx + half * w, cy + half * h], 1)
    ints = tuple(
        (int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in xyxy.astype(np.float32)
    )
    return Detection(rgb=True, boxes=ints, queries=tuple(int(q) for q in kept))


# ---------------------------------------------------------------------------- crops


def crop_or_whole(
    img: Image.Image, detection: Detection, index: int
) -> tuple[Image.Image, Box | None, Fallback | None]:
    """The crop of kept box ``index`` or the whole image, and why.

    Returns ``(image, box, fallback)``: ``box`` is the kept box used (None when
    there is none at ``index``); ``fallback`` is None when the crop is used, else
    ``"non_rgb"``, ``"not_detected"`` or ``"empty_crop"`` and ``image`` is ``img``
    itself.  The crop is numpy slicing ``arr[y1:y2, x1:x2]`` with Python slice
    semantics (negative indices wrap, ends clamp).
    """
    if not detection.rgb:
        return img, None, "non_rgb"
    if index >= len(detection.boxes):
        return img, None, "not_detected"
    box = detection.boxes[index]
    x1, y1, x2, y2 = box
    cropped = np.asarray(img)[y1:y2, x1:x2]
    if cropped.shape[0] == 0 or cropped.shape[1] == 0:
        return img, box, "empty_crop"
    return Image.fromarray(np.ascontiguousarray(cropped)), box, None


# ------------------------------------------------------------------------ embedding


def embed_input(img: Image.Image) -> Floats:
    """DINO preprocessing: Resize(256, bicubic), CenterCrop(224), RGB, normalise.

    The resize and crop happen on the image in its own mode, then ``convert("RGB")``
    as in the script: Pillow resizes RGBA and LA premultiplied, P and 1 with NEAREST,
    CMYK in CMYK and I;16 in 16 bits (identical to converting first only for RGB, L
    and opaque images).
    """
    width, height = img.size
    if width <= height:
        new_w, new_h = EMBED_RESIZE, int(EMBED_RESIZE * height / width)
    else:
        new_w, new_h = int(EMBED_RESIZE * width / height), EMBED_RESIZE
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.BICUBIC)
    top = round((new_h - EMBED_CROP) / 2.0)
    left = round((new_w - EMBED_CROP) / 2.0)
    img = img.crop((left, top, left + EMBED_CROP, top + EMBED_CROP))
    return _normalize_imagenet(img.convert("RGB"))


def embed(img: Image.Image, models: PsrModels | None = None) -> Floats:
    """The embedder's output for one image, float32 [384]."""
    models = models or default_models()
    (out,) = models.embedder.run(
        ["embeddings"], {"pixel_values": embed_input(img)[None]}
    )
    return np.asarray(out[0], dtype=np.float32)


def cosine(a: Floats, b: Floats) -> float:
    """Cosine similarity of two embeddings (L2-normalise, then dot)."""
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    return float(np.dot(a64 / np.linalg.norm(a64), b64 / np.linalg.norm(b64)))


# ---------------------------------------------------------------------- the reward


@dataclass(frozen=True)
class SubjectResult:
    """One subject's similarity and how both crops were chosen."""

    name: str
    similarity: float
    detected: bool
    box: Box | None
    fallback: Fallback | None
    reference_detected: bool
    reference_box: Box | None
    reference_fallback: Fallback | None
    # The PIL mode of an image that was not detected because it is not RGB.
    fallback_mode: str | None = None
    reference_fallback_mode: str | None = None


@dataclass(frozen=True)
class ConsistencyResult:
    """The subject-consistency score (mean similarity) and its subjects."""

    score: float
    subjects: tuple[SubjectResult, ...]


def generated_box_index(categories: Sequence[str], subject: int) -> int:
    """Which kept box of the generated image subject ``subject`` (0-based) uses.

    Only the two-subject script has the same-category rule (exact string equality):
    subject 2 then takes kept box 1.  Every other case takes kept box 0.
    """
    if len(categories) == 2 and categories[0] == categories[1] and subject == 1:
        return 1
    return 0


def subject_consistency(
    gen_img: Image.Image,
    refs: Sequence[Image.Image],
    categories: Sequence[str],
    models: PsrModels | None = None,
) -> ConsistencyResult:
    """The PSR subject-consistency score of ``gen_img`` against ``refs``."""
    if len(refs) != len(categories) or not refs:
        raise ValueError("need one category per reference and at least one subject")
    models = models or default_models()
    subjects = []
    for i, (ref, category) in enumerate(zip(refs, categories, strict=True)):
        gen_det = detect(gen_img, category, models)
        gen_crop, box, fallback = crop_or_whole(
            gen_img, gen_det, generated_box_index(categories, i)
        )
        ref_det = detect(ref, category, models)
        ref_crop, ref_box, ref_fallback = crop_or_whole(ref, ref_det, 0)
        similarity = cosine(embed(gen_crop, models), embed(ref_crop, models))
        subjects.append(
            SubjectResult(
                name=category,
                similarity=similarity,
                detected=box is not None,
                box=box,
                fallback=fallback,
                reference_detected=ref_box is not None,
                reference_box=ref_box,
                reference_fallback=ref_fallback,
                fallback_mode=gen_img.mode if fallback == "non_rgb" else None,
                reference_fallback_mode=ref.mode if ref_fallback == "non_rgb" else None,
            )
        )
    score = float(np.mean([s.similarity for s in subjects]))
    return ConsistencyResult(score=score, subjects=tuple(subjects))
