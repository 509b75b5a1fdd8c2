"""ONNX export (the ``torch.export``-based exporter), fp16 conversion and the
ONNX-vs-PyTorch check of every export."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch

from .builders import Built
from .swin_patches import branch_free_swin
from .text_masks import check_equivalence, masks_plain_ops

#: Opset of every export (the dynamo exporter's own minimum is 18).
OPSET = 18


_LINSPACE = torch.linspace


def _linspace_by_arange(
    start: float,
    end: float,
    steps: int,
    *,
    dtype: torch.dtype | None = None,
    device: object = None,
) -> torch.Tensor:
    """``torch.linspace`` as ``start + arange(steps) * step``. The exporter freezes
    ``linspace``'s step count at the example image's feature-map sizes (Grounding DINO's
    reference points and proposals, always with step 1.0, where both forms give the same
    values); ``arange`` keeps it symbolic."""
    if not isinstance(steps, torch.SymInt | int) or steps == 1:
        return _LINSPACE(start, end, steps, dtype=dtype, device=device)  # type: ignore[arg-type]
    ramp = torch.arange(steps, dtype=dtype, device=device)  # type: ignore[arg-type]
    return start + ramp * ((end - start) / (steps - 1))


@contextlib.contextmanager
def exportable(key: str, fixed_size: bool = False) -> Iterator[None]:
    """Patches what the exporter cannot translate, for the duration of one export:
    Grounding DINO's text-mask helper (``isin``/``cummax``) becomes ``masks_plain_ops``
    after an equivalence check, ``torch.linspace`` becomes ``_linspace_by_arange``, Swin
    pads without branches (``swin_patches``; not needed at a fixed size), and
    transformers' runtime checks (``_is_all_true``, no ONNX function) are switched off.
    ``verify`` then compares the export with the unpatched model."""
    previous_env = os.environ.get("TRANSFORMERS_DISABLE_TORCH_CHECK")
    os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = "1"
    patched = None
    stack = contextlib.ExitStack()
    if key == "grounding-dino":
        if not fixed_size:
            stack.enter_context(branch_free_swin())
        import transformers.models.grounding_dino.modeling_grounding_dino as gd

        check_equivalence(
            gd.generate_masks_with_special_tokens_and_transfer_map, gd.SPECIAL_TOKENS
        )
        patched = (gd, gd.generate_masks_with_special_tokens_and_transfer_map)
        gd.generate_masks_with_special_tokens_and_transfer_map = masks_plain_ops
        torch.linspace = _linspace_by_arange  # type: ignore[assignment]
    try:
        yield
    finally:
        stack.close()
        torch.linspace = _LINSPACE
        if patched is not None:
            patched[0].generate_masks_with_special_tokens_and_transfer_map = patched[1]
        if previous_env is None:
            os.environ.pop("TRANSFORMERS_DISABLE_TORCH_CHECK", None)
        else:
            os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = previous_env


def export_fp32(built: Built, path: Path) -> float:
    """Exports ``built`` to one self-contained ONNX file (no external data); returns the
    seconds it took."""
    start = time.perf_counter()
    with exportable(built.key, built.fixed_size is not None), torch.no_grad():
        program = torch.onnx.export(
            built.module,
            built.example,
            None,
            input_names=list(built.inputs),
            output_names=list(built.outputs),
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes=built.dynamic,
        )
    if program is None:
        raise RuntimeError(f"{built.key}: the exporter returned no program")
    program.save(str(path), external_data=False)
    return time.perf_counter() - start


def _unique_node_names(model: onnx.ModelProto) -> None:
    """Renames repeated node names: the converter names its casts after the node they feed,
    and the exporter's own names can repeat, which ONNX Runtime refuses."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if node.name in seen:
            node.name = f"{node.name}_{i}"
        seen.add(node.name)


def _drop_duplicate_casts(model: onnx.ModelProto) -> None:
    """Removes repeated identical ``Cast`` nodes. When one fp16 value feeds two nodes kept in
    fp32, the converter adds the same Cast (same input, same output name) once per consumer,
    which ONNX Runtime refuses as a duplicate definition; one of them computes the value."""
    seen: set[tuple[str, str, int]] = set()
    keep = []
    for node in model.graph.node:
        if node.op_type == "Cast":
            to = next(a.i for a in node.attribute if a.name == "to")
            key = (node.input[0], node.output[0], to)
            if key in seen:
                continue
            seen.add(key)
        keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def _unsupported_op(error: str) -> str | None:
    match = re.search(r"implementation for (\w+)\(", error)
    return match.group(1) if match else None


def convert_fp16(src: Path, dst: Path, max_tries: int = 20) -> list[str]:
    """Writes an fp16 copy of ``src`` with float32 inputs and outputs kept (the adapters
    feed and read f32), using ONNX Runtime's own converter. Ops ONNX Runtime's CPU provider
    has no fp16 kernel for stay in fp32 (found by loading the result); returns them."""
    from onnxruntime.transformers.float16 import (
        DEFAULT_OP_BLOCK_LIST,
        convert_float_to_float16,
    )

    blocked: list[str] = []
    for _ in range(max_tries):
        source = onnx.load(str(src))
        _unique_node_names(source)
        model = convert_float_to_float16(
            source,
            keep_io_types=True,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, *blocked],
        )
        _drop_duplicate_casts(model)
        _unique_node_names(model)
        onnx.save(model, str(dst))
        try:
            ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
            return blocked
        except Exception as err:
            op = _unsupported_op(str(err))
            if op is None or op in blocked:
                raise
            blocked.append(op)
    raise RuntimeError(f"{src}: fp16 conversion still fails after blocking {blocked}")


