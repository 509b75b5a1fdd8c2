"""What a plain Python reward server does to an image before onnxruntime sees it.

The peers of the benchmarks (benches/README.md) preprocess with Pillow exactly as the PSR
scripts and the models' own processors do, so that they compute the same tensors as
psr-reward (whose resizer reproduces Pillow bit for bit) and the comparison is of the same work.
The rules and constants are the manifest's (`preprocess = {resize = {...}, filter, normalize}`).
"""

from __future__ import annotations

import base64
import io
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Normalisation statistics: torchvision's ImageNet values and OpenAI CLIP's.
STATS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}
FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Preprocess:
    """One model's resize rule, filter and normalisation, read from a manifest section."""

    rule: dict[str, Any]
    filter: Image.Resampling
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> Preprocess:
        pre = section["preprocess"]
        mean, std = STATS[pre.get("normalize", "imagenet")]
        return cls(
            rule=pre["resize"],
            filter=FILTERS[pre.get("filter", "bicubic")],
            mean=np.asarray(mean, dtype=np.float32).reshape(3, 1, 1),
            std=np.asarray(std, dtype=np.float32).reshape(3, 1, 1),
        )

    def resize(self, img: Image.Image) -> Image.Image:
        """The manifest's resize rule, as torchvision / the Grounding DINO transforms do it."""
        w, h = img.size
        rule = self.rule["rule"]
        if rule == "squash":
            return img.resize((self.rule["width"], self.rule["height"]), self.filter)
        if rule == "center_crop":
            short, crop = self.rule["short_side"], self.rule["crop"]
            # torchvision Resize(int): the long side is floored.
            size = (
                (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
            )
            img = img.resize(size, self.filter)
            left = round((size[0] - crop) / 2.0)
            top = round((size[1] - crop) / 2.0)
            return img.crop((left, top, left + crop, top + crop))
        if rule == "short_side_max_long":
            return img.resize(detector_size(w, h, self.rule), self.filter)
        raise ValueError(f"resize rule {rule!r} is not supported by the peer")

    def tensor(self, img: Image.Image) -> np.ndarray:
        """CHW float32 tensor of the resized RGB image, normalised."""
        arr = np.asarray(self.resize(img.convert("RGB")), dtype=np.float32) / 255.0
        return (arr.transpose(2, 0, 1) - self.mean) / self.std


def detector_size(w: int, h: int, rule: dict[str, Any]) -> tuple[int, int]:
    """Grounding DINO's RandomResize([800], max_size=1333): (width, height) of the input."""
    size, max_size = float(rule["short_side"]), float(rule["max_long_side"])
    short, long = float(min(w, h)), float(max(w, h))
    if long / short * size > max_size:
        size = float(round(max_size * short / long))
    if w < h:
        return int(size), int(size * h / w)
    return int(size * w / h), int(size)


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest with every model path made absolute (paths resolve against its folder)."""
    manifest = tomllib.loads(path.read_text())
    for section in manifest.values():
        if isinstance(section, dict):
            for key in ("path", "tokenizer"):
                if key in section:
                    section[key] = str((path.parent / section[key]).resolve())
    return manifest


def decode(b64: str) -> Image.Image:
    """A base64 image as Pillow opens it."""
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img
