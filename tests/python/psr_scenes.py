"""Deterministic test scenes for the PSR subject-consistency reward.

Each :class:`Case` is one request item: a generated image, one reference image per
subject and the subjects' categories (colour words the fixture detector knows),
plus what the scene is designed to exercise (which shape each crop should find,
or which fallback should happen).  ``test_psr_reference.py`` checks the designs
against the reference implementation; ``test_psr_service.py`` sends the cases to
the service and compares with the reference.

Shapes are textured: every pixel of a shape deviates from its prototype colour by
up to 40/255 per channel (a gradient plus seeded noise, so at most
3 * (40/255)^2 = 0.074 squared distance, inside the detector's 0.1), so crops of
the same colour differ and similarities are not all exactly 1.  Backgrounds are
dark block noise (16 x 16 blocks, 0..50 per channel: small PNGs) that matches no
colour.  Every image is sent as a PNG whose ``Image.open`` equals ``Case.image``.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
}
MAX_DEVIATION = 40
BACKGROUND_MAX = 50

Fallback = Literal["not_detected", "non_rgb", "empty_crop"]


@dataclass(frozen=True)
class Shape:
    """A textured rectangle or ellipse inside the box ``x, y, w, h`` (pixels)."""

    colour: str
    x: int
    y: int
    w: int
    h: int
    kind: Literal["rect", "ellipse"] = "rect"
    seed: int = 0

    @property
    def rect(self) -> tuple[int, int, int, int]:
        """Bounding box ``(x1, y1, x2, y2)``, end exclusive."""
        return (self.x, self.y, self.x + self.w, self.y + self.h)


def _texture(shape: Shape) -> npt.NDArray[np.uint8]:
    """The shape's pixels [h, w, 3]: prototype colour minus a gradient and noise."""
    rng = np.random.default_rng(1000 + shape.seed)
    yy, xx = np.mgrid[0 : shape.h, 0 : shape.w].astype(np.float64)
    out = np.empty((shape.h, shape.w, 3), dtype=np.uint8)
    for c, proto in enumerate(COLOURS[shape.colour]):
        angle = rng.uniform(0, 2 * np.pi)
        grad = np.cos(angle) * xx / max(shape.w, 1) + np.sin(angle) * yy / max(
            shape.h, 1
        )
        grad = (grad - grad.min()) / max(float(np.ptp(grad)), 1e-9)
        t = np.clip(0.6 * grad + 0.4 * rng.random((shape.h, shape.w)), 0.0, 1.0)
        dev = np.round(MAX_DEVIATION * t).astype(np.int64)
        out[..., c] = (proto - dev) if proto == 255 else dev
    return out


