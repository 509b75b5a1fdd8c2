"""Checks that the generated fixtures compute exactly what tests/fixtures/README.md says.

The fixtures are generated into a temporary directory (or read from
``PSR_FIXTURES_DIR`` when set, e.g. to check the files a Rust test run is using)
and run through onnxruntime on the CPU.  Every expected number below is worked out
by hand from the test image; the Rust tests rely on the same numbers.
"""

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest

MAKE_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "make_fixtures.py"
FILES = (
    "detector.onnx",
    "tokenizer.json",
    "embedder.onnx",
    "aesthetic.onnx",
    "yolo.onnx",
    "clip_pref.onnx",
    "vits16.onnx",
    "vits16_tiny.onnx",
)
MODELS = tuple(name for name in FILES if name.endswith(".onnx"))
#: Inputs whose leading dimension is not the image batch.
TEXT_FIRST_DIM = {
    ("clip_pref.onnx", "input_ids"): "texts",
    ("clip_pref.onnx", "attention_mask"): "texts",
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Token ids (the vocabulary contract, see README.md).
PAD, UNK, CLS, SEP, MASK, DOT = 0, 1, 2, 3, 4, 5
RED, GREEN, BLUE, YELLOW, CYAN, MAGENTA = 6, 7, 8, 9, 10, 11
A, CAT, SQUARE = 14, 42, 45

BOX_THRESHOLD = 0.35
MIN_PIXELS = 16
NUM_QUERIES = 900
MAX_TEXT_LEN = 256

RGB = tuple[int, int, int]
Image = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float32]
Box = tuple[float, float, float, float]

BLACK: RGB = (0, 0, 0)
WHITE: RGB = (255, 255, 255)
GREY: RGB = (128, 128, 128)
RED_RGB: RGB = (255, 0, 0)
GREEN_RGB: RGB = (0, 255, 0)
BLUE_RGB: RGB = (0, 0, 255)
YELLOW_RGB: RGB = (255, 255, 0)
CYAN_RGB: RGB = (0, 255, 255)
MAGENTA_RGB: RGB = (255, 0, 255)


def generate(out_dir: Path) -> Path:
    """Run make_fixtures.py the way the build does."""
    subprocess.run(
        [sys.executable, str(MAKE_FIXTURES), str(out_dir)],
        check=True,
        capture_output=True,
    )
    return out_dir


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixtures under test: ``$PSR_FIXTURES_DIR`` or a fresh generation."""
    given = os.environ.get("PSR_FIXTURES_DIR")
    if given:
        return Path(given)
    return generate(tmp_path_factory.mktemp("fixtures"))


@cache
def _session(path: str) -> ort.InferenceSession:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def session(fixtures_dir: Path) -> Callable[[str], ort.InferenceSession]:
    """Cached onnxruntime CPU session per model file name."""
    return lambda name: _session(str(fixtures_dir / name))


# Images ----------------------------------------------------------------------


def canvas(width: int, height: int, colour: RGB = BLACK) -> Image:
    """An HxWx3 uint8 image filled with ``colour``."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, :] = colour
    return image


def paint(image: Image, x1: int, y1: int, x2: int, y2: int, colour: RGB) -> Image:
    """Fill pixel columns x1..x2-1 and rows y1..y2-1 (exclusive ends, like boxes)."""
    image[y1:y2, x1:x2] = colour
    return image


def normalise(image: Image, mean: Sequence[float], std: Sequence[float]) -> Floats:
    """HxWx3 uint8 -> 3xHxW float32 ``(x/255 - mean)/std``, as the service does."""
    chw = image.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    mean_c = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    std_c = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return ((chw - mean_c) / std_c).astype(np.float32)


def pixel_batch(
    images: Sequence[Image], mean: Sequence[float], std: Sequence[float]
) -> Floats:
    return np.stack([normalise(image, mean, std) for image in images])


# Detector helpers ------------------------------------------------------------


def run_detector(
    session: Callable[[str], ort.InferenceSession],
    images: Sequence[Image],
    captions: Sequence[Sequence[int]],
    pad_colour: RGB = RED_RGB,
    pad_token: int = PAD,
) -> tuple[Floats, Floats]:
    """Batch images (padded bottom/right) and captions (padded right) -> outputs.

    Padding pixels are painted ``pad_colour`` (red by default) to prove that
    ``pixel_mask`` hides them; caption padding uses ``pad_token`` with attention 0.
    """
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    length = max(len(caption) for caption in captions)
    batch = len(images)
    padded = np.empty((batch, height, width, 3), dtype=np.uint8)
    pixel_mask = np.zeros((batch, height, width), dtype=np.int64)
    input_ids = np.full((batch, length), pad_token, dtype=np.int64)
    attention_mask = np.zeros((batch, length), dtype=np.int64)
    for b, (image, caption) in enumerate(zip(images, captions, strict=True)):
        h, w = image.shape[:2]
        padded[b] = pad_colour
        padded[b, :h, :w] = image
        pixel_mask[b, :h, :w] = 1
        input_ids[b, : len(caption)] = caption
        attention_mask[b, : len(caption)] = 1
    logits, boxes = session("detector.onnx").run(
        None,
        {
            "pixel_values": pixel_batch(list(padded), IMAGENET_MEAN, IMAGENET_STD),
            "input_ids": input_ids,
            "token_type_ids": np.zeros_like(input_ids),
            "attention_mask": attention_mask,
            "pixel_mask": pixel_mask,
        },
    )
    return logits, boxes