@dataclass
class Difference:
    """Largest ONNX-vs-PyTorch difference per output over the checked inputs."""

    max_abs: dict[str, float]
    inputs_checked: int
    #: Grounding DINO: queries whose box differs by more than 1e-3 (normalised), i.e. whose
    #: place in the encoder's top-k order changed (near-tied proposal scores), of all queries.
    reordered_queries: tuple[int, int] | None = None
    #: Max abs difference over the queries that kept their place.
    in_order_max_abs: dict[str, float] | None = None

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v:.3g}" for k, v in self.max_abs.items())
        text = f"max abs diff over {self.inputs_checked} inputs: {parts}"
        if self.reordered_queries is not None and self.in_order_max_abs is not None:
            moved, total = self.reordered_queries
            kept = ", ".join(f"{k} {v:.3g}" for k, v in self.in_order_max_abs.items())
            text += f"; {moved} of {total} queries reordered, the others: {kept}"
        return text


def _compare(
    want: npt.NDArray[np.float32], got: npt.NDArray[np.float32], name: str
) -> float:
    """Max abs difference; ``-inf`` (Grounding DINO's padded token columns) must match."""
    if want.shape != got.shape:
        raise AssertionError(f"{name}: shape {got.shape}, PyTorch gives {want.shape}")
    finite = np.isfinite(want)
    if not np.array_equal(finite, np.isfinite(got)):
        raise AssertionError(f"{name}: non-finite entries differ from PyTorch")
    return float(np.abs(want[finite].astype(np.float64) - got[finite]).max(initial=0.0))


def torch_outputs(
    built: Built, inputs: Sequence[torch.Tensor]
) -> list[npt.NDArray[np.float32]]:
    """The PyTorch model's outputs (unpatched model) as float32 arrays."""
    with torch.no_grad():
        out = built.module(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    return [o.float().numpy() for o in outs]


def verify(
    path: Path, built: Built, cases: Sequence[Sequence[torch.Tensor]]
) -> Difference:
    """Runs ``path`` in ONNX Runtime (CPU) and the PyTorch model on each case."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = dict.fromkeys(built.outputs, 0.0)
    in_order = dict.fromkeys(built.outputs, 0.0)
    moved, total = 0, 0
    for case in cases:
        want = torch_outputs(built, case)
        feed = {name: t.numpy() for name, t in zip(built.inputs, case, strict=True)}
        got = [np.asarray(g) for g in session.run(list(built.outputs), feed)]
        for name, w, g in zip(built.outputs, want, got, strict=True):
            worst[name] = max(worst[name], _compare(w, g, name))
        if built.key == "grounding-dino":
            same = np.abs(want[1] - got[1]).max(axis=-1) <= 1e-3
            moved, total = moved + int((~same).sum()), total + same.size
            for name, w, g in zip(built.outputs, want, got, strict=True):
                in_order[name] = max(in_order[name], _compare(w[same], g[same], name))
    if built.key == "grounding-dino":
        return Difference(worst, len(cases), (moved, total), in_order)
    return Difference(worst, len(cases))


def check_cases(built: Built) -> list[tuple[torch.Tensor, ...]]:
    """Inputs unlike the export example (other batch sizes, image sizes, text lengths and
    padding), so a dimension the exporter froze shows up as a failure."""
    gen = torch.Generator().manual_seed(99)
    if built.key == "grounding-dino":
        cases = []
        sizes = [(800, 1067), (608, 800)]
        if built.fixed_size is not None:
            sizes = [built.fixed_size, built.fixed_size]
        for batch, (height, width), ids in (
            (1, sizes[0], [[101, 10, 1012, 102]]),
            (
                3,
                sizes[1],
                [[101, 10, 1012, 12, 1012, 102], [101, 11, 1012, 102, 0, 0]] * 2,
            ),
        ):
            token_ids = torch.tensor(ids[:batch])
            cases.append(
                (
                    torch.randn(batch, 3, height, width, generator=gen),
                    token_ids,
                    torch.zeros_like(token_ids),
                    (token_ids != 0).long(),
                    torch.ones(batch, height, width, dtype=torch.long),
                )
            )
        return cases
    images = [torch.randn(n, 3, 224, 224, generator=gen) for n in (1, 3, 2)]
    if built.key == "pickscore":
        # The last case scores 2 images against 3 texts: the two dims are independent.
        ids = [
            torch.tensor([[101, 9, 102]]),
            torch.tensor([[101, 9, 102, 0, 0]] * 3),
            torch.tensor(
                [[101, 9, 10, 11, 102], [101, 12, 102, 0, 0], [101, 102, 0, 0, 0]]
            ),
        ]
        return [(img, t, (t != 0).long()) for img, t in zip(images, ids, strict=True)]
    return [(img,) for img in images]
