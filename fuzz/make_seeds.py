"""Writes the committed seed corpus of the fuzz targets (deterministic; a few KB per target).

Usage: python fuzz/make_seeds.py [OUT_DIR]   (default: fuzz/corpus next to this file)

Images are made with Pillow (the library the PSR scripts decode with): PNG RGB / RGBA / grey /
grey+alpha / palette / 16-bit, JPEG baseline / progressive / grey / CMYK / truncated, WebP
lossy / lossless / alpha, GIF, and hostile headers (a PNG and a JPEG whose headers claim
huge sizes, 1x8192 and 8192x1 strips). Route seeds are JSON bodies carrying such images.
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import sys
import zlib
from pathlib import Path

from PIL import Image

Seeds = dict[str, bytes]


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def scene(w: int, h: int, mode: str = "RGB") -> Image.Image:
    """A white image with a red square in the middle (what the fixture detector finds)."""
    img = Image.new("RGB", (w, h), (255, 255, 255))
    img.paste((255, 0, 0), (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    return img.convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def raw_png(w: int, h: int, depth: int, colour: int, rows: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB, nor lie about its size)."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows, 9))
        + png_chunk(b"IEND", b"")
    )


def rgb16_png(w: int, h: int) -> bytes:
    row = b"\x00" + b"".join(
        struct.pack(">HHH", 65535, 57 * 256 + 250, 300 * x) for x in range(w)
    )
    return raw_png(w, h, 16, 2, row * h)


def grey16_png(w: int, h: int) -> bytes:
    row = b"\x00" + b"".join(struct.pack(">H", 300 * x) for x in range(w))
    return raw_png(w, h, 16, 0, row * h)


def jpeg_claiming(w: int, h: int) -> bytes:
    """A tiny JPEG whose SOF0 header is patched to claim `w`x`h`."""
    data = bytearray(encode(scene(8, 8), "JPEG", quality=50))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def images() -> Seeds:
    s = scene(16, 12)
    jpeg = encode(s, "JPEG", quality=80)
    return {
        "png_rgb": encode(s, "PNG"),
        "png_rgba": encode(scene(16, 12, "RGBA"), "PNG"),
        "png_grey": encode(scene(16, 12, "L"), "PNG"),
        "png_grey_alpha": encode(scene(16, 12, "LA"), "PNG"),
        "png_palette": encode(scene(16, 12, "P"), "PNG"),
        "png_grey16": grey16_png(8, 4),
        "png_rgb16": rgb16_png(8, 4),
        "png_interlaced": encode(s, "PNG", interlace=1),
        "jpeg": jpeg,
        "jpeg_progressive": encode(s, "JPEG", quality=60, progressive=True),
        "jpeg_grey": encode(scene(16, 12, "L"), "JPEG"),
        "jpeg_cmyk": encode(scene(16, 12, "CMYK"), "JPEG"),
        "jpeg_truncated": jpeg[: len(jpeg) // 2],
        "jpeg_no_eoi": jpeg[:-2],
        "webp_lossy": encode(s, "WEBP", quality=50),
        "webp_lossless": encode(s, "WEBP", lossless=True),
        "webp_alpha": encode(scene(16, 12, "RGBA"), "WEBP", lossless=True),
        "gif": encode(scene(16, 12, "P"), "GIF"),
        "bomb_png_header": raw_png(60000, 60000, 8, 2, b"\x00\x00\x00\x00"),
        "bomb_jpeg_6000": jpeg_claiming(6000, 6000),
        "strip_1x8192": encode(Image.new("RGB", (1, 8192), (200, 10, 10)), "PNG"),
        "strip_8192x1": encode(Image.new("RGB", (8192, 1), (10, 200, 10)), "PNG"),
        "png_truncated": encode(s, "PNG")[:40],
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decode_seeds(imgs: Seeds) -> Seeds:
    # First byte = mode: 2 -> the rest is image bytes (base64-encoded by the target);
    # 0 -> the rest is the base64 text itself; 1 -> the bytes behind a data URL.
    seeds = {name: b"\x02" + data for name, data in imgs.items()}
    png = imgs["png_rgb"]
    seeds["text_data_url"] = b"\x00data:image/png;base64," + b64(png).encode()
    seeds["text_unpadded"] = b"\x00" + b64(png).rstrip("=").encode()
    seeds["text_whitespace"] = b"\x00  " + b64(png).encode() + b"\n"
    seeds["text_urlsafe"] = b"\x00" + base64.urlsafe_b64encode(imgs["jpeg"])
    seeds["data_url_webp"] = b"\x01" + imgs["webp_lossy"]
    return seeds


def route_seeds(imgs: Seeds) -> dict[str, Seeds]:
    red = b64(imgs["png_rgb"])
    others = {k: b64(imgs[k]) for k in ("png_rgba", "jpeg", "webp_lossy", "png_rgb16")}

    def raw(body: object) -> bytes:
        return b"\x00" + json.dumps(body).encode()

    embed = {
        "one": raw({"images": [red]}),
        "formats": raw(
            {"images": list(others.values()), "timeout_ms": 5000, "priority": 0}
        ),
        "data_url": raw({"images": ["data:image/png;base64," + red]}),
        "strip": raw({"images": [b64(imgs["strip_1x8192"])]}),
        "empty": raw({"images": []}),
    }
    detect = {
        "one": raw({"images": [red], "phrases": ["red"]}),
        "two": raw(
            {
                "images": [red, others["jpeg"]],
                "phrases": ["red", "Blue."],
                "box_threshold": 0.3,
            }
        ),
        "bad_threshold": raw(
            {"images": [red], "phrases": ["red"], "box_threshold": 1.5}
        ),
        "no_phrases": raw({"images": [red], "phrases": []}),
    }
    subject = {"name": "red", "reference": red}
    reward = {
        "one": raw(
            {"items": [{"image": red, "prompt": "a red square", "subjects": [subject]}]}
        ),
        "two_subjects": raw(
            {
                "items": [
                    {
                        "image": red,
                        "prompt": "red and blue",
                        "task": "position",
                        "subjects": [
                            subject,
                            {"name": "blue", "reference": others["png_rgba"]},
                        ],
                    }
                ],
                "rewards": {"subject_consistency": 0.7, "position": 0.3},
                "mode": "robust",
                "options": {
                    "matching": "assignment",
                    "detection": "joint",
                    "clamp_boxes": True,
                },
            }
        ),
        "cached_ref": raw(
            {
                "items": [
                    {
                        "image": red,
                        "subjects": [{"name": "red", "reference": {"ref": "00" * 16}}],
                    }
                ]
            }
        ),
        "wrong_types": raw(
            {
                "items": [{"image": red, "subjects": [subject]}],
                "mode": 1,
                "options": {"alpha": 0},
            }
        ),
        "aesthetic": raw(
            {
                "items": [{"image": others["jpeg"], "subjects": [subject]}],
                "rewards": {"aesthetic": 1.0},
            }
        ),
    }
    rng = random.Random(8)
    # Odd first byte: the target builds a structured request from the remaining bytes.
    for seeds in (embed, detect, reward):
        for i in range(4):
            seeds[f"structured_{i}"] = b"\x01" + rng.randbytes(64 + 96 * i)
    return {"route_embed": embed, "route_detect": detect, "route_reward": reward}


def tokenizer_seeds() -> Seeds:
    texts = [
        "red",
        "  Red Square. ",
        "red | blue | a cyan thing",
        "the red of the green, a blue?",
        "[CLS] [SEP] [MASK] [PAD] [UNK]",
        "ünïcödé 猫 🐈 \u200b\u0301",
        "red " * 80,
        "|||",
        "x" * 150,
        "\x00\x01\x7f . , ?",
    ]
    return {f"text_{i}": t.encode() for i, t in enumerate(texts)}


def random_seeds(tag: int, sizes: list[int]) -> Seeds:
    rng = random.Random(tag)
    return {f"random_{n}": rng.randbytes(n) for n in sizes}


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "corpus"
    imgs = images()
    corpora: dict[str, Seeds] = {
        "decode_image": decode_seeds(imgs),
        "tokenizer": tokenizer_seeds(),
        "resize": random_seeds(1, [16, 32, 48, 64, 96, 128, 256]),
        "detector_boxes": random_seeds(2, [24, 64, 128, 256, 512]),
        **route_seeds(imgs),
    }
    for target, seeds in corpora.items():
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
        total = sum(len(d) for d in seeds.values())
        print(f"{target}: {len(seeds)} seeds, {total} bytes")


if __name__ == "__main__":
    main()
