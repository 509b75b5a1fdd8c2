"""The service's real-weights MobileNetV2 embedder against Python onnxruntime.

Starts the real ``psr-reward serve`` binary on ``models/default.toml`` and sends real
photos (and crops of them) to ``POST /v1/embed``:

* every embedding equals, within 1e-4 (max abs), what Python onnxruntime gives for
  the same image with the same ONNX file and deep_sort's preprocessing done by
  Pillow: RGB, ``resize((224, 224), BILINEAR)``, ``/ 255``, ImageNet mean/std, CHW.
  The crops are up- and downscaled, with several aspect ratios;
* two overlapping crops of one photo are closer (cosine) than crops of different
  photos.

Environment: ``PSR_PHOTOS_WHEEL`` (a scikit-image wheel, read as a zip for its
``skimage/data/`` photos), ``PSR_MBV2_ONNX`` (default
``.deps/mobilenetv2_embedder.onnx``; it must be the file ``models/default.toml``
serves), ``PSR_BINARY`` and ``PSR_ORT_LIBRARY`` (see ``service.py``). ``make setup``
provides the wheel and the ONNX file, ``make fixtures`` the other models the
manifest serves; the tests are skipped without them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mbv2_inputs
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from mbv2_inputs import PHOTOS, Floats, pixel_values
from PIL import Image
from service import REPO, binary_missing, post_json, running_service

MANIFEST = REPO / "models" / "default.toml"
ONNX = Path(
    os.environ.get("PSR_MBV2_ONNX") or REPO / ".deps" / "mobilenetv2_embedder.onnx"
)
PHOTOS_WHEEL = os.environ.get("PSR_PHOTOS_WHEEL", "")
TOLERANCE = 1e-4
#: Crops for the comparison with Python, as fractions (left, top, right, bottom) of
#: the photo: from downscaling on both axes to upscaling on both, wide and tall.
CROPS: dict[str, tuple[float, float, float, float]] = {
    "full": (0.0, 0.0, 1.0, 1.0),
    "centre": (0.2, 0.15, 0.8, 0.85),
    "small": (0.41, 0.37, 0.59, 0.61),
    "tiny": (0.5, 0.5, 0.57, 0.58),
    "wide_strip": (0.03, 0.45, 0.97, 0.58),
    "tall_strip": (0.62, 0.02, 0.7, 0.99),
}
#: Two overlapping crops per photo for the similarity test: left and right parts
#: sharing the middle, of different heights.
PAIR = ((0.0, 0.0, 0.7, 0.9), (0.3, 0.1, 1.0, 1.0))


def _missing() -> str | None:
    """Why the test inputs are absent, or None when they are all there."""
    if not PHOTOS_WHEEL:
        return (
            "PSR_PHOTOS_WHEEL is not set: point it at a scikit-image wheel "
            "(`make setup` downloads scikit_image-0.25.2-*.whl into .deps/wheels)"
        )
    if not Path(PHOTOS_WHEEL).is_file():
        return f"PSR_PHOTOS_WHEEL={PHOTOS_WHEEL} is not a file"
    if not ONNX.is_file():
        return (
            f"MobileNetV2 embedder not found at {ONNX}: run `make setup` "
            "(or point PSR_MBV2_ONNX at one)"
        )
    with open(MANIFEST, "rb") as f:
        config = tomllib.load(f)
    for section in ("detector", "embedder", "aesthetic"):
        for key in ("path", "tokenizer"):
            value = config.get(section, {}).get(key)
            if value and not (MANIFEST.parent / value).is_file():
                path = (MANIFEST.parent / value).resolve()
                return (
                    f"{MANIFEST.name} serves [{section}] {key} {path}, which is "
                    "missing: run `make setup fixtures`"
                )
    return None


_MISSING = _missing()
pytestmark = [
    binary_missing,
    pytest.mark.skipif(_MISSING is not None, reason=_MISSING or ""),
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_manifest() -> None:
    """Fails unless ``models/default.toml`` serves ``ONNX`` as Python runs it.

    The embedder file must be byte-identical to ``ONNX``, with input
    ``pixel_values``, output ``embeddings`` and deep_sort's preprocessing: squash
    to 224x224, bilinear, ImageNet statistics.
    """
    with open(MANIFEST, "rb") as f:
        embedder = tomllib.load(f).get("embedder", {})
    problems = []
    served = (MANIFEST.parent / embedder.get("path", "<none>")).resolve()
    if not served.is_file() or _sha256(served) != _sha256(ONNX):
        problems.append(f"path {served} is not {ONNX}")
    io_names = (embedder.get("input"), embedder.get("output"))
    if io_names != ("pixel_values", "embeddings"):
        problems.append(f"input/output {io_names} != ('pixel_values', 'embeddings')")
    pre = embedder.get("preprocess", {})
    want = {"rule": "squash", "width": 224, "height": 224}
    if (
        pre.get("resize") != want
        or pre.get("filter") != "bilinear"
        or pre.get("normalize") != "imagenet"
    ):
        problems.append(f"preprocess {pre} is not squash 224x224 bilinear imagenet")
    if problems:
        pytest.fail(f"[embedder] of {MANIFEST}: " + "; ".join(problems))


@pytest.fixture(scope="module")
def mbv2_service() -> Iterator[str]:
    """Base URL of a ``psr-reward serve`` process on ``models/default.toml``."""
    check_manifest()
    with running_service(MANIFEST) as base:
        yield base


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    """Python onnxruntime on the ONNX file the service serves."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(ONNX), options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------- inputs