def _mask(shape: Shape) -> npt.NDArray[np.bool_]:
    if shape.kind == "rect":
        return np.ones((shape.h, shape.w), dtype=bool)
    yy, xx = np.mgrid[0 : shape.h, 0 : shape.w].astype(np.float64)
    cy, cx = (shape.h - 1) / 2.0, (shape.w - 1) / 2.0
    ry, rx = shape.h / 2.0, shape.w / 2.0
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def scene_array(
    width: int, height: int, shapes: tuple[Shape, ...], seed: int
) -> npt.NDArray[np.uint8]:
    """Dark block-noise background with ``shapes`` painted in order, [H, W, 3]."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(
        0,
        BACKGROUND_MAX + 1,
        size=(-(-height // 16), -(-width // 16), 3),
        dtype=np.uint8,
    )
    arr = np.ascontiguousarray(blocks.repeat(16, 0).repeat(16, 1)[:height, :width])
    for shape in shapes:
        region = arr[shape.y : shape.y + shape.h, shape.x : shape.x + shape.w]
        mask = _mask(shape)
        region[mask] = _texture(shape)[mask]
    return arr


def rgb_scene(width: int, height: int, *shapes: Shape, seed: int = 0) -> Image.Image:
    """An RGB scene."""
    return Image.fromarray(scene_array(width, height, shapes, seed))


def rgba_scene(width: int, height: int, *shapes: Shape, seed: int = 0) -> Image.Image:
    """An RGBA scene, fully opaque (alpha 255 everywhere)."""
    rgb = scene_array(width, height, shapes, seed)
    alpha = np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)
    return Image.fromarray(np.concatenate([rgb, alpha], axis=2))


def grey_scene(width: int, height: int, seed: int = 0) -> Image.Image:
    """An L-mode (8-bit greyscale) scene: dark noise with a bright textured square."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, BACKGROUND_MAX + 1, size=(height, width), dtype=np.uint8)
    y0, x0 = height // 4, width // 4
    patch = rng.integers(200, 256, size=(height // 2, width // 3), dtype=np.uint8)
    arr[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch
    return Image.fromarray(arr)


def png_bytes(img: Image.Image) -> bytes:
    """The image encoded as PNG (RGB, RGBA and L stay as they are)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_rgb16(arr: npt.NDArray[np.uint16]) -> bytes:
    """A 16-bit-per-channel RGB PNG (colour type 2, bit depth 16) of [H, W, 3]."""
    height, width, _ = arr.shape
    rows = arr.astype(">u2")
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


@dataclass(frozen=True)
class Expect:
    """What one subject is designed to do.

    ``shape`` / ``ref_shape``: the shape whose box the generated / reference crop
    should use (None when a fallback is designed, given by ``fallback`` /
    ``ref_fallback``).  ``partial``: the generated shape crosses a region midline,
    so its box covers only the part in the lowest region.
    """

    shape: Shape | None = None
    fallback: Fallback | None = None
    ref_shape: Shape | None = None
    ref_fallback: Fallback | None = None
    partial: bool = False


@dataclass(frozen=True)
class Case:
    """One request item and its design."""

    name: str
    image: Image.Image
    refs: tuple[Image.Image, ...]
    categories: tuple[str, ...]
    expect: tuple[Expect, ...]
    prompt: str = field(default="")
    image_png: bytes | None = None
    ref_files: tuple[bytes, ...] = ()

    def image_bytes(self) -> bytes:
        """The generated image as sent: ``image_png`` when given, else its PNG."""
        return self.image_png if self.image_png is not None else png_bytes(self.image)

    def reference_bytes(self) -> tuple[bytes, ...]:
        """The references as sent: ``ref_files`` when given, else their PNGs."""
        if self.ref_files:
            return self.ref_files
        return tuple(png_bytes(r) for r in self.refs)


def _ref(
    colour: str,
    width: int,
    height: int,
    seed: int,
    size: tuple[int, int] | None = None,
    kind: Literal["rect", "ellipse"] = "rect",
) -> tuple[Image.Image, Shape]:
    """A reference with one shape of ``colour`` inside its top-left quarter."""
    w, h = size if size is not None else (width // 3, height // 3)
    shape = Shape(colour, width // 10, height // 8, w, h, kind, seed)
    return rgb_scene(width, height, shape, seed=seed), shape


@cache
def cases() -> tuple[Case, ...]:
    """Every scene, built once."""
    out: list[Case] = []

    # Two subjects, different colours; 640 x 480 resizes by 5/3 (not an integer).
    red = red_two = Shape("red", 60, 50, 150, 110, "rect", 1)
    blue = blue_two = Shape("blue", 380, 280, 200, 150, "ellipse", 2)
    gen_two = rgb_scene(640, 480, red, blue, seed=101)
    ref_red, ref_red_shape = _ref("red", 256, 256, 11, (100, 90))
    ref_blue, ref_blue_shape = _ref("blue", 320, 240, 12, (120, 80), "ellipse")
    out.append(
        Case(
            "two_subjects",
            gen_two,
            (ref_red, ref_blue),
            ("red", "blue"),
            (Expect(red, None, ref_red_shape), Expect(blue, None, ref_blue_shape)),
            "a red box next to a blue ball",
        )
    )

    # Three subjects, portrait 300 x 500 (max_size rule fires and gives 800 again);
    # yellow crosses the vertical midline, so its box 0 is the bottom-left part.
    red = Shape("red", 20, 30, 100, 120, "rect", 3)
    green = Shape("green", 170, 300, 110, 150, "ellipse", 4)
    yellow = Shape("yellow", 90, 260, 110, 30, "rect", 5)
    ref_red, ref_red_shape = _ref("red", 200, 300, 13)
    ref_green, ref_green_shape = _ref("green", 400, 400, 14, None, "ellipse")
    ref_yellow, ref_yellow_shape = _ref("yellow", 150, 100, 15, (50, 30))
    out.append(
        Case(
            "three_subjects",
            rgb_scene(300, 500, red, green, yellow, seed=102),
            (ref_red, ref_green, ref_yellow),
            ("red", "green", "yellow"),
            (
                Expect(red, None, ref_red_shape),
                Expect(green, None, ref_green_shape),
                Expect(yellow, None, ref_yellow_shape, partial=True),
            ),
            "a red, a green and a yellow thing",
        )
    )

    # Four subjects, 1000 x 400: max_size rule, detector input 1332 x 533.
    red = Shape("red", 40, 30, 200, 120, "rect", 6)
    green = Shape("green", 600, 60, 150, 100, "ellipse", 7)
    blue = Shape("blue", 100, 250, 250, 110, "rect", 8)
    magenta = Shape("magenta", 700, 230, 180, 140, "ellipse", 9)
    refs = [
        _ref("red", 300, 300, 16),
        _ref("green", 500, 375, 17, None, "ellipse"),
        _ref("blue", 224, 224, 18),
        _ref("magenta", 333, 250, 19, None, "ellipse"),
    ]
    out.append(
        Case(
            "four_subjects",
            rgb_scene(1000, 400, red, green, blue, magenta, seed=103),
            tuple(r for r, _ in refs),
            ("red", "green", "blue", "magenta"),
            tuple(
                Expect(s, None, rs)
                for s, (_, rs) in zip((red, green, blue, magenta), refs, strict=True)
            ),
            "four things",
        )
    )

    # Two subjects, same category: box 0 (top-right region) and box 1 (bottom-left).
    red_a = Shape("red", 420, 40, 200, 150, "rect", 20)
    red_b = Shape("red", 60, 330, 180, 160, "ellipse", 21)
    ref_a, ref_a_shape = _ref("red", 256, 320, 22)
    ref_b, ref_b_shape = _ref("red", 300, 260, 23, None, "ellipse")
    out.append(
        Case(
            "same_category",
            rgb_scene(720, 540, red_b, red_a, seed=104),
            (ref_a, ref_b),
            ("red", "red"),
            (Expect(red_a, None, ref_a_shape), Expect(red_b, None, ref_b_shape)),
            "two red things",
        )
    )

    # Same category, only one red shape: subject 2 has no box 1 -> whole image.
    red = Shape("red", 280, 220, 160, 130, "rect", 24)
    out.append(
        Case(
            "same_category_one_shape",
            rgb_scene(500, 400, red, seed=105),
            (ref_a, ref_b),
            ("red", "red"),
            (Expect(red, None, ref_a_shape), Expect(None, "not_detected", ref_b_shape)),
            "two red things",
        )
    )

    # Equal colours spelt differently are different categories for the script's
    # exact string comparison: no same-category rule, both subjects use box 0.
    out.append(
        Case(
            "same_colour_different_spelling",
            rgb_scene(720, 540, red_b, red_a, seed=104),
            (ref_a, ref_b),
            ("red", "Red"),
            (Expect(red_a, None, ref_a_shape), Expect(red_a, None, ref_b_shape)),
            "two red things",
        )
    )

    # Three subjects with a repeated category: no same-category rule (box 0 twice).
    red_a = Shape("red", 330, 20, 120, 100, "rect", 25)
    red_b = Shape("red", 30, 220, 140, 110, "ellipse", 26)
    cyan = Shape("cyan", 300, 220, 150, 120, "rect", 27)
    ref_cyan, ref_cyan_shape = _ref("cyan", 256, 256, 28)
    out.append(
        Case(
            "three_subjects_repeated_category",
            rgb_scene(480, 360, red_a, red_b, cyan, seed=106),
            (ref_a, ref_cyan, ref_b),
            ("red", "cyan", "red"),
            (
                Expect(red_a, None, ref_a_shape),
                Expect(cyan, None, ref_cyan_shape),
                Expect(red_a, None, ref_b_shape),
            ),
            "red, cyan, red",
        )
    )

    # Undetected subject: no cyan in the generated image.
    red = Shape("red", 50, 40, 160, 140, "ellipse", 29)
    out.append(
        Case(
            "undetected_subject",
            rgb_scene(600, 450, red, seed=107),
            (ref_red, ref_cyan),
            ("red", "cyan"),
            (
                Expect(red, None, ref_red_shape),
                Expect(None, "not_detected", ref_cyan_shape),
            ),
            "a red thing and a cyan thing",
        )
    )

    # Undetected reference: the "green" reference holds only a magenta shape.
    red = Shape("red", 40, 40, 150, 100, "rect", 30)
    green = Shape("green", 300, 250, 160, 120, "ellipse", 31)
    no_green, _ = _ref("magenta", 240, 320, 32)
    out.append(
        Case(
            "undetected_reference",
            rgb_scene(512, 400, red, green, seed=108),
            (ref_red, no_green),
            ("red", "green"),
            (
                Expect(red, None, ref_red_shape),
                Expect(green, None, None, "not_detected"),
            ),
            "a red thing and a green thing",
        )
    )

    # RGBA generated image, opaque: the script cannot detect (4 channels), whole G.
    red = Shape("red", 40, 40, 150, 100, "rect", 33)
    blue = Shape("blue", 300, 220, 160, 120, "ellipse", 34)
    out.append(
        Case(
            "rgba_generated",
            rgba_scene(512, 384, red, blue, seed=109),
            (ref_red, ref_blue),
            ("red", "blue"),
            (
                Expect(None, "non_rgb", ref_red_shape),
                Expect(None, "non_rgb", ref_blue_shape),
            ),
            "a red thing and a blue thing",
        )
    )

    # L-mode reference: not detected (1 channel), whole reference.
    out.append(
        Case(
            "l_mode_reference",
            gen_two,
            (ref_red, grey_scene(300, 200, seed=35)),
            ("red", "blue"),
            (
                Expect(red_two, None, ref_red_shape),
                Expect(blue_two, None, None, "non_rgb"),
            ),
            "a red thing and a grey thing",
        )
    )

    # Tiny boxes: 1000 x 800 is not resized (short side already 800), so a 4 x 4
    # shape is exactly the detector's 16-pixel minimum; the reference is tiny too.
    tiny = Shape("red", 101, 203, 4, 4, "rect", 36)
    green = Shape("green", 600, 500, 200, 150, "ellipse", 37)
    tiny_ref = Shape("red", 333, 111, 4, 4, "rect", 38)
    ref_tiny = rgb_scene(800, 1000, tiny_ref, seed=39)
    ref_green, ref_green_shape = _ref("green", 400, 400, 14, None, "ellipse")
    out.append(
        Case(
            "tiny_box",
            rgb_scene(1000, 800, tiny, green, seed=110),
            (ref_tiny, ref_green),
            ("red", "green"),
            (Expect(tiny, None, tiny_ref), Expect(green, None, ref_green_shape)),
            "a tiny red dot and a green blob",
        )
    )

    # 16-bit RGB PNG: Pillow opens it in mode "RGB" (so the script detects) keeping
    # the high byte of each sample (v >> 8, truncation).  The red shape is exactly
    # (255, 57, 57) there, red by 2 * (57/255)^2 = 0.09993 < 0.1, with low bytes
    # 250: a decoder that rounds (v / 257 -> 58) would no longer see red.
    red = Shape("red", 50, 40, 150, 110, "rect", 40)
    blue = Shape("blue", 300, 220, 150, 110, "ellipse", 41)
    high = scene_array(480, 360, (blue,), seed=111).astype(np.uint16)
    high[40:150, 50:200] = (255, 57, 57)
    low = np.random.default_rng(42).integers(0, 256, size=high.shape, dtype=np.uint16)
    low[40:150, 50:200] = (255, 250, 250)
    png16 = png_rgb16(high * 256 + low)
    decoded = Image.open(io.BytesIO(png16))
    decoded.load()
    out.append(
        Case(
            "rgb16_generated",
            decoded,
            (ref_red, ref_blue),
            ("red", "blue"),
            (Expect(red, None, ref_red_shape), Expect(blue, None, ref_blue_shape)),
            "a red thing and a blue thing, 16 bits",
            image_png=png16,
        )
    )

    # 16-bit grey reference: Pillow opens it as "I;16" (not detected), and the
    # whole-image embedding resizes in I;16 and then convert("RGB") clamps each
    # sample to 0..255 (no scaling): the dark background (0..200) survives, the
    # bright square (300..60000) turns white.
    rng = np.random.default_rng(43)
    grey16 = rng.integers(0, 201, size=(240, 320), dtype=np.uint16)
    grey16[60:180, 80:240] = rng.integers(300, 60001, size=(120, 160), dtype=np.uint16)
    out.append(
        Case(
            "l16_reference",
            gen_two,
            (ref_red, Image.fromarray(grey16)),
            ("red", "blue"),
            (
                Expect(red_two, None, ref_red_shape),
                Expect(blue_two, None, None, "non_rgb"),
            ),
            "a red thing and a 16-bit grey thing",
        )
    )
    return tuple(out)
