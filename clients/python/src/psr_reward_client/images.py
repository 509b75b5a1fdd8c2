"""Image inputs -> the encoded bytes the service accepts (base64 PNG, JPEG or WebP).

Accepted, per image: a PIL image; a numpy array HWC (or HW) ``uint8`` (floats in [0, 1] are
scaled); a path (``str`` or ``os.PathLike``) or ``bytes`` of an encoded file (PNG, JPEG and
WebP are sent unchanged, anything else PIL reads is re-encoded); a torch tensor CHW, float in
[0, 1] or ``uint8`` (torch is never imported unless a tensor is passed). Batches (numpy NHWC,
torch NCHW) are expanded into their images by :func:`as_image_list`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

#: One image in any accepted form: ``PIL.Image.Image``, ``bytes`` / ``bytearray`` /
#: ``memoryview`` of an encoded file, ``str`` / ``os.PathLike`` path, numpy array, torch tensor
#: (typed ``Any`` since numpy and torch are optional).
ImageLike = Any

#: Output format of images the client has to encode itself.
Format = Literal["png", "jpeg"]

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"))


@dataclass(frozen=True)
class EncodedImage:
    """An image ready to send: its base64 text, size and a digest of its bytes.

    ``digest`` (SHA-256 of the encoded bytes) identifies a reference across calls, so the
    client can send ``{"ref": hash}`` for one the server has seen.
    """

    b64: str
    width: int
    height: int
    digest: str

    @property
    def pixels(self) -> int:
        """Decoded pixel count (what ``limits.max_request_pixels`` counts)."""
        return self.width * self.height


@dataclass(frozen=True)
class EncodeOptions:
    """How the client encodes images it has to encode: ``png`` (lossless; ``png_level`` is the
    zlib level, 1 = fast) or ``jpeg`` with ``quality``."""

    format: Format = "png"
    quality: int = 95
    png_level: int = 1


def _sniff(data: bytes) -> str | None:
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def _is_numpy(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "numpy" and hasattr(x, "shape")


def _torch_to_numpy_hwc(t: Any) -> Any:
    """CHW (or HWC when the last axis is 1/3/4 and the first is not) tensor -> HWC uint8."""
    t = t.detach().cpu()
    if t.dtype.is_floating_point:
        # Flow-GRPO's conversion: (x * 255).round().clamp(0, 255).to(uint8).
        t = (t * 255).round().clamp(0, 255)
    import torch  # only reached when the caller passed a tensor

    t = t.to(torch.uint8)
    if t.ndim == 3 and t.shape[0] in (1, 3, 4):
        t = t.permute(1, 2, 0)
    return t.contiguous().numpy()


def _numpy_to_pil(a: Any) -> Image.Image:
    import numpy as np

    arr = np.asarray(a)
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"numpy image must be uint8 or float in [0, 1], got {arr.dtype}")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr), mode="L")
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise TypeError(f"numpy image must be HWC with 1, 3 or 4 channels (or HW), got {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB" if arr.shape[2] == 3 else "RGBA")


def _encode_pil(im: Image.Image, opts: EncodeOptions) -> bytes:
    buf = io.BytesIO()
    if opts.format == "jpeg":
        rgb = im if im.mode in ("RGB", "L") else im.convert("RGB")
        rgb.save(buf, format="JPEG", quality=opts.quality)
    else:
        keep = im if im.mode in ("RGB", "RGBA", "L", "LA") else im.convert("RGBA")
        keep.save(buf, format="PNG", compress_level=opts.png_level)
    return buf.getvalue()


def _finish(data: bytes, width: int, height: int) -> EncodedImage:
    return EncodedImage(
        base64.b64encode(data).decode("ascii"), width, height, hashlib.sha256(data).hexdigest()
    )


def _encode_bytes(data: bytes, opts: EncodeOptions) -> EncodedImage:
    with Image.open(io.BytesIO(data)) as im:  # reads the header only
        if _sniff(data) is not None:
            return _finish(data, im.width, im.height)
        im.load()
        return _finish(_encode_pil(im, opts), im.width, im.height)


def encode_image(image: ImageLike, opts: EncodeOptions | None = None) -> EncodedImage:
    """Encodes one image for the wire (CPU work: call it from a thread pool)."""
    opts = opts or EncodeOptions()
    if isinstance(image, Image.Image):
        return _finish(_encode_pil(image, opts), image.width, image.height)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _encode_bytes(bytes(image), opts)
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            return _encode_bytes(f.read(), opts)
    if _is_torch(image):
        image = _torch_to_numpy_hwc(image)
    if _is_numpy(image):
        im = _numpy_to_pil(image)
        return _finish(_encode_pil(im, opts), im.width, im.height)
    raise TypeError(
        "unsupported image type "
        f"{type(image).__module__}.{type(image).__qualname__}: pass a PIL image, a numpy HWC "
        "uint8 array, a path, encoded bytes or a torch CHW tensor"
    )


def as_image_list(images: Any) -> list[Any]:
    """The images of a batch: a torch NCHW tensor or numpy NHWC array becomes its N images,
    a single image becomes a one-element list, a sequence is copied."""
    if _is_torch(images) and images.ndim == 4:
        return list(images.detach().cpu().unbind(0))  # one device copy for the batch
    if _is_numpy(images) and len(images.shape) == 4:
        return list(images)
    if isinstance(images, (Image.Image, bytes, bytearray, memoryview, str, os.PathLike)):
        return [images]
    if (_is_torch(images) or _is_numpy(images)) and len(images.shape) in (2, 3):
        return [images]
    if isinstance(images, Sequence):
        return list(images)
    return list(images)
