"""PyTorch reference outputs for the Rust tests (tests/real_arch_models.rs): fixed small
PNGs, and what the PyTorch model (unpatched, fp32) gives for them after the service's own
preprocessing, post-processed by the PSR rule where it applies (psr-reference.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from tokenizers import Tokenizer

from . import preprocess
from .builders import Built
from .onnx_io import torch_outputs

#: PSR box threshold (max over all token columns of sigmoid(logits)).
BOX_THRESHOLD = 0.35
#: Queries whose score lies within this of the threshold are listed as ``near_threshold``: an
#: fp16 export may keep or drop them (the fp16 test's allowance).
NEAR_THRESHOLD = 0.02
#: Queries whose encoder proposal score is within this of a neighbour's in the top-k order
#: are ``order_fragile``: float rounding decides their place (and so their query index).
RANK_TOLERANCE = 1e-5
#: Fixture images: name -> (width, height, seed). Different aspect ratios, so the detector
#: sees a landscape (short side 800) and a portrait input.
IMAGES: dict[str, tuple[int, int, int]] = {
    "scene_wide.png": (96, 64, 1),
    "scene_tall.png": (60, 90, 2),
}
#: Detector prompts (categories; the service captions them "cat." ...).
PHRASES: tuple[str, ...] = ("cat", "red square")
#: Preference prompts, one per image.
PROMPTS: tuple[str, ...] = (
    "a photo of a cat",
    "a red square on the left of a blue circle",
)


def make_image(width: int, height: int, seed: int) -> Image.Image:
    """A smooth two-colour gradient with three solid rectangles, from ``seed``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = ((x / width + y / height) / 2.0)[..., None]
    img = (a * (1 - t) + b * t).astype(np.uint8)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
        w, h = int(rng.integers(6, width // 2)), int(rng.integers(6, height // 2))
        img[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, 3)
    return Image.fromarray(img, "RGB")


def write_images(out_dir: Path) -> dict[str, Image.Image]:
    """Writes the fixture PNGs and returns them, read back from disk."""
    images = {}
    for name, (w, h, seed) in IMAGES.items():
        make_image(w, h, seed).save(out_dir / name, optimize=False)
        images[name] = Image.open(out_dir / name).convert("RGB")
    return images


def _caption(category: str) -> str:
    """``category_caption`` in src/models/tokenizer.rs."""
    caption = category.strip().lower()
    return caption if caption.endswith(".") else caption + "."


def _sigmoid(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    return out


def psr_detections(
    logits: npt.NDArray[np.float32],
    boxes: npt.NDArray[np.float32],
    width: int,
    height: int,
) -> dict[str, Any]:
    """The PSR rule on one item's outputs: keep queries whose max over all token columns of
    sigmoid(logits) exceeds 0.35, in query order; scale cx,cy,w,h by the original image
    size and turn them into x1,y1,x2,y2 (not clamped, not truncated). Also reports how close
    the nearest query came to the threshold (a small margin would make the test fragile)."""
    scores = _sigmoid(logits.max(axis=-1))
    kept = [int(q) for q in np.nonzero(scores > BOX_THRESHOLD)[0]]
    out = []
    for q in kept:
        cx, cy, bw, bh = (float(v) for v in boxes[q])
        cx, cy, bw, bh = cx * width, cy * height, bw * width, bh * height
        out.append(
            {
                "query": q,
                "score": float(scores[q]),
                "max_logit": float(logits[q].max()),
                "box": [cx - 0.5 * bw, cy - 0.5 * bh, cx + 0.5 * bw, cy + 0.5 * bh],
            }
        )
    near = np.nonzero(np.abs(scores - BOX_THRESHOLD) < NEAR_THRESHOLD)[0]
    return {
        "kept": out,
        "near_threshold": [int(q) for q in near],
        "queries": int(scores.shape[0]),
        "threshold_margin": float(np.abs(scores - BOX_THRESHOLD).min()),
    }


def _outputs_and_fragile_queries(
    built: Built, inputs: tuple[torch.Tensor, ...]
) -> tuple[list[npt.NDArray[np.float32]], list[int]]:
    """The detector's outputs, and the queries whose place in the two-stage top-k order is
    decided by less than ``RANK_TOLERANCE``. Grounding DINO's query q is the encoder proposal
    of rank q by max-over-tokens score; the scores come from the first call of
    ``encoder_output_class_embed`` (the proposals; the second call scores the queries)."""
    calls: list[torch.Tensor] = []
    head = built.module.model.model.encoder_output_class_embed  # type: ignore[union-attr]
    hook = head.register_forward_hook(lambda _m, _i, out: calls.append(out.detach()))
    try:
        outputs = torch_outputs(built, inputs)
    finally:
        hook.remove()
    queries = outputs[0].shape[1]
    scores = calls[0][0].max(-1).values
    top = torch.topk(scores, min(queries + 1, scores.shape[0])).values.double().numpy()
    gaps = top[:-1] - top[1:]
    above = np.concatenate([[np.inf], gaps[: queries - 1]])
    below = gaps[:queries]
    fragile = np.nonzero(np.minimum(above, below) < RANK_TOLERANCE)[0]
    return outputs, [int(q) for q in fragile]


def detector_reference(
    built: Built,
    tokenizer: Tokenizer,
    images: dict[str, Image.Image],
    fixed_size: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Per image and phrase: the caption, its token ids and the PSR detections."""
    cases = []
    for name, img in images.items():
        pixels = torch.from_numpy(preprocess.detector_tensor(img, fixed_size))[None]
        for phrase in PHRASES:
            caption = _caption(phrase)
            ids = torch.tensor([tokenizer.encode(caption).ids])
            inputs = (
                pixels,
                ids,
                torch.zeros_like(ids),
                torch.ones_like(ids),
                torch.ones(1, pixels.shape[2], pixels.shape[3], dtype=torch.long),
            )
            (logits, boxes), fragile = _outputs_and_fragile_queries(built, inputs)
            cases.append(
                {
                    "image": name,
                    "width": img.width,
                    "height": img.height,
                    "input_size": [int(pixels.shape[3]), int(pixels.shape[2])],
                    "phrase": phrase,
                    "caption": caption,
                    "input_ids": ids[0].tolist(),
                    **psr_detections(logits[0], boxes[0], img.width, img.height),
                    "order_fragile": fragile,
                }
            )
    return cases


def embedder_reference(
    built: Built, images: dict[str, Image.Image], clip: bool = False
) -> list[dict[str, Any]]:
    """Per image: the embedding (DINOv2: token 0 of ``last_hidden_state``, as the manifest's
    ``cls`` pooling reads it)."""
    cases = []
    for name, img in images.items():
        if clip:
            tensor = preprocess.embedder_tensor(img, preprocess.CLIP, short_side=224)
        else:
            tensor = preprocess.embedder_tensor(img)
        pixels = torch.from_numpy(tensor)[None]
        (out,) = torch_outputs(built, (pixels,))
        vector = out[0, 0] if out.ndim == 3 else out[0]
        cases.append({"image": name, "embedding": [float(v) for v in vector]})
    return cases


def preference_reference(
    built: Built, tokenizer: Tokenizer, images: dict[str, Image.Image]
) -> list[dict[str, Any]]:
    """Per (image, prompt): the score the adapter reads, ``logits_per_image[i, i]``."""
    cases = []
    for (name, img), prompt in zip(images.items(), PROMPTS, strict=True):
        clip = preprocess.embedder_tensor(img, preprocess.CLIP, short_side=224)
        pixels = torch.from_numpy(clip)[None]
        ids = torch.tensor([tokenizer.encode(prompt).ids[:77]])
        (logits,) = torch_outputs(built, (pixels, ids, torch.ones_like(ids)))
        score = float(logits[0, 0])
        if not math.isfinite(score):
            raise AssertionError(f"{name}: non-finite preference score")
        cases.append(
            {
                "image": name,
                "prompt": prompt,
                "input_ids": ids[0].tolist(),
                "score": score,
            }
        )
    return cases