def kept(logits: Floats, boxes: Floats, item: int = 0) -> dict[int, Box]:
    """Queries whose max-over-tokens sigmoid beats 0.35 -> their boxes."""
    scores = 1.0 / (1.0 + np.exp(-logits[item].max(axis=-1).astype(np.float64)))
    found: dict[int, Box] = {}
    for q in np.flatnonzero(scores > BOX_THRESHOLD):
        cx, cy, w, h = (float(v) for v in boxes[item, q])
        found[int(q)] = (cx, cy, w, h)
    return found


def assert_kept(
    logits: Floats, boxes: Floats, expected: dict[int, Box], item: int = 0
) -> None:
    found = kept(logits, boxes, item)
    assert sorted(found) == sorted(expected)
    for query, box in expected.items():
        np.testing.assert_allclose(found[query], box, rtol=0, atol=1e-6)


def query(colour: int, region: int) -> int:
    """Query index of (colour c = token id - 6, region r)."""
    return (colour - RED) * 4 + region


# A 64 wide, 48 tall image: regions split at x = 32 and y = 24.
# Red pixels x 4..19, y 6..17 (top-left);  blue x 40..59, y 30..41 (bottom-right).
RED_BOX: Box = (12 / 64, 12 / 48, 16 / 64, 12 / 48)  # (0.1875, 0.25, 0.25, 0.25)
BLUE_BOX: Box = (50 / 64, 36 / 48, 20 / 64, 12 / 48)  # (0.78125, 0.75, 0.3125, 0.25)


def red_blue_image() -> Image:
    image = canvas(64, 48)
    paint(image, 4, 6, 20, 18, RED_RGB)
    return paint(image, 40, 30, 60, 42, BLUE_RGB)


# Generation ------------------------------------------------------------------


def test_all_files_are_written(fixtures_dir: Path) -> None:
    for name in FILES:
        assert (fixtures_dir / name).is_file(), name


@pytest.mark.parametrize("name", MODELS)
def test_models_are_valid_opset17_with_dynamic_batch(
    fixtures_dir: Path, name: str
) -> None:
    model = onnx.load(str(fixtures_dir / name))
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert model.ir_version == 9
    for value in (*model.graph.input, *model.graph.output):
        # clip_pref.onnx takes its T texts independently of its B images.
        first = TEXT_FIRST_DIM.get((name, value.name), "batch")
        assert value.type.tensor_type.shape.dim[0].dim_param == first, value.name


def test_generation_is_byte_identical(tmp_path: Path) -> None:
    first = generate(tmp_path / "first")
    second = generate(tmp_path / "second")
    for name in FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


# Tokenizer -------------------------------------------------------------------