def photo(name: str) -> Image.Image:
    """``skimage/data/<name>`` from the scikit-image wheel, as RGB."""
    return mbv2_inputs.photo(Path(PHOTOS_WHEEL), name)


def crop(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The part of ``image`` in ``box`` (fractions of its width and height)."""
    w, h = image.size
    left, top, right, bottom = box
    return image.crop(
        (round(left * w), round(top * h), round(right * w), round(bottom * h))
    )


def b64_png(image: Image.Image) -> str:
    """Base64 of the image's PNG encoding."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def python_embed(session: ort.InferenceSession, images: list[Image.Image]) -> Floats:
    """Embeddings of Python onnxruntime, ``[N, 1280]``."""
    batch = np.stack([pixel_values(image) for image in images])
    (out,) = session.run(["embeddings"], {"pixel_values": batch})
    return np.asarray(out, np.float32)


def service_embed(base: str, images: list[Image.Image]) -> Floats:
    """``POST /v1/embed`` with the images as PNG; the embeddings, ``[N, 1280]``."""
    status, body = post_json(
        f"{base}/v1/embed", {"images": [b64_png(image) for image in images]}
    )
    assert status == 200, f"POST /v1/embed answered {status}: {str(body)[:2000]}"
    assert isinstance(body, dict), body
    assert body.get("model") == "mobilenetv2", body.get("model")
    assert body.get("dimensions") == 1280, body.get("dimensions")
    embeddings: Any = body.get("embeddings")
    assert isinstance(embeddings, list) and len(embeddings) == len(images)
    out = np.asarray(embeddings, np.float32)
    assert out.shape == (len(images), 1280), out.shape
    return out


def cosine(embeddings: Floats) -> npt.NDArray[np.float64]:
    """Cosine similarity of every pair of rows."""
    unit = embeddings.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    return unit @ unit.T


# ----------------------------------------------------------------------------- tests


def test_embeddings_match_python_onnxruntime(
    mbv2_service: str, session: ort.InferenceSession
) -> None:
    names = [(p, c) for p in PHOTOS for c in CROPS]
    images = [crop(photo(p), CROPS[c]) for p, c in names]
    sizes = {image.size for image in images}
    # Up- and downscaled on each axis: the crops cover both directions.
    assert min(w for w, _ in sizes) < 224 < max(w for w, _ in sizes)
    assert min(h for _, h in sizes) < 224 < max(h for _, h in sizes)
    want = python_embed(session, images)
    got = service_embed(mbv2_service, images)
    diff = np.abs(got - want).max(axis=1)
    report = ", ".join(
        f"{p}/{c} {image.size[0]}x{image.size[1]}: {d:.2e}"
        for (p, c), image, d in zip(names, images, diff, strict=True)
    )
    print(f"max abs diff {diff.max():.3e} (per image: {report})")
    bad = [
        f"{p}/{c} ({image.size[0]}x{image.size[1]}): max abs diff {d:.3e}"
        for (p, c), image, d in zip(names, images, diff, strict=True)
        if not d <= TOLERANCE
    ]
    assert not bad, "service != Python onnxruntime:\n" + "\n".join(bad)
    # One image per request gives the same embeddings as the batch.
    for index in (0, len(images) - 1):
        (alone,) = service_embed(mbv2_service, [images[index]])
        np.testing.assert_allclose(alone, want[index], rtol=0, atol=TOLERANCE)


def test_crops_of_one_photo_are_closer_than_other_photos(mbv2_service: str) -> None:
    labels = [p for p in PHOTOS for _ in PAIR]
    images = [crop(photo(p), box) for p in PHOTOS for box in PAIR]
    sim = cosine(service_embed(mbv2_service, images))
    same = {p: float(sim[2 * i, 2 * i + 1]) for i, p in enumerate(PHOTOS)}
    different = [
        float(sim[i, j])
        for i in range(len(labels))
        for j in range(i + 1, len(labels))
        if labels[i] != labels[j]
    ]
    rounded = {p: round(c, 3) for p, c in same.items()}
    report = (
        f"same-photo cosines {rounded}; "
        f"different photos min/mean/max {min(different):.3f}/"
        f"{np.mean(different):.3f}/{max(different):.3f}"
    )
    print(report)
    assert min(same.values()) > max(different), report
