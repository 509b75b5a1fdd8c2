"""Export the PSR paper's models to ONNX for psr-reward, verified against PyTorch.

With internet (Hugging Face hub), the real checkpoints::

    make export-tools
    .venv-export/bin/python tools/export_models.py --out models/paper

writes ``grounding-dino-tiny.onnx`` (IDEA-Research/grounding-dino-tiny, Hugging Face
signature), ``dino-vits16.onnx`` (facebook/dino-vits16, CLS after the final LayerNorm),
``dinov2-small.onnx``, ``clip-vision.onnx`` (openai/clip-vit-base-patch32 image tower),
``pickscore.onnx`` (yuvalkirstain/PickScore_v1, image + text -> score) with their
tokenizers, an ``-fp16`` copy of each, and manifests (``manifest.toml``,
``manifest-fp16.toml``, and one per alternative embedder) that ``PSR_MODELS`` can point at.
``models/psr-paper.toml`` reads the same files.

Offline, ``--tiny`` (alias ``--random-config``) builds the same classes from small configs
with seeded random weights and exports them through the same code; ``--reference`` adds
the fixture images and PyTorch reference outputs the Rust tests compare against
(tests/fixtures/real_arch/, ``make real-arch-fixtures``).

Every export is run in ONNX Runtime and compared with PyTorch on inputs unlike the export
example (other batch sizes, image sizes and text lengths); the largest absolute difference
per output is printed and written to ``export-report.json``.

Grounding DINO and image size: with transformers 5.24 / torch 2.15 the exporter does not
keep a dynamic height and width through Swin (its size-dependent padding is resolved for the
example size), so the default run's check fails on a second size. ``--detector-size 800x800``
exports one fixed size (batch and caption length stay dynamic) and the written manifest
squashes images to it; exact PSR preprocessing (short side 800) needs a dynamic export.
Grounding DINO's query order is its encoder's top-k order: near-tied proposals may trade
places between PyTorch and ONNX Runtime, reported as "queries reordered".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export import builders, manifest, onnx_io, reference

#: ONNX file stem per model (models/psr-paper.toml reads these names).
FILES: dict[str, str] = {
    "grounding-dino": "grounding-dino-tiny",
    "dino-vits16": "dino-vits16",
    "dinov2-small": "dinov2-small",
    "clip-vision": "clip-vision",
    "pickscore": "pickscore",
}


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    return int(height), int(width)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--out", type=Path, default=Path("models/paper"), help="output folder"
    )
    p.add_argument(
        "--tiny",
        "--random-config",
        action="store_true",
        help="small configs, seeded random weights (no download)",
    )
    p.add_argument("--seed", type=int, default=0, help="weight seed for --tiny")
    p.add_argument(
        "--models",
        nargs="+",
        choices=builders.MODEL_NAMES,
        default=list(builders.MODEL_NAMES),
    )
    p.add_argument(
        "--detector-size",
        type=_size,
        default=None,
        metavar="HxW",
        help="export Grounding DINO at one input size (its manifest then squashes images to\n"
        "it); default: dynamic height and width",
    )
    p.add_argument("--no-fp16", action="store_true", help="skip the fp16 copies")
    p.add_argument(
        "--reference",
        action="store_true",
        help="write fixture images and PyTorch references",
    )
    return p.parse_args(argv)


def export_one(
    key: str, args: argparse.Namespace
) -> tuple[builders.Built, dict[str, Any]]:
    """Builds, exports, converts and verifies one model; returns it with its report."""
    t0 = time.perf_counter()
    built = builders.build(key, args.tiny, args.seed, args.out, args.detector_size)
    report: dict[str, Any] = {"build_s": round(time.perf_counter() - t0, 2)}
    fp32 = args.out / f"{FILES[key]}.onnx"
    report["export_s"] = round(onnx_io.export_fp32(built, fp32), 2)
    report["fp32_bytes"] = fp32.stat().st_size
    diff = onnx_io.verify(fp32, built, onnx_io.check_cases(built))
    report["fp32_max_abs_diff"] = diff.max_abs
    report["fp32_reordered_queries"] = diff.reordered_queries
    report["fp32_in_order_max_abs_diff"] = diff.in_order_max_abs
    print(f"{key}: fp32 {fp32} ({report['export_s']} s), {diff.describe()}", flush=True)
    if not args.no_fp16:
        fp16 = args.out / f"{FILES[key]}-fp16.onnx"
        report["fp16_fp32_ops"] = onnx_io.convert_fp16(fp32, fp16)
        report["fp16_bytes"] = fp16.stat().st_size
        diff16 = onnx_io.verify(fp16, built, onnx_io.check_cases(built))
        report["fp16_max_abs_diff"] = diff16.max_abs
        report["fp16_reordered_queries"] = diff16.reordered_queries
        report["fp16_in_order_max_abs_diff"] = diff16.in_order_max_abs
        print(f"{key}: fp16 {fp16}, {diff16.describe()}", flush=True)
    return built, report


def write_manifests(
    out: Path,
    keys: list[str],
    tiny: bool,
    fp16: bool,
    detector_size: tuple[int, int] | None,
) -> list[Path]:
    """One manifest per precision with the paper's set (detector, DINO embedder, preference
    model) and one per alternative embedder; paths are relative to ``out``."""
    kind = "tiny random-weight" if tiny else "pretrained"
    header = (
        f"Written by tools/export_models.py ({kind} exports). Relative paths resolve against\n"
        "this file's folder: PSR_MODELS=<this file> make run."
    )
    suffix = "-random" if tiny else ""
    written = []
    for precision in ("fp32", "fp16") if fp16 else ("fp32",):
        tag = "" if precision == "fp32" else "-fp16"
        sections: dict[str, dict[str, Any]] = {}
        if "grounding-dino" in keys:
            sections["detector"] = manifest.detector_section(
                f"grounding-dino-tiny{suffix}{tag}",
                f"grounding-dino-tiny{tag}.onnx",
                "tokenizer.json",
                detector_size,
            )
            if precision == "fp16":
                # Half precision reorders near-tied encoder proposals, so a query's index
                # (the PSR "first kept" order) can depend on its batch: no batching.
                sections["detector"]["batching"] = {
                    **sections["detector"]["batching"],
                    "max_batch_size": 1,
                }
        if "dino-vits16" in keys:
            sections["embedder"] = manifest.embedder_section(
                f"dino-vits16{suffix}{tag}", f"dino-vits16{tag}.onnx", "embeddings"
            )
        if "pickscore" in keys:
            sections["preference"] = manifest.preference_section(
                f"pickscore{suffix}{tag}", f"pickscore{tag}.onnx", "clip_tokenizer.json"
            )
        if sections:
            path = out / f"manifest{tag}.toml"
            manifest.write(path, header, sections)
            written.append(path)
        alternatives = {
            "dinov2-small": ("last_hidden_state", "cls", False),
            "clip-vision": ("image_embeds", "none", True),
        }
        for key, (output, pooling, clip) in alternatives.items():
            if key in keys:
                path = out / f"manifest-{key}{tag}.toml"
                section = manifest.embedder_section(
                    f"{key}{suffix}{tag}",
                    f"{FILES[key]}{tag}.onnx",
                    output,
                    pooling,
                    clip,
                )
                manifest.write(path, header, {"embedder": section})
                written.append(path)
    return written


def add_reference(
    key: str, built: builders.Built, out: Path, refs: dict[str, Any]
) -> None:
    """PyTorch reference outputs of ``key`` on the fixture images."""
    images = reference.write_images(out)
    if key == "grounding-dino":
        tok = Tokenizer.from_file(str(out / "tokenizer.json"))
        refs[key] = reference.detector_reference(built, tok, images, built.fixed_size)
    elif key == "pickscore":
        tok = Tokenizer.from_file(str(out / "clip_tokenizer.json"))
        refs[key] = reference.preference_reference(built, tok, images)
    else:
        refs[key] = reference.embedder_reference(
            built, images, clip=key == "clip-vision"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    reports: dict[str, Any] = {}
    refs: dict[str, Any] = {}
    for key in args.models:
        built, reports[key] = export_one(key, args)
        if args.reference:
            add_reference(key, built, args.out, refs)
    written = write_manifests(
        args.out, args.models, args.tiny, not args.no_fp16, args.detector_size
    )
    for path in written:
        print(f"manifest {path}")
    summary = {"tiny": args.tiny, "seed": args.seed, "models": reports}
    (args.out / "export-report.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.reference:
        refs["box_threshold"] = reference.BOX_THRESHOLD
        (args.out / "reference.json").write_text(json.dumps(refs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
