"""Every image input type reaches the server as the same pixels."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import AESTHETIC, TOLERANCE, red_ref, solid
from PIL import Image
from psr_server import PsrServer

from psr_reward_client import EncodeOptions, RewardClient

V = 200
WANT = V / 255


def _bytes(fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    solid(V).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _score(client: RewardClient, images: Any) -> list[float | None]:
    n = len(images) if not hasattr(images, "shape") else images.shape[0]
    return client.score(images, "red", [[("red", red_ref())]] * n, rewards=AESTHETIC).rewards


def test_every_input_type(server: PsrServer, tmp_path: Path) -> None:
    png, jpg = tmp_path / "a.png", tmp_path / "a.jpg"
    png.write_bytes(_bytes("PNG"))
    jpg.write_bytes(_bytes("JPEG", quality=95))
    hwc = np.asarray(solid(V))
    exact: dict[str, Any] = {
        "pil": solid(V),
        "pil_rgba": solid(V).convert("RGBA"),
        "pil_palette": solid(V).convert("P", palette=Image.Palette.ADAPTIVE),
        "numpy_hwc_uint8": hwc,
        "numpy_hwc_float": hwc.astype(np.float32) / 255.0,
        "path_str": str(png),
        "path_obj": png,
        "bytes_png": _bytes("PNG"),
        "bytearray": bytearray(_bytes("PNG")),
        "memoryview": memoryview(_bytes("PNG")),
        "bytes_webp_lossless": _bytes("WEBP", lossless=True),
        "bytes_bmp_reencoded": _bytes("BMP"),
    }
    lossy = {"path_jpeg": jpg, "bytes_jpeg": _bytes("JPEG", quality=95)}
    with RewardClient(server.url) as client:
        got = _score(client, list(exact.values()) + list(lossy.values()))
        batch = _score(client, np.stack([hwc, hwc, np.asarray(solid(10))]))
    for name, value in zip(list(exact) + list(lossy), got, strict=True):
        tol = TOLERANCE if name in exact else 0.02
        assert value == pytest.approx(WANT, abs=tol), name
    assert batch == pytest.approx([WANT, WANT, 10 / 255], abs=TOLERANCE)


def test_jpeg_encoding_with_quality(server: PsrServer) -> None:
    with RewardClient(server.url, encode=EncodeOptions(format="jpeg", quality=90)) as client:
        got = _score(client, [solid(V), np.asarray(solid(60))])
    assert got == pytest.approx([WANT, 60 / 255], abs=0.02)


def test_unsupported_inputs_say_what_is_accepted(server: PsrServer) -> None:
    with RewardClient(server.url) as client:
        with pytest.raises(TypeError, match="unsupported image type"):
            _score(client, [12345])
        with pytest.raises(TypeError, match="HWC"):
            _score(client, [np.zeros((3, 8, 8, 2), dtype=np.uint8)[0]])


def test_torch_tensors(server: PsrServer) -> None:
    torch = pytest.importorskip("torch")
    hwc = torch.from_numpy(np.asarray(solid(V)).copy())
    nchw_float = torch.stack([hwc.permute(2, 0, 1), hwc.permute(2, 0, 1) // 2]).float() / 255.0
    chw_uint8 = hwc.permute(2, 0, 1).contiguous()
    with RewardClient(server.url) as client:
        assert _score(client, nchw_float) == pytest.approx([WANT, (V // 2) / 255], abs=TOLERANCE)
        assert _score(client, [chw_uint8]) == pytest.approx([WANT], abs=TOLERANCE)


def test_image_sizes_reach_the_server_unchanged() -> None:
    from psr_reward_client import encode_image

    e = encode_image(np.zeros((30, 50, 3), dtype=np.uint8))
    assert (e.width, e.height) == (50, 30)
    im = Image.open(io.BytesIO(__import__("base64").b64decode(e.b64)))
    assert im.size == (50, 30) and im.format == "PNG"