def test_vocabulary_contract(fixtures_dir: Path) -> None:
    document = json.loads((fixtures_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = document["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(len(vocab)))
    expected = {
        "[PAD]": PAD,
        "[UNK]": UNK,
        "[CLS]": CLS,
        "[SEP]": SEP,
        "[MASK]": MASK,
        ".": DOT,
        "red": RED,
        "green": GREEN,
        "blue": BLUE,
        "yellow": YELLOW,
        "cyan": CYAN,
        "magenta": MAGENTA,
        "square": SQUARE,
    }
    assert {token: vocab[token] for token in expected} == expected
    specials = [(t["id"], t["content"], t["special"]) for t in document["added_tokens"]]
    assert specials == [
        (i, token, True)
        for i, token in enumerate(("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"))
    ]


def test_tokenizer_encodes_captions(fixtures_dir: Path) -> None:
    tokenizers = pytest.importorskip(
        "tokenizers", reason="the Python `tokenizers` package is not installed"
    )
    tokenizer = tokenizers.Tokenizer.from_file(str(fixtures_dir / "tokenizer.json"))
    encoding = tokenizer.encode("red square.")
    assert encoding.ids == [CLS, RED, SQUARE, DOT, SEP]
    assert encoding.type_ids == [0] * 5
    assert tokenizer.encode("Red . BLUE .").ids == [CLS, RED, DOT, BLUE, DOT, SEP]
    assert tokenizer.encode("zebra").ids == [CLS, UNK, SEP]
    pair = tokenizer.encode("red", "blue")
    assert pair.ids == [CLS, RED, SEP, BLUE, SEP]
    assert pair.type_ids == [0, 0, 0, 1, 1]


# Detector --------------------------------------------------------------------


def test_detector_signature(session: Callable[[str], ort.InferenceSession]) -> None:
    detector = session("detector.onnx")
    assert [i.name for i in detector.get_inputs()] == [
        "pixel_values",
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "pixel_mask",
    ]
    assert [o.name for o in detector.get_outputs()] == ["logits", "pred_boxes"]
    logits, boxes = run_detector(session, [red_blue_image()], [[CLS, RED, DOT, SEP]])
    assert logits.shape == (1, NUM_QUERIES, MAX_TEXT_LEN)
    assert boxes.shape == (1, NUM_QUERIES, 4)
    assert logits.dtype == boxes.dtype == np.float32


def test_detector_requires_token_type_ids(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    ids = np.array([[CLS, RED, DOT, SEP]], dtype=np.int64)
    feed = {
        "pixel_values": pixel_batch([red_blue_image()], IMAGENET_MEAN, IMAGENET_STD),
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "pixel_mask": np.ones((1, 48, 64), dtype=np.int64),
    }
    with pytest.raises(Exception, match="token_type_ids"):
        session("detector.onnx").run(None, feed)


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ([CLS, RED, DOT, SEP], {0: RED_BOX}),
        ([CLS, BLUE, DOT, SEP], {11: BLUE_BOX}),
        ([CLS, RED, DOT, BLUE, DOT, SEP], {0: RED_BOX, 11: BLUE_BOX}),
        ([CLS, GREEN, DOT, SEP], {}),
        ([CLS, SQUARE, DOT, SEP], {}),
    ],
    ids=["red", "blue", "red-and-blue", "green", "no-colour"],
)
def test_detector_keeps_named_colours(
    session: Callable[[str], ort.InferenceSession],
    caption: list[int],
    expected: dict[int, Box],
) -> None:
    logits, boxes = run_detector(session, [red_blue_image()], [caption])
    assert_kept(logits, boxes, expected)


def test_detector_logits_are_exactly_plus_minus_eight(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    caption = [CLS, RED, DOT, BLUE, DOT, SEP]
    logits, boxes = run_detector(session, [red_blue_image()], [caption])
    expected = np.full((NUM_QUERIES, MAX_TEXT_LEN), -8.0, dtype=np.float32)
    expected[0, 1] = 8.0  # red, top-left  x "red" at position 1
    expected[11, 3] = 8.0  # blue, bottom-right x "blue" at position 3
    np.testing.assert_array_equal(logits[0], expected)
    assert not boxes[0, [q for q in range(NUM_QUERIES) if q not in (0, 11)]].any()


def test_detector_reports_each_region_in_order(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    image = canvas(64, 48)
    paint(image, 2, 2, 10, 10, RED_RGB)  # top-left
    paint(image, 8, 30, 16, 46, RED_RGB)  # bottom-left
    paint(image, 40, 4, 44, 8, GREEN_RGB)  # top-right, green: not asked for
    logits, boxes = run_detector(session, [image], [[CLS, RED, DOT, SEP]])
    assert list(kept(logits, boxes)) == [query(RED, 0), query(RED, 2)]
    assert_kept(
        logits,
        boxes,
        {
            query(RED, 0): (6 / 64, 6 / 48, 8 / 64, 8 / 48),
            query(RED, 2): (12 / 64, 38 / 48, 8 / 64, 16 / 48),
        },
    )


def test_detector_splits_a_shape_at_the_region_border(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    # Yellow x 24..39, y 4..11 straddles x = 32: 8x8 pixels on each side.
    image = paint(canvas(64, 48), 24, 4, 40, 12, YELLOW_RGB)
    logits, boxes = run_detector(session, [image], [[CLS, YELLOW, DOT, SEP]])
    assert_kept(
        logits,
        boxes,
        {
            query(YELLOW, 0): (28 / 64, 8 / 48, 8 / 64, 8 / 48),
            query(YELLOW, 1): (36 / 64, 8 / 48, 8 / 64, 8 / 48),
        },
    )


def test_detector_needs_sixteen_pixels(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    image = canvas(64, 48)
    paint(image, 0, 0, 4, 4, CYAN_RGB)  # 16 pixels, top-left
    paint(image, 40, 0, 43, 5, CYAN_RGB)  # 15 pixels, top-right
    paint(image, 0, 30, 1, 31, CYAN_RGB)  # one pixel, bottom-left
    logits, boxes = run_detector(session, [image], [[CLS, CYAN, DOT, SEP]])
    assert_kept(logits, boxes, {query(CYAN, 0): (2 / 64, 2 / 48, 4 / 64, 4 / 48)})


def test_detector_box_is_tight_around_scattered_pixels(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    image = canvas(64, 48)
    paint(image, 36, 26, 44, 28, MAGENTA_RGB)  # 16 pixels
    paint(image, 60, 46, 61, 47, MAGENTA_RGB)  # a lone far corner pixel
    logits, boxes = run_detector(session, [image], [[CLS, MAGENTA, DOT, SEP]])
    # x 36..60 inclusive -> [36, 61); y 26..46 inclusive -> [26, 47).
    box = ((36 + 61) / 2 / 64, (26 + 47) / 2 / 48, 25 / 64, 21 / 48)
    assert_kept(logits, boxes, {query(MAGENTA, 3): box})


def test_detector_ignores_near_misses_and_accepts_close_colours(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    image = canvas(64, 48)
    paint(image, 0, 0, 8, 8, (230, 20, 20))  # squared distance ~0.022: still red
    paint(image, 40, 30, 48, 38, (160, 0, 0))  # squared distance ~0.139: not red
    logits, boxes = run_detector(session, [image], [[CLS, RED, DOT, SEP]])
    assert_kept(logits, boxes, {query(RED, 0): (4 / 64, 4 / 48, 8 / 64, 8 / 48)})


def test_detector_padded_batch_matches_single_images(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    big = red_blue_image()  # 64x48
    # 40 wide, 30 tall: split at x = 20, y = 15.  Green x 24..35, y 18..26.
    small = paint(canvas(40, 30), 24, 18, 36, 27, GREEN_RGB)
    small_box = (30 / 40, 22.5 / 30, 12 / 40, 9 / 30)
    big_caption = [CLS, RED, DOT, SEP]
    small_caption = [CLS, GREEN, DOT, RED, DOT, SEP]

    alone_big = run_detector(session, [big], [big_caption])
    alone_small = run_detector(session, [small], [small_caption])
    # The small image is padded with red pixels (mask 0) and the short caption
    # with the blue token (attention 0): neither may show up.
    logits, boxes = run_detector(
        session, [big, small], [big_caption, small_caption], pad_token=BLUE
    )

    assert_kept(*alone_big, {0: RED_BOX})
    assert_kept(*alone_small, {query(GREEN, 3): small_box})
    assert_kept(logits, boxes, {0: RED_BOX}, item=0)
    assert_kept(logits, boxes, {query(GREEN, 3): small_box}, item=1)
    np.testing.assert_array_equal(logits[0], alone_big[0][0])
    np.testing.assert_array_equal(logits[1], alone_small[0][0])
    np.testing.assert_array_equal(boxes[0], alone_big[1][0])
    np.testing.assert_array_equal(boxes[1], alone_small[1][0])


@pytest.mark.parametrize("length", [1, 2, 255, 256])
def test_detector_caption_lengths(
    session: Callable[[str], ort.InferenceSession], length: int
) -> None:
    caption = [DOT] * length
    caption[-1] = RED  # the colour word in the last position
    logits, _ = run_detector(session, [red_blue_image()], [caption])
    hot = np.argwhere(logits[0] > 0).tolist()
    assert hot == [[0, length - 1]]
    assert (logits[0, :, length:] == -8.0).all()


@pytest.mark.parametrize("size", [1, 2, 6])
def test_detector_tiny_image_has_no_detections(
    session: Callable[[str], ort.InferenceSession], size: int
) -> None:
    # At most 3x3 = 9 pixels per region: below 16.
    logits, boxes = run_detector(
        session, [canvas(size, size, RED_RGB)], [[CLS, RED, DOT, SEP]]
    )
    assert kept(logits, boxes) == {}
    assert not boxes.any()


def test_detector_odd_size_puts_the_larger_half_bottom_right(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    # 7x7 splits at floor(7/2) = 3: regions 3x3, 4x3, 3x4 and 4x4 = 16 pixels.
    logits, boxes = run_detector(
        session, [canvas(7, 7, RED_RGB)], [[CLS, RED, DOT, SEP]]
    )
    assert_kept(logits, boxes, {query(RED, 3): (5 / 7, 5 / 7, 4 / 7, 4 / 7)})


PALETTE: tuple[RGB, ...] = (
    RED_RGB,
    GREEN_RGB,
    BLUE_RGB,
    YELLOW_RGB,
    CYAN_RGB,
    MAGENTA_RGB,
)


def reference_pixel_boxes(image: Image) -> dict[int, Box]:
    """The README's region rules in plain numpy, for pure-colour images.

    Query / candidate q = 4*c + r -> its (cx, cy, w, h) in pixels, for the present
    ones; regions split at half the image size.
    """
    height, width = image.shape[:2]
    mid_y, mid_x = height // 2, width // 2
    regions = (
        (0, mid_y, 0, mid_x),
        (0, mid_y, mid_x, width),
        (mid_y, height, 0, mid_x),
        (mid_y, height, mid_x, width),
    )
    boxes: dict[int, Box] = {}
    for c, rgb in enumerate(PALETTE):
        mask = (image == rgb).all(axis=-1)
        for r, (top, bottom, left, right) in enumerate(regions):
            inside = mask[top:bottom, left:right]
            if inside.sum() < MIN_PIXELS:
                continue
            rows = np.flatnonzero(inside.any(axis=1)) + top
            cols = np.flatnonzero(inside.any(axis=0)) + left
            x1, x2, y1, y2 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
            boxes[4 * c + r] = (
                (x1 + x2) / 2,
                (y1 + y2) / 2,
                float(x2 - x1),
                float(y2 - y1),
            )
    return boxes


def reference_boxes(image: Image) -> dict[int, Box]:
    """:func:`reference_pixel_boxes` normalised by the image size (detector.onnx)."""
    height, width = image.shape[:2]
    return {
        q: (cx / width, cy / height, w / width, h / height)
        for q, (cx, cy, w, h) in reference_pixel_boxes(image).items()
    }


@pytest.mark.parametrize("seed", range(6))
def test_detector_matches_reference_on_random_batches(
    session: Callable[[str], ort.InferenceSession], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    images: list[Image] = []
    captions: list[list[int]] = []
    for _ in range(3):
        height, width = (int(v) for v in rng.integers(2, 64, size=2))
        # Half black; each colour ~8% of pixels, so regions straddle 16 pixels.
        choice = rng.choice(7, size=(height, width), p=[0.52] + [0.08] * 6)
        image = np.zeros((height, width, 3), dtype=np.uint8)
        for c, rgb in enumerate(PALETTE):
            image[choice == c + 1] = rgb
        images.append(image)
        words = rng.choice(
            [RED, GREEN, BLUE, YELLOW, CYAN, MAGENTA, SQUARE], int(rng.integers(1, 6))
        )
        captions.append([CLS, *(int(w) for w in words), DOT, SEP])
    captions[0] = [CLS, RED, GREEN, BLUE, YELLOW, CYAN, MAGENTA, DOT, SEP]
    # Padding tokens are RED with attention 0: they must not count.
    logits, boxes = run_detector(session, images, captions, pad_token=RED)
    total = 0
    for item, (image, caption) in enumerate(zip(images, captions, strict=True)):
        named = {token - RED for token in caption if RED <= token <= MAGENTA}
        expected = {
            q: box for q, box in reference_boxes(image).items() if q // 4 in named
        }
        assert_kept(logits, boxes, expected, item=item)
        total += len(expected)
    assert total > 0  # not trivially empty (item 0 names every colour)


# YOLOv8-layout detector -------------------------------------------------------

YOLO_SIZE = 640
YOLO_CLASSES = 6
YOLO_CANDIDATES = 24
YOLO_SCORE = np.float32(0.9)
CONFIDENCE = 0.25
LETTERBOX: RGB = (114, 114, 114)  # the service's letterbox padding, 114/255


def yolo_canvas() -> Image:
    """A 640x640 image filled with letterbox grey."""
    return canvas(YOLO_SIZE, YOLO_SIZE, LETTERBOX)


def run_yolo(
    session: Callable[[str], ort.InferenceSession], images: Sequence[Image]
) -> Floats:
    """640x640 uint8 images -> ``output0`` [B,10,24]; the input is x/255, no mean/std."""
    pixels = pixel_batch(images, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    (output,) = session("yolo.onnx").run(None, {"images": pixels})
    assert output.dtype == np.float32
    assert output.shape == (len(images), 4 + YOLO_CLASSES, YOLO_CANDIDATES)
    return np.asarray(output, dtype=np.float32)


def yolo_detections(output: Floats, item: int = 0) -> dict[int, tuple[int, Box]]:
    """Candidates with a class score above 0.25 -> (class, (cx, cy, w, h) pixels)."""
    found: dict[int, tuple[int, Box]] = {}
    for n in range(output.shape[2]):
        classes = np.flatnonzero(output[item, 4:, n] > CONFIDENCE)
        if classes.size == 0:
            continue
        assert classes.size == 1, f"candidate {n} has classes {classes.tolist()}"
        cx, cy, w, h = (float(v) for v in output[item, :4, n])
        found[n] = (int(classes[0]), (cx, cy, w, h))
    return found


def yolo_expected(boxes: dict[int, Box]) -> Floats:
    """The full [10,24] output for present candidates n -> pixel box."""
    expected = np.zeros((4 + YOLO_CLASSES, YOLO_CANDIDATES), dtype=np.float32)
    for n, box in boxes.items():
        expected[:4, n] = box
        expected[4 + n // 4, n] = YOLO_SCORE
    return expected


def red_blue_640() -> Image:
    """Red [40,120) x [30,100) top-left, blue [400,500) x [420,600) bottom-right."""
    image = yolo_canvas()
    paint(image, 40, 30, 120, 100, RED_RGB)
    return paint(image, 400, 420, 500, 600, BLUE_RGB)


RED_640: Box = (80.0, 65.0, 80.0, 70.0)
BLUE_640: Box = (450.0, 510.0, 100.0, 180.0)


def test_yolo_signature(fixtures_dir: Path) -> None:
    model = onnx.load(str(fixtures_dir / "yolo.onnx"))

    def dims(value: onnx.ValueInfoProto) -> list[str | int]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [(v.name, dims(v)) for v in model.graph.input] == [
        ("images", ["batch", 3, 640, 640])
    ]
    assert [(v.name, dims(v)) for v in model.graph.output] == [
        ("output0", ["batch", 10, 24])
    ]


def test_yolo_red_and_blue(session: Callable[[str], ort.InferenceSession]) -> None:
    output = run_yolo(session, [red_blue_640()])
    assert output.shape == (1, 10, 24)
    # Candidate 4*c + r: red (c 0) top-left (r 0) = 0, blue (c 2) bottom-right = 11.
    np.testing.assert_array_equal(output[0, :4, 0], RED_640)
    np.testing.assert_array_equal(output[0, :4, 11], BLUE_640)
    assert output[0, 4, 0] == YOLO_SCORE
    assert output[0, 4 + 2, 11] == YOLO_SCORE
    others = [n for n in range(YOLO_CANDIDATES) if n not in (0, 11)]
    assert not output[0, 4:, others].any()
    np.testing.assert_array_equal(output[0], yolo_expected({0: RED_640, 11: BLUE_640}))
    assert yolo_detections(output) == {0: (0, RED_640), 11: (2, BLUE_640)}


def test_yolo_splits_at_320_and_batches_like_single_images(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    # Green x 300..339, y 100..119 straddles x = 320: 20x20 pixels on each side.
    green = paint(yolo_canvas(), 300, 100, 340, 120, GREEN_RGB)
    green_boxes = {4: (310.0, 110.0, 20.0, 20.0), 5: (330.0, 110.0, 20.0, 20.0)}
    red_blue = red_blue_640()
    batch = run_yolo(session, [red_blue, green])
    alone = [run_yolo(session, [image])[0] for image in (red_blue, green)]
    np.testing.assert_array_equal(batch[0], alone[0])
    np.testing.assert_array_equal(batch[1], alone[1])
    np.testing.assert_array_equal(batch[1], yolo_expected(green_boxes))
    assert yolo_detections(batch, item=1) == {n: (1, b) for n, b in green_boxes.items()}


def test_yolo_needs_sixteen_pixels(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    image = yolo_canvas()
    paint(image, 10, 10, 14, 14, CYAN_RGB)  # 16 pixels, top-left
    paint(image, 400, 0, 403, 5, CYAN_RGB)  # 15 pixels, top-right
    paint(image, 0, 630, 1, 631, CYAN_RGB)  # one pixel, bottom-left
    paint(image, 600, 600, 605, 603, MAGENTA_RGB)  # 15 pixels, bottom-right
    output = run_yolo(session, [image])
    # Cyan is class 4: candidate 16 + 0.
    np.testing.assert_array_equal(output[0], yolo_expected({16: (12, 12, 4, 4)}))


def test_yolo_colour_tolerance(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    image = yolo_canvas()
    paint(image, 0, 0, 8, 8, (230, 20, 20))  # squared distance ~0.022: still red
    paint(image, 400, 400, 408, 408, (160, 0, 0))  # squared distance ~0.139: not red
    output = run_yolo(session, [image])
    np.testing.assert_array_equal(output[0], yolo_expected({0: (4, 4, 8, 8)}))


@pytest.mark.parametrize("fill", [LETTERBOX, BLACK, WHITE, GREY])
def test_yolo_plain_images_are_empty(
    session: Callable[[str], ort.InferenceSession], fill: RGB
) -> None:
    output = run_yolo(session, [canvas(YOLO_SIZE, YOLO_SIZE, fill)])
    assert not output.any()


@pytest.mark.parametrize("seed", range(4))
def test_yolo_matches_reference_on_random_batches(
    session: Callable[[str], ort.InferenceSession], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    images: list[Image] = []
    for _ in range(3):
        image = yolo_canvas()
        # Rectangles of 1..40 pixels a side (some below 16 pixels, some crossing
        # the midlines), then scattered single pixels that stretch tight boxes.
        for _ in range(int(rng.integers(4, 16))):
            x1, y1 = (int(v) for v in rng.integers(0, YOLO_SIZE, size=2))
            w, h = (int(v) for v in rng.integers(1, 41, size=2))
            paint(image, x1, y1, x1 + w, y1 + h, PALETTE[int(rng.integers(6))])
        for _ in range(int(rng.integers(0, 30))):
            x, y = (int(v) for v in rng.integers(0, YOLO_SIZE, size=2))
            paint(image, x, y, x + 1, y + 1, PALETTE[int(rng.integers(6))])
        images.append(image)
    output = run_yolo(session, images)
    total = 0
    for item, image in enumerate(images):
        expected = reference_pixel_boxes(image)
        np.testing.assert_array_equal(output[item], yolo_expected(expected))
        total += len(expected)
    assert total > 0


# Embedder --------------------------------------------------------------------


def embed(
    session: Callable[[str], ort.InferenceSession], model: str, images: Sequence[Image]
) -> Floats:
    (embeddings,) = session(model).run(
        None, {"pixel_values": pixel_batch(images, IMAGENET_MEAN, IMAGENET_STD)}
    )
    return np.asarray(embeddings, dtype=np.float32)


def cosine(a: Floats, b: Floats) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(a64 @ b64 / np.linalg.norm(a64) / np.linalg.norm(b64))


def test_embedder_solid_colour_layout(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    (red,) = embed(session, "embedder.onnx", [canvas(224, 224, RED_RGB)])
    assert red.shape == (384,)
    expected = np.repeat(np.array([1, 0, 0, 0, 1, 1], dtype=np.float32), 64)
    np.testing.assert_allclose(red, expected, rtol=0, atol=1e-5)


def test_embedder_is_feature_major(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    # Left half (grid columns 0..3) red, right half blue.
    image = paint(canvas(224, 224, BLUE_RGB), 0, 0, 112, 224, RED_RGB)
    (embedding,) = embed(session, "embedder.onnx", [image])
    grid = embedding.reshape(6, 8, 8)  # index = f*64 + row*8 + col
    left = np.array([1, 0, 0, 0, 1, 1], dtype=np.float32)[:, None, None]
    right = np.array([0, 0, 1, 1, 1, 0], dtype=np.float32)[:, None, None]
    np.testing.assert_allclose(
        grid[:, :, :4], np.broadcast_to(left, (6, 8, 4)), atol=1e-5
    )
    np.testing.assert_allclose(
        grid[:, :, 4:], np.broadcast_to(right, (6, 8, 4)), atol=1e-5
    )


def test_embedder_cosines(session: Callable[[str], ort.InferenceSession]) -> None:
    red, red_again, blue, yellow = embed(
        session,
        "embedder.onnx",
        [canvas(224, 224, c) for c in (RED_RGB, RED_RGB, BLUE_RGB, YELLOW_RGB)],
    )
    assert cosine(red, red_again) == pytest.approx(1.0, abs=1e-6)
    assert cosine(red, blue) == pytest.approx(1 / 3, abs=1e-6)
    assert cosine(red, yellow) == pytest.approx(2 / 3, abs=1e-6)


# Aesthetic -------------------------------------------------------------------


def test_aesthetic_scores(session: Callable[[str], ort.InferenceSession]) -> None:
    half = paint(canvas(224, 224, WHITE), 0, 0, 224, 112, RED_RGB)
    images = [canvas(224, 224, RED_RGB), canvas(224, 224, GREY), half, canvas(224, 224)]
    (scores,) = session("aesthetic.onnx").run(
        None, {"pixel_values": pixel_batch(images, CLIP_MEAN, CLIP_STD)}
    )
    assert scores.shape == (4, 1)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores[:, 0], [10.0, 0.0, 5.0, 0.0], rtol=0, atol=1e-4)


# CLIP-style preference model ----------------------------------------------------

CLIP_SCALE = 100.0
CLIP_EPS = 1e-6
COLOUR_PROTOTYPES = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]],
    dtype=np.float64,
)
RED_TEXT = [CLS, RED, DOT, SEP]  # "red."
BLUE_TEXT = [CLS, BLUE, DOT, SEP]  # "blue."
YELLOW_TEXT = [CLS, YELLOW, DOT, SEP]  # "yellow."
CAT_TEXT = [CLS, A, CAT, DOT, SEP]  # "a cat."


def text_batch(
    texts: Sequence[Sequence[int]], pad_token: int = PAD
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Right-pad token id lists with ``pad_token`` (attention 0) -> ids, mask [T,L]."""
    length = max(len(text) for text in texts)
    input_ids = np.full((len(texts), length), pad_token, dtype=np.int64)
    attention_mask = np.zeros((len(texts), length), dtype=np.int64)
    for t, text in enumerate(texts):
        input_ids[t, : len(text)] = text
        attention_mask[t, : len(text)] = 1
    return input_ids, attention_mask


def run_clip_pref(
    session: Callable[[str], ort.InferenceSession],
    images: Sequence[Image],
    input_ids: npt.NDArray[np.int64],
    attention_mask: npt.NDArray[np.int64],
) -> Floats:
    """224x224 images (CLIP-normalised here) and [T,L] texts -> logits [B,T]."""
    (logits,) = session("clip_pref.onnx").run(
        None,
        {
            "pixel_values": pixel_batch(images, CLIP_MEAN, CLIP_STD),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
        },
    )
    assert logits.dtype == np.float32
    assert logits.shape == (len(images), len(input_ids))
    return np.asarray(logits, dtype=np.float32)


def score_texts(
    session: Callable[[str], ort.InferenceSession],
    images: Sequence[Image],
    texts: Sequence[Sequence[int]],
    pad_token: int = PAD,
) -> Floats:
    return run_clip_pref(session, images, *text_batch(texts, pad_token))


def clip_pref_reference(
    images: Sequence[Image],
    input_ids: npt.NDArray[np.int64],
    attention_mask: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """The README's contract in plain float64 numpy."""
    image_emb = np.stack(
        [image.reshape(-1, 3).mean(axis=0) / 255.0 for image in images]
    )
    text_emb = np.zeros((len(input_ids), 3))
    for t, (ids, mask) in enumerate(zip(input_ids, attention_mask, strict=True)):
        for token, attended in zip(ids, mask, strict=True):
            if attended == 1 and RED <= token <= MAGENTA:
                text_emb[t] += COLOUR_PROTOTYPES[token - RED]
    dot = image_emb @ text_emb.T
    norms = np.outer(
        np.linalg.norm(image_emb, axis=1), np.linalg.norm(text_emb, axis=1)
    )
    return CLIP_SCALE * dot / (norms + CLIP_EPS)


def half_red_white() -> Image:
    """Top half red, bottom half white: mean RGB (1, 0.5, 0.5)."""
    return paint(canvas(224, 224, WHITE), 0, 0, 224, 112, RED_RGB)


def test_clip_pref_signature(fixtures_dir: Path) -> None:
    model = onnx.load(str(fixtures_dir / "clip_pref.onnx"))

    def describe(value: onnx.ValueInfoProto) -> tuple[str, int, list[str | int]]:
        tensor = value.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        return value.name, tensor.elem_type, dims

    assert [describe(v) for v in model.graph.input] == [
        ("pixel_values", onnx.TensorProto.FLOAT, ["batch", 3, 224, 224]),
        ("input_ids", onnx.TensorProto.INT64, ["texts", "sequence"]),
        ("attention_mask", onnx.TensorProto.INT64, ["texts", "sequence"]),
    ]
    assert [describe(v) for v in model.graph.output] == [
        ("logits_per_image", onnx.TensorProto.FLOAT, ["batch", "texts"])
    ]


def test_clip_pref_worked_examples(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    red = canvas(224, 224, RED_RGB)
    logits = score_texts(
        session, [red, half_red_white()], [RED_TEXT, BLUE_TEXT, YELLOW_TEXT, CAT_TEXT]
    )
    assert np.isfinite(logits).all()
    expected_red = [
        CLIP_SCALE / (1 + CLIP_EPS),  # 99.9999
        0.0,
        CLIP_SCALE / (np.sqrt(2) + CLIP_EPS),  # 70.71
        0.0,  # no colour word: 0, not NaN
    ]
    np.testing.assert_allclose(logits[0], expected_red, rtol=0, atol=1e-3)
    assert logits[0, 0] == pytest.approx(99.9999, abs=1e-3)
    assert logits[0, 2] == pytest.approx(70.71, abs=1e-2)
    # Half red / half white: mean (1, .5, .5), |.| = sqrt(1.5).
    assert logits[1, 0] == pytest.approx(CLIP_SCALE / np.sqrt(1.5), abs=1e-3)
    assert logits[1, 0] == pytest.approx(81.65, abs=1e-2)
    assert logits[1, 3] == 0.0


def test_clip_pref_tokenizer_end_to_end(
    fixtures_dir: Path, session: Callable[[str], ort.InferenceSession]
) -> None:
    tokenizers = pytest.importorskip(
        "tokenizers", reason="the Python `tokenizers` package is not installed"
    )
    tokenizer = tokenizers.Tokenizer.from_file(str(fixtures_dir / "tokenizer.json"))
    texts = [tokenizer.encode(t).ids for t in ("red.", "blue.", "yellow.", "a cat.")]
    assert texts == [RED_TEXT, BLUE_TEXT, YELLOW_TEXT, CAT_TEXT]
    logits = score_texts(session, [canvas(224, 224, RED_RGB)], texts)
    np.testing.assert_allclose(
        logits[0], [99.9999, 0.0, 70.7106, 0.0], rtol=0, atol=1e-3
    )


def test_clip_pref_full_matrix_and_diagonal(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    images = [canvas(224, 224, RED_RGB), canvas(224, 224, BLUE_RGB)]
    logits = score_texts(session, images, [RED_TEXT, BLUE_TEXT])
    full = CLIP_SCALE / (1 + CLIP_EPS)
    np.testing.assert_allclose(logits, [[full, 0.0], [0.0, full]], rtol=0, atol=1e-3)
    # The service pairs image b with text b: the diagonal.
    np.testing.assert_allclose(np.diagonal(logits), [full, full], rtol=0, atol=1e-3)
    # Swapped texts: the diagonal is now the mismatches.
    swapped = score_texts(session, images, [BLUE_TEXT, RED_TEXT])
    np.testing.assert_allclose(np.diagonal(swapped), [0.0, 0.0], rtol=0, atol=1e-3)


def test_clip_pref_images_and_texts_are_independent_dimensions(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    images = [canvas(224, 224, c) for c in (RED_RGB, YELLOW_RGB, CYAN_RGB)]
    texts = [RED_TEXT, BLUE_TEXT, YELLOW_TEXT, CAT_TEXT, [CLS, GREEN, SEP]]
    full = score_texts(session, images, texts)  # [3,5]
    one_image = score_texts(session, images[:1], texts)  # [1,5]
    one_text = score_texts(session, images, texts[2:3])  # [3,1]
    np.testing.assert_allclose(one_image[0], full[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(one_text[:, 0], full[:, 2], rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        full, clip_pref_reference(images, *text_batch(texts)), rtol=0, atol=1e-3
    )


def test_clip_pref_ignores_padding(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    red = canvas(224, 224, RED_RGB)
    # "red." padded with BLUE tokens at attention 0, next to a longer "blue blue."
    padded = score_texts(
        session, [red], [RED_TEXT, [CLS, BLUE, BLUE, DOT, SEP, SEP]], pad_token=BLUE
    )
    alone = score_texts(session, [red], [RED_TEXT])
    np.testing.assert_allclose(padded[0], [99.9999, 0.0], rtol=0, atol=1e-3)
    np.testing.assert_allclose(padded[0, 0], alone[0, 0], rtol=0, atol=1e-6)
    # attention_mask 0 on a colour token in the middle: "red blue." minus blue.
    ids = np.array([[CLS, RED, BLUE, DOT, SEP]], dtype=np.int64)
    mask = np.array([[1, 1, 0, 1, 1]], dtype=np.int64)
    masked = run_clip_pref(session, [red], ids, mask)
    assert masked[0, 0] == pytest.approx(99.9999, abs=1e-3)
    unmasked = run_clip_pref(session, [red], ids, np.ones_like(mask))
    assert unmasked[0, 0] == pytest.approx(CLIP_SCALE / np.sqrt(2), abs=1e-3)
    # Only mask value 1 attends: 2 counts as padding.
    other = run_clip_pref(session, [red], ids, np.array([[1, 1, 2, 1, 1]]))
    assert other[0, 0] == pytest.approx(99.9999, abs=1e-3)


def test_clip_pref_ignores_other_ids_and_black_images(
    session: Callable[[str], ort.InferenceSession],
) -> None:
    red, black = canvas(224, 224, RED_RGB), canvas(224, 224)
    ids = np.array(
        [[CLS, UNK, MASK, SQUARE, 5, 12, 57, 1000, -6, SEP], [RED] * 10],
        dtype=np.int64,
    )
    logits = run_clip_pref(session, [red, black], ids, np.ones_like(ids))
    assert np.isfinite(logits).all()
    # Repeating a colour word scales the text embedding, not the cosine.
    np.testing.assert_allclose(logits, [[0.0, 99.9999], [0.0, 0.0]], rtol=0, atol=1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_clip_pref_matches_reference_on_random_batches(
    session: Callable[[str], ort.InferenceSession], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    images = [
        rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) for _ in range(3)
    ]
    images.append(canvas(224, 224, MAGENTA_RGB))
    texts = [
        [CLS, *(int(t) for t in rng.integers(5, 20, size=int(rng.integers(1, 9)))), SEP]
        for _ in range(5)
    ]
    # Pad with colour tokens at attention 0: they must not count.
    input_ids, attention_mask = text_batch(texts, pad_token=CYAN)
    logits = run_clip_pref(session, images, input_ids, attention_mask)
    expected = clip_pref_reference(images, input_ids, attention_mask)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-3)


# ViT-S/16 benchmark models ----------------------------------------------------


@pytest.mark.parametrize("model", ["vits16_tiny.onnx", "vits16.onnx"])
def test_vits16_runs_and_is_batch_independent(
    session: Callable[[str], ort.InferenceSession], model: str
) -> None:
    rng = np.random.default_rng(1)
    images = [
        rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) for _ in range(3)
    ]
    batch = embed(session, model, images)
    assert batch.shape == (3, 384)
    assert batch.dtype == np.float32
    assert np.isfinite(batch).all()
    # Distinct images give distinct embeddings; batching does not change them.
    assert np.abs(batch[0] - batch[1]).max() > 0.1
    alone = embed(session, model, images[2:])
    np.testing.assert_allclose(alone[0], batch[2], rtol=0, atol=1e-4)


def test_vits16_depth_and_parameter_count(fixtures_dir: Path) -> None:
    # patch conv 384*768 + 384, CLS 384, positions 197*384, final norm 2*384, and
    # per block: 2 norms 4*384, qkv 384*1152 + 1152, proj 384*384 + 384,
    # fc1 384*1536 + 1536, fc2 1536*384 + 384 = 1_774_464.
    for name, depth in (("vits16_tiny.onnx", 1), ("vits16.onnx", 12)):
        model = onnx.load(str(fixtures_dir / name))
        norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
        assert len(norms) == 2 * depth + 1, name
        weights = [
            t
            for t in model.graph.initializer
            if "." in t.name or t.name in ("cls_token", "pos_embed")
        ]
        count = sum(int(np.prod(t.dims)) for t in weights)
        assert count == 295_296 + 384 + 75_648 + 768 + depth * 1_774_464, name
