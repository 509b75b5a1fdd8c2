"""Self-tests of the PSR reference implementation (no service needed).

They pin the script semantics ``psr_reference`` reproduces on hand-made images and
check that every scene in ``psr_scenes`` does what it is designed to exercise, so
that ``test_psr_service.py`` compares the service against meaningful expectations.
"""

from __future__ import annotations

import io

import numpy as np
import psr_mode_scenes as mode_scenes
import psr_reference as ref
import psr_scenes as scenes
import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(
    not (ref.fixtures_dir() / "detector.onnx").is_file(),
    reason=f"fixture models missing in {ref.fixtures_dir()}: run `make fixtures`",
)


def solid(
    width: int, height: int, rects: list[tuple[str, int, int, int, int]]
) -> Image.Image:
    """Black RGB image with untextured rectangles ``(colour, x, y, w, h)``."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    for colour, x, y, w, h in rects:
        arr[y : y + h, x : x + w] = scenes.COLOURS[colour]
    return Image.fromarray(arr)


# ------------------------------------------------------------------ text and sizes


@pytest.mark.parametrize(
    ("caption", "ids"),
    [
        ("red square.", [2, 6, 45, 5, 3]),
        ("red . blue .", [2, 6, 5, 8, 5, 3]),
        (
            "A Red Cat on the LEFT of two dogs?",
            [2, 14, 6, 42, 18, 16, 26, 17, 53, 43, 57, 13, 3],
        ),
        ("red.", [2, 6, 5, 3]),
        ("magenta.", [2, 11, 5, 3]),
        ("zebra.", [2, 1, 5, 3]),
    ],
)
def test_tokenize_matches_the_fixture_readme(caption: str, ids: list[int]) -> None:
    assert ref.tokenize(caption, ref.default_models().vocab) == ids


@pytest.mark.parametrize(
    ("category", "caption"),
    [("red", "red."), ("Red ", "red."), ("  BLUE.", "blue."), ("red . ", "red .")],
)
def test_caption_is_lowercased_stripped_and_dotted(category: str, caption: str) -> None:
    assert ref.caption_for(category) == caption


@pytest.mark.parametrize(
    ("size", "resized"),
    [
        ((400, 400), (800, 800)),
        ((640, 480), (1066, 800)),  # 5/3: not an integer factor
        ((300, 500), (800, 1333)),  # max_size rule fires, rounds back to 800
        ((1000, 400), (1332, 533)),  # max_size rule: round(533.2) = 533
        ((1000, 800), (1000, 800)),  # short side already 800: unchanged
        ((800, 1000), (800, 1000)),
        ((200, 100), (1332, 666)),  # round(666.5) = 666 (half to even)
        ((2000, 100), (1340, 67)),  # the long side may exceed 1333
        ((1600, 1600), (800, 800)),  # downscale
    ],
)
def test_detection_size_follows_grounding_dino_random_resize(
    size: tuple[int, int], resized: tuple[int, int]
) -> None:
    assert ref.detection_size(*size) == resized


# ------------------------------------------------------------------------ detection


def test_known_box_in_a_400_square_image() -> None:
    img = solid(400, 400, [("red", 40, 30, 80, 70)])
    det = ref.detect(img, "red")
    assert det.rgb
    assert det.queries == (0,)
    assert det.boxes == ((40, 30, 120, 100),)
    assert ref.detect(img, "Red ").boxes == det.boxes
    assert ref.detect(img, "blue").boxes == ()


def test_unresized_image_gives_exact_boxes_down_to_16_pixels() -> None:
    img = solid(1000, 800, [("red", 101, 203, 4, 4), ("green", 600, 500, 3, 5)])
    assert ref.detect(img, "red").boxes == ((101, 203, 105, 207),)
    assert ref.detect(img, "green").boxes == ()  # 15 pixels: absent


def test_kept_boxes_are_in_query_order_one_per_region() -> None:
    # One red shape across the vertical midline (x 150..249), and a second red shape
    # in the bottom-left region: queries 0 (left part), 1 (right part), 2.
    img = solid(400, 400, [("red", 150, 40, 100, 60), ("red", 20, 300, 50, 50)])
    det = ref.detect(img, "red")
    assert det.queries == (0, 1, 2)
    assert det.boxes == ((150, 40, 200, 100), (200, 40, 250, 100), (20, 300, 70, 350))


def test_non_rgb_images_are_not_detected() -> None:
    img = solid(400, 400, [("red", 40, 30, 80, 70)])
    for mode in ("RGBA", "L", "LA", "P"):
        det = ref.detect(img.convert(mode), "red")
        assert not det.rgb and det.boxes == ()
        _, box, fallback = ref.crop_or_whole(img.convert(mode), det, 0)
        assert box is None and fallback == "non_rgb"


# ---------------------------------------------------------------------------- crops


def test_crop_uses_python_slice_semantics_and_falls_back_when_empty() -> None:
    img = solid(100, 80, [("red", 10, 10, 20, 20)])
    det = ref.Detection(
        rgb=True,
        boxes=((10, 10, 30, 30), (10, 10, 10, 20), (-5, 0, -1, 10), (90, 70, 500, 500)),
        queries=(0, 1, 2, 3),
    )
    crop, box, fallback = ref.crop_or_whole(img, det, 0)
    assert (crop.size, box, fallback) == ((20, 20), (10, 10, 30, 30), None)
    crop, box, fallback = ref.crop_or_whole(img, det, 1)
    assert crop is img and box == (10, 10, 10, 20) and fallback == "empty_crop"
    crop, _, fallback = ref.crop_or_whole(img, det, 2)  # [-5:-1] wraps: 4 columns
    assert crop.size == (4, 10) and fallback is None
    crop, _, fallback = ref.crop_or_whole(img, det, 3)  # ends clamp
    assert crop.size == (10, 10) and fallback is None
    crop, box, fallback = ref.crop_or_whole(img, det, 4)
    assert crop is img and box is None and fallback == "not_detected"


# ------------------------------------------------------------------------ embedding


def test_center_crop_offset_rounds_half_to_even() -> None:
    rng = np.random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 256, size=(257, 256, 3), dtype=np.uint8))
    # Short side already 256: no resize; (257 - 224) / 2 = 16.5 -> top 16.
    got = ref.embed_input(img)
    assert got.shape == (3, 224, 224) and got.dtype == np.float32
    np.testing.assert_array_equal(
        got, ref._normalize_imagenet(img.crop((16, 16, 240, 240)))
    )


def test_embed_input_resizes_short_side_to_256() -> None:
    img = solid(300, 200, [("red", 0, 0, 300, 200)])
    # Solid colour survives any resize: every pixel normalises red exactly.
    got = ref.embed_input(img)
    want = (
        np.array([1.0, 0.0, 0.0], np.float32) - ref.IMAGENET_MEAN
    ) / ref.IMAGENET_STD
    np.testing.assert_allclose(got[:, 100, 100], want, atol=1e-6)


def test_solid_colour_cosines_match_the_fixture_readme() -> None:
    red = ref.embed(solid(64, 64, [("red", 0, 0, 64, 64)]))
    blue = ref.embed(solid(50, 70, [("blue", 0, 0, 50, 70)]))
    yellow = ref.embed(solid(90, 30, [("yellow", 0, 0, 90, 30)]))
    assert ref.cosine(red, red) == pytest.approx(1.0, abs=1e-6)
    assert ref.cosine(red, blue) == pytest.approx(1 / 3, abs=1e-6)
    assert ref.cosine(red, yellow) == pytest.approx(2 / 3, abs=1e-6)


# --------------------------------------------------------------------- the reward


def test_identical_solid_shapes_score_one() -> None:
    gen = solid(400, 400, [("red", 40, 30, 80, 70), ("blue", 250, 260, 90, 100)])
    red_ref = solid(300, 200, [("red", 20, 20, 60, 50)])
    blue_ref = solid(256, 256, [("blue", 30, 40, 70, 70)])
    result = ref.subject_consistency(gen, [red_ref, blue_ref], ["red", "blue"])
    assert result.score == pytest.approx(1.0, abs=1e-6)
    red, blue = result.subjects
    assert red.box == (40, 30, 120, 100) and red.detected and red.fallback is None
    assert blue.detected and blue.fallback is None
    assert red.reference_detected and red.reference_fallback is None


def test_generated_box_index_rule_is_two_subjects_only() -> None:
    assert [ref.generated_box_index(["red", "red"], i) for i in range(2)] == [0, 1]
    assert [ref.generated_box_index(["red", "Red"], i) for i in range(2)] == [0, 0]
    assert [ref.generated_box_index(["red", "blue"], i) for i in range(2)] == [0, 0]
    three = ["red", "red", "red"]
    assert [ref.generated_box_index(three, i) for i in range(3)] == [0, 0, 0]


# ------------------------------------------------------------------- scene designs


def _near(box: tuple[int, int, int, int], rect: tuple[int, int, int, int]) -> bool:
    return all(abs(a - b) <= 1 for a, b in zip(box, rect, strict=True))


def _inside(box: tuple[int, int, int, int], rect: tuple[int, int, int, int]) -> bool:
    x1, y1, x2, y2 = box
    return (
        x1 >= rect[0] - 1
        and y1 >= rect[1] - 1
        and x2 <= rect[2] + 1
        and y2 <= rect[3] + 1
    )


ALL_CASES = (*scenes.cases(), *mode_scenes.cases())


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_scene_does_what_it_is_designed_for(case: scenes.Case) -> None:
    result = ref.subject_consistency(case.image, case.refs, case.categories)
    assert len(result.subjects) == len(case.expect)
    for got, want in zip(result.subjects, case.expect, strict=True):
        assert got.fallback == want.fallback
        assert got.reference_fallback == want.ref_fallback
        if want.shape is None:
            assert got.box is None and not got.detected
        else:
            assert got.box is not None and got.detected
            assert _inside(got.box, want.shape.rect), (got.box, want.shape.rect)
            if not want.partial:
                assert _near(got.box, want.shape.rect), (got.box, want.shape.rect)
        if want.ref_shape is None:
            assert got.reference_box is None and not got.reference_detected
        else:
            assert got.reference_box is not None and got.reference_detected
            assert _near(got.reference_box, want.ref_shape.rect)
        # Textured shapes: no similarity is exactly 1, none is degenerate.
        assert 0.0 < got.similarity < 1.0 - 1e-6
    assert result.score == pytest.approx(
        float(np.mean([s.similarity for s in result.subjects])), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(5))
def test_textured_pixels_stay_within_the_detector_tolerance(seed: int) -> None:
    for colour, proto in scenes.COLOURS.items():
        shape = scenes.Shape(colour, 0, 0, 37, 23, "rect", seed)
        pixels = scenes.scene_array(37, 23, (shape,), seed).astype(np.float64) / 255
        dist = ((pixels - np.array(proto) / 255) ** 2).sum(axis=2)
        assert dist.max() < 0.1 and dist.std() > 0


def test_scene_modes() -> None:
    by_name = {c.name: c for c in scenes.cases()}
    rgba = by_name["rgba_generated"].image
    assert rgba.mode == "RGBA" and np.all(np.asarray(rgba)[..., 3] == 255)
    assert by_name["l_mode_reference"].refs[1].mode == "L"
    assert by_name["l16_reference"].refs[1].mode == "I;16"
    modes = {c.name: c.refs[1].mode for c in mode_scenes.cases()}
    assert sorted(set(modes.values())) == ["1", "CMYK", "LA", "P", "RGB", "RGBA"]
    assert "transparency" in by_name_mode("p_transparency_reference").refs[1].info
    # What is sent decodes (as the script's Image.open) to the image the reference uses.
    for case in ALL_CASES:
        sent = [case.image_bytes(), *case.reference_bytes()]
        for data, img in zip(sent, (case.image, *case.refs), strict=True):
            decoded = Image.open(io.BytesIO(data))
            assert decoded.mode == img.mode
            np.testing.assert_array_equal(np.asarray(decoded), np.asarray(img))


def by_name_mode(name: str) -> scenes.Case:
    """The mode scene called ``name``."""
    return next(c for c in mode_scenes.cases() if c.name == name)


def test_cutouts_store_their_colour_where_transparent() -> None:
    for stored in ("white", "grey", "black"):
        img = by_name_mode(f"rgba_cutout_{stored}_reference").refs[1]
        arr = np.asarray(img)
        clear = arr[..., 3] == 0
        assert clear.mean() > 0.5 and (arr[..., 3] == 255).any()
        assert ((arr[..., 3] > 0) & (arr[..., 3] < 255)).any(), "a soft edge"
        value = {"white": 255, "grey": 128, "black": 0}[stored]
        assert np.all(arr[clear][:, :3] == value)


def test_pillow_keeps_the_high_byte_of_16_bit_rgb() -> None:
    samples = np.array([[[255, 0x80FF, 0x81FF], [65535, 0x39FA, 0x0180]]], np.uint16)
    img = Image.open(io.BytesIO(scenes.png_rgb16(samples)))
    assert img.mode == "RGB"
    assert np.asarray(img).tolist() == [[[0, 128, 129], [255, 57, 1]]]
