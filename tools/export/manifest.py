"""Manifests in the format of models/*.toml (src/models/manifest.rs), written without a TOML
library: the values are strings, numbers and (nested) inline tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DETECTOR_PREPROCESS = {
    "resize": {"rule": "short_side_max_long", "short_side": 800, "max_long_side": 1333},
    "filter": "bilinear",
    "normalize": "imagenet",
}
EMBEDDER_PREPROCESS = {
    "resize": {"rule": "center_crop", "short_side": 256, "crop": 224},
    "filter": "bicubic",
    "normalize": "imagenet",
}
#: CLIP's processor: shortest edge 224 (bicubic), centre crop 224, CLIP statistics.
CLIP_PREPROCESS = {
    "resize": {"rule": "center_crop", "short_side": 224, "crop": 224},
    "filter": "bicubic",
    "normalize": "clip",
}
CPU_RUNTIME = {"provider": "cpu", "on_provider_failure": "fail", "instances": 1}


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        escaped = v.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} into a manifest")


def render(header: str, sections: dict[str, dict[str, Any]]) -> str:
    """The manifest text: ``header`` as comment lines, then one table per role."""
    lines = [f"# {line}".rstrip() for line in header.strip().splitlines()]
    for role, fields in sections.items():
        lines += ["", f"[{role}]"]
        lines += [f"{k} = {_value(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def detector_section(
    name: str, path: str, tokenizer: str, fixed_size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """A Hugging Face-family Grounding DINO entry with the PSR thresholds; an export of one
    fixed (height, width) gets its images squashed to that size."""
    preprocess: dict[str, Any] = DETECTOR_PREPROCESS
    if fixed_size is not None:
        height, width = fixed_size
        squash = {"rule": "squash", "width": width, "height": height}
        preprocess = {**DETECTOR_PREPROCESS, "resize": squash}
    return {
        "name": name,
        "path": path,
        "tokenizer": tokenizer,
        "box_threshold": 0.35,
        "max_text_len": 256,
        "preprocess": preprocess,
        "runtime": CPU_RUNTIME,
        "batching": {
            "max_batch_size": 4,
            "max_queue_delay_ms": 5,
            "queue_capacity": 4096,
        },
    }


def embedder_section(
    name: str, path: str, output: str, pooling: str = "none", clip: bool = False
) -> dict[str, Any]:
    """An embedder entry (DINO / DINOv2 / CLIP vision tower)."""
    return {
        "name": name,
        "path": path,
        "input": "pixel_values",
        "output": output,
        "pooling": pooling,
        "preprocess": CLIP_PREPROCESS if clip else EMBEDDER_PREPROCESS,
        "runtime": CPU_RUNTIME,
        "batching": {
            "max_batch_size": 64,
            "max_queue_delay_ms": 5,
            "queue_capacity": 16384,
        },
    }


def preference_section(name: str, path: str, tokenizer: str) -> dict[str, Any]:
    """A CLIP-style preference entry (PickScore / HPSv2)."""
    return {
        "name": name,
        "path": path,
        "tokenizer": tokenizer,
        "max_text_len": 77,
        "preprocess": CLIP_PREPROCESS,
        "runtime": CPU_RUNTIME,
        "batching": {
            "max_batch_size": 16,
            "max_queue_delay_ms": 5,
            "queue_capacity": 1024,
        },
    }


def write(path: Path, header: str, sections: dict[str, dict[str, Any]]) -> None:
    """Writes the manifest (UTF-8, LF)."""
    path.write_text(render(header, sections), encoding="utf-8")
