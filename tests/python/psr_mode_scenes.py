"""Scenes whose reference is in a Pillow mode other than RGB: cut-outs, palettes, CMYK.

Subject datasets are full of cut-out subjects (RGBA or LA PNGs with a transparent
background), palette PNGs and the odd CMYK JPEG.  The PSR scripts open them with
``Image.open`` and never convert them, so Pillow's own rules decide what the embedder
sees: ``resize`` works premultiplied on RGBA and LA (a transparent pixel comes out black
whatever colour it stores), always NEAREST on P and 1, in CMYK for CMYK, and the
detector's transform refuses every mode but RGB (the image is used uncropped).

``rgb_jpeg_reference`` is the control: an RGB JPEG, detected, where only the decoders
(libjpeg-turbo in Pillow, zune-jpeg here) can differ.

Every scene has the RGB two-subject generated image of ``psr_scenes`` (a red box and a
blue ball) and two references: the red one in RGB, the blue one in the mode under test,
sent as the bytes in ``Case.ref_files`` (``Image.open`` of those bytes is ``Case.refs``).
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
import numpy.typing as npt
import psr_scenes as scenes
from PIL import Image

# The blue subject of the reference: a textured ellipse, as in psr_scenes' two_subjects.
REF_SIZE = (320, 240)
BLUE = scenes.Shape("blue", 80, 50, 170, 130, "ellipse", 12)
# The RGB JPEG control's shape, inside one detector region so its box is the whole shape.
BLUE_JPEG = scenes.Shape("blue", 30, 25, 110, 80, "ellipse", 12)
# Width of the soft edge, as a fraction of the radius: alpha ramps 0..255 across it.
EDGE = 0.12


def cutout_alpha(shape: scenes.Shape, width: int, height: int) -> npt.NDArray[np.uint8]:
    """255 inside the shape's ellipse, a soft edge, 0 outside."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = shape.x + (shape.w - 1) / 2.0, shape.y + (shape.h - 1) / 2.0
    d = np.hypot((xs - cx) / (shape.w / 2.0), (ys - cy) / (shape.h / 2.0))
    return np.clip(np.round((1.0 - d) / EDGE * 255.0), 0, 255).astype(np.uint8)


def cutout_rgba(stored: int) -> Image.Image:
    """The blue ellipse cut out of its scene; fully transparent pixels store ``stored``."""
    width, height = REF_SIZE
    rgb = scenes.scene_array(width, height, (BLUE,), seed=12)
    alpha = cutout_alpha(BLUE, width, height)
    rgb[alpha == 0] = stored
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def _opened(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _png(img: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **params)
    return buf.getvalue()


def palette_with_transparency() -> bytes:
    """The white-stored cut-out as an adaptive palette whose white entry is transparent."""
    rgba = cutout_rgba(255)
    pal = rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    alpha = np.asarray(rgba)[..., 3]
    index = int(np.bincount(np.asarray(pal)[alpha == 0].ravel()).argmax())
    return _png(pal, transparency=index)


def cmyk_jpeg() -> bytes:
    """The blue reference scene as a CMYK JPEG (Pillow writes Adobe's inverted CMYK)."""
    width, height = REF_SIZE
    rgb = Image.fromarray(scenes.scene_array(width, height, (BLUE,), seed=12))
    buf = io.BytesIO()
    rgb.convert("CMYK").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def rgb_jpeg() -> bytes:
    """The blue reference scene as an RGB JPEG (Pillow's default 4:2:0 subsampling)."""
    width, height = REF_SIZE
    rgb = Image.fromarray(scenes.scene_array(width, height, (BLUE_JPEG,), seed=12))
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def reference_files() -> dict[str, bytes]:
    """Scene name -> the blue reference's file."""
    width, height = REF_SIZE
    blue_rgb = Image.fromarray(scenes.scene_array(width, height, (BLUE,), seed=12))
    grey = cutout_rgba(255)
    la = Image.merge("LA", (grey.convert("L"), grey.getchannel("A")))
    return {
        "rgba_cutout_white_reference": _png(cutout_rgba(255)),
        "rgba_cutout_grey_reference": _png(cutout_rgba(128)),
        "rgba_cutout_black_reference": _png(cutout_rgba(0)),
        "la_cutout_reference": _png(la),
        "p_adaptive_reference": _png(
            blue_rgb.convert("P", palette=Image.Palette.ADAPTIVE)
        ),
        "p_transparency_reference": palette_with_transparency(),
        "bilevel_reference": _png(blue_rgb.convert("1")),
        "cmyk_jpeg_reference": cmyk_jpeg(),
        "rgb_jpeg_reference": rgb_jpeg(),
    }


@cache
def cases() -> tuple[scenes.Case, ...]:
    """One scene per reference mode, built once."""
    red = scenes.Shape("red", 60, 50, 150, 110, "rect", 1)
    blue = scenes.Shape("blue", 380, 280, 200, 150, "ellipse", 2)
    generated = scenes.rgb_scene(640, 480, red, blue, seed=101)
    red_ref_shape = scenes.Shape("red", 25, 32, 100, 90, "rect", 11)
    red_ref = scenes.rgb_scene(256, 256, red_ref_shape, seed=11)
    red_png = scenes.png_bytes(red_ref)
    out = []
    for name, data in reference_files().items():
        out.append(
            scenes.Case(
                name,
                generated,
                (red_ref, _opened(data)),
                ("red", "blue"),
                (
                    scenes.Expect(red, None, red_ref_shape),
                    # An RGB JPEG is detected; every other mode is not.
                    scenes.Expect(blue, None, BLUE_JPEG, None)
                    if name == "rgb_jpeg_reference"
                    else scenes.Expect(blue, None, None, "non_rgb"),
                ),
                "a red box and a blue ball cut out",
                ref_files=(red_png, data),
            )
        )
    return tuple(out)
