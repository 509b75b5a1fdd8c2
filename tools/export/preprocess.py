"""The service's image preprocessing (src/imaging/preprocess.rs) in Pillow, for the PyTorch
reference outputs: the Rust resampler is a port of Pillow's, so both give the same pixels.

- detector: short side 800, long side at most 1333 (GroundingDINO ``RandomResize``),
  bilinear, ImageNet statistics;
- embedder: short side 256 (long side floored), centre crop 224 (offset
  ``int(round((full - 224) / 2))``), bicubic, ImageNet or CLIP statistics.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.2613026, 0.2757771))


def short_side_max_long(w: int, h: int, size: int, max_long: int) -> tuple[int, int]:
    """Output size of the detector resize (``short_side_max_long`` in preprocess.rs)."""
    lo, hi = float(min(w, h)), float(max(w, h))
    if hi / lo * size > max_long:
        size = max(1, round(max_long * lo / hi))
    if (w <= h and w == size) or (h <= w and h == size):
        return w, h
    if w < h:
        return size, int(size * h / w)
    return int(size * w / h), size


def normalise(
    img: Image.Image, stats: tuple[tuple[float, ...], tuple[float, ...]]
) -> npt.NDArray[np.float32]:
    """``ToTensor`` then ``Normalize``: a float32 [3,H,W] array."""
    mean, std = (np.asarray(s, dtype=np.float32).reshape(3, 1, 1) for s in stats)
    x = np.asarray(img.convert("RGB"), dtype=np.float32).transpose(
        2, 0, 1
    ) / np.float32(255)
    out: npt.NDArray[np.float32] = ((x - mean) / std).astype(np.float32)
    return out


def detector_tensor(
    img: Image.Image, fixed_size: tuple[int, int] | None = None
) -> npt.NDArray[np.float32]:
    """The detector input of ``img``; ``fixed_size`` (height, width): squashed to it."""
    if fixed_size is not None:
        h, w = fixed_size
    else:
        w, h = short_side_max_long(img.width, img.height, 800, 1333)
    return normalise(img.resize((w, h), Image.Resampling.BILINEAR), IMAGENET)


def embedder_tensor(
    img: Image.Image,
    stats: tuple[tuple[float, ...], tuple[float, ...]] = IMAGENET,
    short_side: int = 256,
    crop: int = 224,
) -> npt.NDArray[np.float32]:
    """The embedder input of ``img``: resize the short side to ``short_side`` (bicubic),
    centre crop ``crop`` (CLIP's processor: 224 and 224)."""
    w, h = img.width, img.height
    if w <= h:
        rw, rh = short_side, int(short_side * h / w)
    else:
        rw, rh = int(short_side * w / h), short_side
    resized = img.resize((rw, rh), Image.Resampling.BICUBIC)
    x0, y0 = round((rw - crop) / 2.0), round((rh - crop) / 2.0)
    return normalise(resized.crop((x0, y0, x0 + crop, y0 + crop)), stats)
